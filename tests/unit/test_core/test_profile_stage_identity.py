"""The profile stage with identity: links, absorbs, redirects, the over-merge guard, deletion, replays."""

from __future__ import annotations

import msgspec
from core_event_factory import STAGE_POLICY, T0, StageSim, alias, identify, page, shipped_triggers, track

from core.identity import (
    LINK_REFUSED,
    LINKED,
    OVERMERGE_BLOCKED,
    RELINKED,
    KeyIdentity,
    absorb_id_for,
    decide_link,
    decide_unlink,
    link_id_for,
)
from core.profile.apply import new_profile
from core.profile_stage import (
    ABSORB_DUPLICATE,
    ABSORB_FORGOTTEN,
    DUPLICATE,
    FORGOTTEN_DROP,
    REDIRECT_LOOP,
    KeyState,
    StagePolicy,
    step_key,
)
from schemas.commands import (
    AbsorbProfile,
    ApplyEvent,
    ForgetCustomer,
    LinkIdentity,
    UnlinkIdentity,
    WakeUp,
    decode_command,
    encode_command,
)


def anon_history(anon: str = "a1") -> list:
    return [
        page(T0, user=None, anon=anon),
        track("Product Viewed", T0 + 10, user=None, anon=anon, product_id="p1", category="shoes"),
        track("Product Added", T0 + 20, user=None, anon=anon, product_id="p1", price=4000, category="shoes"),
    ]


def test_anonymous_history_is_merged_when_the_user_identifies():
    sim = StageSim().feed(*anon_history(), identify(T0 + 30, user="u1", anon="a1", city="Lyon"))
    merged = sim.profile("u1")
    assert sim.profile("a1") is None
    assert sim.identity("a1").redirect_to == "u1"
    assert merged.event_count == 4 and merged.product_views == {"p1": 1} and merged.city == "Lyon"
    assert [item.product_id for item in merged.cart] == ["p1"]
    assert merged.first_seen == T0 and merged.last_seen == T0 + 30
    assert "a1" in merged.linked_ids and "a1" in merged.anonymous_ids
    assert LINKED in sim.notes


def test_links_arriving_after_the_events_they_explain():
    """The link is still in flight while more anonymous events arrive: they end up in the merged profile too."""
    sim = StageSim()
    for event in anon_history():
        sim.send_event(event)
    sim.send_event(identify(T0 + 30, user="u1", anon="a1"))
    sim.send_event(track("Checkout Started", T0 + 40, user=None, anon="a1"))  # before the link is decided
    sim.run()
    sim.feed(track("Product Viewed", T0 + 50, user=None, anon="a1", product_id="p2"))  # after: forwarded
    merged = sim.profile("u1")
    assert merged.event_count == 6 and merged.last_checkout_at == T0 + 40
    assert merged.product_views == {"p1": 1, "p2": 1}
    assert sim.profile("a1") is None


def test_replayed_event_of_the_anonymous_profile_is_deduplicated_after_the_merge():
    history = anon_history()
    sim = StageSim().feed(*history, identify(T0 + 30, user="u1", anon="a1"))
    sim.feed(history[1])
    assert sim.profile("u1").event_count == 4
    assert DUPLICATE in sim.notes


def test_link_is_asked_for_only_once():
    sim = StageSim().feed(identify(T0, user="u1", anon="a1"), page(T0 + 1, user="u1", anon="a1"))
    links = [c for _, c in sim.log if isinstance(c, LinkIdentity)]
    assert len(links) == 1 and links[0].link_id == link_id_for("a1", "u1", "identify")


def test_identify_never_merges_two_user_ids_but_alias_does():
    sim = StageSim().feed(
        track("Order Completed", T0, user="old", order_id="o1", total=100), identify(T0 + 1, user="new", anon="old")
    )
    assert sim.identity("old").redirect_to is None and sim.profile("old").orders == 1
    assert LINK_REFUSED in sim.notes
    sim.feed(alias("old", "new", T0 + 2))
    assert sim.identity("old").redirect_to == "new" and sim.profile("old") is None
    assert sim.profile("new").orders == 1
    sim.feed(identify(T0 + 3, user="third", anon="old"))  # an alias redirect is sticky
    assert sim.identity("old").redirect_to == "new"


def test_merge_chains_are_flattened():
    sim = StageSim().feed(
        page(T0, user=None, anon="dev"), identify(T0 + 1, user="v", anon="dev"), alias("v", "u", T0 + 2)
    )
    assert sim.identity("dev").redirect_to == "u" and sim.identity("v").redirect_to == "u"
    assert set(sim.profile("u").linked_ids) >= {"v", "dev"}
    assert sim.profile("u").event_count == 3


def test_over_merge_guard_blocks_a_fourth_user_on_one_device():
    sim = StageSim(StagePolicy(max_users_per_anonymous_id=3))
    for i, user in enumerate(["u1", "u2", "u3", "u4"]):
        sim.feed(identify(T0 + i, user=user, anon="kiosk"))
    assert sim.notes.count(OVERMERGE_BLOCKED) == 1
    assert sim.identity("kiosk").redirect_to == "u3"  # latest permitted login wins
    assert set(sim.identity("kiosk").linked_users) == {"u1", "u2", "u3"}
    sim.feed(identify(T0 + 9, user="u2", anon="kiosk"))  # u2's profile knows the device: no new link
    assert sim.identity("kiosk").redirect_to == "u3"
    # a user the device is already linked to passes the guard when a link does come (e.g. an alias call)
    relink = LinkIdentity(alias="kiosk", customer_id="u1", at=T0 + 10, link_id="l", kind="identify")
    decision = decide_link(sim.identity("kiosk"), None, relink, max_users=3)
    assert decision.note == RELINKED and decision.identity.redirect_to == "u1"


def test_shared_device_link_is_last_write_wins_by_event_time():
    sim = StageSim().feed(identify(T0 + 10, user="u2", anon="tablet"), identify(T0, user="u1", anon="tablet"))
    assert sim.identity("tablet").redirect_to == "u2"


def test_redirect_forwarding_and_loop_guard():
    policy = StagePolicy(max_hops=4)
    a = KeyState(key="a", identity=KeyIdentity(redirect_to="b"))
    b = KeyState(key="b", identity=KeyIdentity(redirect_to="a"))
    command = ApplyEvent(event=page(T0, user=None, anon="a"))
    notes = []
    key, state = "a", a
    for _ in range(10):
        result = step_key(state, command, now=T0, policy=policy)
        notes.extend(result.notes)
        if not result.forwards:
            break
        key, command = result.forwards[0]
        state = a if key == "a" else b
    assert notes[-1] == REDIRECT_LOOP and command.hops == 4
    assert all(not r for r in (a.profile, b.profile))


def test_absorb_is_deduplicated_by_absorb_id():
    absorbed = msgspec.structs.replace(new_profile("a1"), orders=2, revenue=900, event_count=3)
    link = LinkIdentity(alias="a1", customer_id="u1", at=T0, link_id=link_id_for("a1", "u1", "identify"))
    command = AbsorbProfile(customer_id="u1", absorbed=absorbed, absorb_id=absorb_id_for(link), linked_at=T0)
    first = step_key(KeyState(key="u1", profile=new_profile("u1")), command, now=T0, policy=STAGE_POLICY)
    second = step_key(first.state, command, now=T0, policy=STAGE_POLICY)
    assert first.state.profile.orders == 2 and second.state.profile.orders == 2
    assert second.notes == (ABSORB_DUPLICATE,) and not second.changed


def test_replaying_the_whole_command_sequence_is_idempotent():
    sim = StageSim().feed(
        *anon_history(),
        identify(T0 + 30, user="u1", anon="a1", city="Oslo"),
        track("Order Completed", T0 + 40, user="u1", order_id="o1", total=500),
        page(T0 + 50, user=None, anon="a2"),
        alias("a2", "u1", T0 + 60),
        track("Order Refunded", T0 + 70, user="u1", order_id="o1"),
    )
    before = {k: msgspec.msgpack.encode(v) for k, v in sim.states.items()}
    for key, command in list(sim.log):  # at-least-once: everything delivered again
        sim.send(key, decode_command(encode_command(command)))
    sim.run()
    after = {k: msgspec.msgpack.encode(v) for k, v in sim.states.items()}
    assert after == before
    assert sim.profile("u1").revenue == 0 and sim.profile("u1").refunds == 1


class TestDeletion:
    def make(self) -> StageSim:
        return StageSim().feed(*anon_history(), identify(T0 + 30, user="u1", anon="a1", email="x@y.z", city="Rome"))

    def test_deletion_removes_profile_and_links(self):
        sim = self.make().feed(track("Deletion Requested", T0 + 100, user="u1"))
        assert sim.profile("u1") is None and sim.profile("a1") is None
        assert sim.identity("u1") == KeyIdentity(forgotten_at=T0 + 100)
        assert sim.identity("a1") == KeyIdentity(forgotten_at=T0 + 100)
        stored = b"".join(msgspec.msgpack.encode(state) for state in sim.states.values())
        assert b"Rome" not in stored and b"x@y.z" not in stored and b"p1" not in stored

    def test_old_events_are_dropped_and_new_ones_start_fresh(self):
        sim = self.make().feed(track("Deletion Requested", T0 + 100, user="u1"))
        sim.feed(track("Product Viewed", T0 + 20, user="u1", product_id="old"), page(T0 + 25, user=None, anon="a1"))
        assert sim.profile("u1") is None and sim.profile("a1") is None
        assert sim.notes.count(FORGOTTEN_DROP) == 2
        sim.feed(track("Product Viewed", T0 + 200, user="u1", product_id="new"))
        fresh = sim.profile("u1")
        assert fresh.event_count == 1 and fresh.product_views == {"new": 1} and fresh.city is None

    def test_deletion_via_an_alias_id_reaches_the_customer(self):
        sim = self.make()
        sim.send("a1", ForgetCustomer(customer_id="a1", at=T0 + 100))
        sim.run()
        assert sim.profile("u1") is None and sim.identity("u1").forgotten_at == T0 + 100

    def test_absorb_in_flight_during_deletion_is_dropped(self):
        sim = StageSim().feed(page(T0, user=None, anon="a9"))
        sim.send_event(identify(T0 + 1, user="u9", anon="a9"))
        sim.send("u9", ForgetCustomer(customer_id="u9", at=T0 + 5))
        sim.run()
        assert sim.profile("u9") is None and sim.profile("a9") is None
        assert ABSORB_FORGOTTEN in sim.notes

    def test_triggers_are_blocked_for_forgotten_state(self):
        policy = StagePolicy(triggers=shipped_triggers(only=("cart_abandonment",), after={"cart_abandonment": 10}))
        cart = track("Product Added", T0, user="u1", product_id="p", price=100)
        state = step_key(KeyState(key="u1"), ApplyEvent(event=cart), now=T0, policy=policy).state
        state = msgspec.structs.replace(state, identity=KeyIdentity(forgotten_at=T0 + 1))
        result = step_key(state, WakeUp(now=T0 + 100), now=T0 + 100, policy=policy)
        assert result.triggers == () and result.due_at is None


def test_cart_abandonment_still_works_through_step_key():
    policy = StagePolicy(triggers=shipped_triggers(only=("cart_abandonment",), after={"cart_abandonment": 10}))
    added = step_key(
        KeyState(key="u1"), ApplyEvent(event=track("Product Added", T0, product_id="p", price=5)), now=T0, policy=policy
    )
    assert added.due_at == T0 + 10
    checked = step_key(added.state, WakeUp(now=T0 + 11), now=T0 + 11, policy=policy)
    assert len(checked.triggers) == 1 and checked.profile_changed and checked.due_at is None


def test_a_replayed_event_asks_again_for_the_links_a_crash_may_have_lost():
    """Regression (kill -9 at 2,000 customers): the profile write reached the changelog, the link did not;
    the replayed identify was a duplicate and asked for nothing, so the device stayed unlinked (404)."""
    event = identify(T0, user="u1", anon="a1")
    first = step_key(KeyState(key="u1"), ApplyEvent(event=event), now=T0, policy=STAGE_POLICY)
    [(alias_key, link)] = first.forwards
    replay = step_key(first.state, ApplyEvent(event=event), now=T0 + 5, policy=STAGE_POLICY)
    assert DUPLICATE in replay.notes
    assert replay.forwards == ((alias_key, link),)  # the same, deterministic link: idempotent at a1
    assert replay.state.profile == first.state.profile


def test_a_replayed_link_sends_its_absorb_again_and_the_customer_merges_it_once():
    """After a crash that persisted the redirect but lost the AbsorbProfile, the replayed link re-sends
    it; the customer's key merges it once per absorb_id, and a deletion drops the kept copy."""
    sim = StageSim().feed(*anon_history("a1"))
    link = LinkIdentity(alias="a1", customer_id="u1", at=T0 + 100, link_id=link_id_for("a1", "u1", "identify"))
    first = step_key(sim.state("a1"), link, now=T0, policy=STAGE_POLICY)
    [(target, absorb)] = first.forwards
    replay = step_key(first.state, link, now=T0 + 1, policy=STAGE_POLICY)
    assert replay.forwards == ((target, absorb),)
    customer = KeyState(key="u1", profile=new_profile("u1"))
    merged = step_key(customer, absorb, now=T0, policy=STAGE_POLICY)
    again = step_key(merged.state, absorb, now=T0, policy=STAGE_POLICY)
    assert again.notes == (ABSORB_DUPLICATE,) and again.state.profile == merged.state.profile
    forgotten = decide_unlink(first.state.identity, UnlinkIdentity(alias="a1", customer_id="u1", at=T0 + 200))
    assert forgotten.sent_absorb is None and forgotten.redirect_to is None
