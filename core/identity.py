"""Identity resolution: which ids belong to one customer, and merging their profiles.

Per key the profile stage keeps a ``KeyIdentity`` next to the (optional) profile. A key that was linked
away has ``redirect_to`` set and no profile: its commands are forwarded to the canonical key. Links are
discovered by the canonical key's profile (``links_revealed``), decided at the alias's key
(``decide_link``), and the alias's profile travels to the canonical key to be merged
(``merge_profiles``).

Rules (all decided at the alias's key, so each alias is changed by one partition, in order):

- ``identify`` links (an event with both userId U and anonymousId A) never merge two user ids: if A
  has a profile whose ``user_id`` is A, the link is refused (note ``link_refused``), as it is when A's
  current redirect came from an explicit ``alias`` call (explicit merges are sticky).
- ``alias`` links (Segment alias: previousId P → userId U) merge P into U whatever P is.
- Over-merge guard: an id already linked to ``max_users`` distinct customers is not linked to another
  (note ``overmerge_blocked``); the link attempt changes nothing, the alias keeps its own state.
- A shared device linked to a second customer points to whoever was linked by the latest event time
  (last write wins, ``link_stale`` for an older link); its old data stays with the first customer.
- A link whose customer was merged into the alias earlier (a cycle) is refused (``link_cycle_refused``).
- A link older than the alias's ``forgotten_at`` (the customer was deleted) is dropped.
- After a merge the canonical key re-points the absorbed profile's own linked ids straight to itself
  (``LinkIdentity`` with ``via`` = the absorbed id), so chains stay one hop long and a later deletion
  can unlink every id directly.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import msgspec

from core.profile import (
    MAX_ABSORBED_IDS,
    MAX_AFFINITIES,
    MAX_ANONYMOUS_IDS,
    MAX_APPLIED_IDS,
    MAX_CART_ITEMS,
    MAX_CATEGORY_VIEWS,
    MAX_CHANNELS,
    MAX_CUSTOM_TRAITS,
    MAX_DEVICES,
    MAX_EVENT_NAMES,
    MAX_LEDGER_ORDERS,
    MAX_LINKED_IDS,
    MAX_ORDER_TIMES,
    MAX_PAYMENT_METHODS,
    MAX_PRODUCT_VIEWS,
    MAX_PURCHASED_PRODUCTS,
    MAX_PURCHASES_PER_PRODUCT,
    MAX_RECENTLY_VIEWED,
    MAX_SIZE_CATEGORIES,
    MAX_SIZES_PER_CATEGORY,
    MAX_STORES,
    MAX_TRIGGER_HISTORY,
    MAX_TRIGGERS_REMEMBERED,
    Affinity,
    CartItem,
    OrderRecord,
    Profile,
    decay,
    is_newer,
    order_contribution,
)
from core.triggers.pending import merge_trigger_state
from schemas.commands import AbsorbProfile, LinkIdentity, UnlinkIdentity
from schemas.events import Event

IDENTIFY = "identify"
ALIAS = "alias"

# Notes: what happened, for the agent's counters (one label value each).
LINKED = "linked"
RELINKED = "relinked"
LINK_DUPLICATE = "link_duplicate"
LINK_STALE = "link_stale"
LINK_REFUSED = "link_refused"
LINK_CYCLE_REFUSED = "link_cycle_refused"
LINK_FORGOTTEN = "link_forgotten"
OVERMERGE_BLOCKED = "overmerge_blocked"
UNLINKED = "unlinked"


class KeyIdentity(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The identity state of one key (stored by the agent in ``alias_to_customer``; absent = default).

    ``redirect_to``: canonical id this key was linked to (then the key has no profile).
    ``link_kind`` / ``linked_at``: how and by which event time the redirect was made.
    ``linked_users``: distinct customers this key was ever linked to (over-merge guard, capped).
    ``forgotten_at``: the customer of this key was deleted at this time; older events are dropped.
    ``sent_absorb``: the merge this key sent with its redirect, kept so that a replayed link (after a
    crash that persisted the redirect but lost the message) sends it again; the customer's key merges
    it once per ``absorb_id``. Dropped when the customer is forgotten (no data outlives a deletion).
    """

    redirect_to: str | None = None
    link_kind: str = ""
    linked_at: float = 0.0
    linked_users: tuple[str, ...] = ()
    forgotten_at: float | None = None
    sent_absorb: AbsorbProfile | None = None

    @property
    def is_default(self) -> bool:
        """True when there is nothing to store (the agent deletes the table entry)."""
        return self == NO_IDENTITY


NO_IDENTITY = KeyIdentity()


def _digest(*parts: object) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:24]


def link_id_for(alias: str, customer_id: str, kind: str) -> str:
    """Same alias, customer and kind → same id."""
    return f"link:{_digest(alias, customer_id, kind)}"


def absorb_id_for(link: LinkIdentity) -> str:
    """Deterministic per link decision, so a re-sent absorb is merged once."""
    return f"absorb:{_digest(link.link_id, f'{link.at:.6f}')}"


def links_revealed(profile: Profile, event: Event, *, again: bool = False) -> tuple[LinkIdentity, ...]:
    """Links the canonical ``profile`` must ask for after applying ``event`` (first sighting only).

    An event with a userId and an anonymousId links the anonymous id (``identify``) the first time the
    profile sees it (ids in ``profile.linked_ids`` are skipped, so a device seen again by a user it is
    already linked to costs nothing). An alias call always links its previousId (``alias``): it is rare,
    explicit, and may follow a refused identify link of the same id; the alias's key deduplicates it.
    ``again``: every link of the event, known or not — for a replayed event whose first links may have
    been lost in a crash (the alias's key deduplicates them).
    """
    key = profile.customer_id
    wanted: list[tuple[str, str]] = []
    if event.type == "alias" and event.previous_id:
        wanted.append((event.previous_id, ALIAS))
    if event.user_id is not None and event.anonymous_id:
        wanted.append((event.anonymous_id, IDENTIFY))
    return tuple(
        LinkIdentity(alias=alias, customer_id=key, at=event.timestamp, link_id=link_id_for(alias, key, kind), kind=kind)
        for alias, kind in wanted
        if alias != key and (again or kind == ALIAS or alias not in profile.linked_ids)
    )


def with_linked_ids(profile: Profile, ids: tuple[str, ...] | list[str]) -> Profile:
    """``profile`` remembering ``ids`` as linked (newest last, capped)."""
    fresh = [i for i in dict.fromkeys(ids) if i not in profile.linked_ids and i != profile.customer_id]
    if not fresh:
        return profile
    return msgspec.structs.replace(profile, linked_ids=(*profile.linked_ids, *fresh)[-MAX_LINKED_IDS:])


@dataclass(frozen=True)
class LinkDecision:
    """The alias key's new identity and profile after a ``LinkIdentity``, the absorb to send, and a note."""

    identity: KeyIdentity
    profile: Profile | None
    absorb: AbsorbProfile | None
    note: str


def decide_link(identity: KeyIdentity, profile: Profile | None, link: LinkIdentity, *, max_users: int) -> LinkDecision:
    """Decide ``link`` at the alias's key (rules in the module docstring)."""
    customer = link.customer_id
    if link.alias == customer:
        return LinkDecision(identity, profile, None, LINK_DUPLICATE)
    if identity.redirect_to == customer:
        # Already linked: perhaps a replay whose first absorb was lost; re-sending it is idempotent.
        return LinkDecision(identity, profile, identity.sent_absorb, LINK_DUPLICATE)
    if identity.forgotten_at is not None and link.at <= identity.forgotten_at:
        return LinkDecision(identity, profile, None, LINK_FORGOTTEN)
    if link.via:
        if identity.redirect_to != link.via:
            return LinkDecision(identity, profile, None, LINK_STALE)
        users = tuple(dict.fromkeys(customer if u == link.via else u for u in identity.linked_users))
        # The data already travelled inside ``via``'s profile: nothing left to re-send from here.
        updated = msgspec.structs.replace(
            identity, redirect_to=customer, linked_users=users or (customer,), sent_absorb=None
        )
        return LinkDecision(updated, profile, None, RELINKED)
    if profile is not None and customer in profile.linked_ids:
        return LinkDecision(identity, profile, None, LINK_CYCLE_REFUSED)
    if link.kind != ALIAS and ((profile is not None and profile.user_id == link.alias) or identity.link_kind == ALIAS):
        return LinkDecision(identity, profile, None, LINK_REFUSED)
    if customer not in identity.linked_users and len(identity.linked_users) >= max_users:
        return LinkDecision(identity, profile, None, OVERMERGE_BLOCKED)
    users = tuple(dict.fromkeys((*identity.linked_users, customer)))[-max(max_users, 1) :]
    if identity.redirect_to is not None and not is_newer(link.at, customer, identity.linked_at, identity.redirect_to):
        return LinkDecision(msgspec.structs.replace(identity, linked_users=users), profile, None, LINK_STALE)
    absorb = None
    if profile is not None:
        absorb = AbsorbProfile(customer_id=customer, absorbed=profile, absorb_id=absorb_id_for(link), linked_at=link.at)
    updated = msgspec.structs.replace(
        identity,
        redirect_to=customer,
        link_kind=link.kind,
        linked_at=link.at,
        linked_users=users,
        sent_absorb=absorb,
    )
    return LinkDecision(updated, None, absorb, RELINKED if identity.redirect_to is not None else LINKED)


def decide_unlink(identity: KeyIdentity, unlink: UnlinkIdentity) -> KeyIdentity:
    """The alias's identity after its customer was forgotten: redirect dropped (if it pointed there),
    the customer's id removed from ``linked_users``, replays older than the deletion blocked."""
    users = tuple(u for u in identity.linked_users if u != unlink.customer_id)
    if identity.redirect_to != unlink.customer_id:
        kept = (
            identity.sent_absorb
            if identity.sent_absorb is None or identity.sent_absorb.customer_id != unlink.customer_id
            else None
        )
        return msgspec.structs.replace(identity, linked_users=users, sent_absorb=kept)
    forgotten_at = max(identity.forgotten_at or unlink.at, unlink.at)
    return KeyIdentity(linked_users=users, forgotten_at=forgotten_at)


def flattening_links(merged: Profile, absorbed: Profile, linked_at: float) -> tuple[LinkIdentity, ...]:
    """After ``absorbed`` was merged into ``merged``: re-point the ids that redirected to the absorbed key."""
    key = merged.customer_id
    via = absorbed.customer_id
    return tuple(
        LinkIdentity(
            alias=alias, customer_id=key, at=linked_at, link_id=link_id_for(alias, key, ALIAS), kind=ALIAS, via=via
        )
        for alias in absorbed.linked_ids
        if alias not in (key, via)
    )


# --- merging two profiles of one customer --------------------------------------------------------

_LWW_FIELDS = (
    "email_hash",
    "phone_hash",
    "age_band",
    "gender",
    "city",
    "country",
    "timezone",
    "loyalty_tier",
    "preferred_channel",
)


def _union(first: tuple, second: tuple, cap: int) -> tuple:
    return tuple(dict.fromkeys((*first, *second)))[-cap:]


def _top(counts: dict[str, Any], cap: int, weight=None) -> dict[str, Any]:
    if len(counts) <= cap:
        return counts
    weigh = weight or (lambda k: counts[k])
    kept = sorted(counts, key=lambda k: (-weigh(k), k))[:cap]
    return {k: counts[k] for k in kept}


def _add_counts(a: dict[str, int], b: dict[str, int], cap: int) -> dict[str, int]:
    summed = dict(a)
    for key, value in b.items():
        summed[key] = summed.get(key, 0) + value
    return _top(summed, cap)


def _merge_times(a: tuple[float, ...], b: tuple[float, ...], cap: int) -> tuple[float, ...]:
    return tuple(sorted((*a, *b)))[-cap:]


def _merge_affinity(a: dict[str, Affinity], b: dict[str, Affinity], half_life_s: float) -> dict[str, Affinity]:
    merged = dict(a)
    for category, other in b.items():
        mine = merged.get(category)
        if mine is None:
            merged[category] = other
            continue
        at = max(mine.at, other.at)
        merged[category] = Affinity(
            decay(mine.value, mine.at, at, half_life_s) + decay(other.value, other.at, at, half_life_s), at
        )
    if len(merged) <= MAX_AFFINITIES:
        return merged
    newest = max(x.at for x in merged.values())
    return _top(merged, MAX_AFFINITIES, lambda k: decay(merged[k].value, merged[k].at, newest, half_life_s))


def _merge_cart(a: Profile, b: Profile, last_order_at: float) -> tuple[CartItem, ...]:
    items: dict[str, CartItem] = {}
    for item in (*a.cart, *b.cart):
        current = items.get(item.product_id)
        if current is None or (item.added_at, item.quantity, item.price) > (
            current.added_at,
            current.quantity,
            current.price,
        ):
            items[item.product_id] = item
    kept = sorted((i for i in items.values() if i.added_at > last_order_at), key=lambda i: (i.added_at, i.product_id))
    return tuple(kept)[-MAX_CART_ITEMS:]


def _merge_traits(a: Profile, b: Profile) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    times: dict[str, float] = {}
    for field in _LWW_FIELDS:
        a_at, b_at = a.trait_times.get(field), b.trait_times.get(field)
        a_value, b_value = getattr(a, field), getattr(b, field)
        if b_at is not None and is_newer(b_at, b_value, a_at, a_value):
            changes[field], times[field] = b_value, b_at
        else:
            changes[field] = a_value if a_value is not None else b_value
            if a_at is not None:
                times[field] = a_at
    custom: dict[str, Any] = {}
    for name in (*a.custom_traits, *b.custom_traits):
        slot = f"t.{name}"
        candidates = [(p.trait_times.get(slot, 0.0), p.custom_traits[name]) for p in (a, b) if name in p.custom_traits]
        at, value = max(candidates, key=lambda c: (c[0], str(c[1])))
        custom[name], times[slot] = value, at
    if len(custom) > MAX_CUSTOM_TRAITS:
        kept = _top(custom, MAX_CUSTOM_TRAITS, lambda k: times[f"t.{k}"])
        for name in set(custom) - set(kept):
            del times[f"t.{name}"]
        custom = kept
    changes["custom_traits"] = custom
    changes["trait_times"] = times
    return changes


def _merge_ledgers(a: Profile, b: Profile) -> tuple[dict[str, OrderRecord], list[OrderRecord], int]:
    """Union of the order ledgers, the records counted twice by the summed counters, and the refunds
    counted twice (an order refunded in both)."""
    ledger = dict(a.order_ledger)
    double_counted: list[OrderRecord] = []
    double_refunds = 0
    for order_id, theirs in b.order_ledger.items():
        mine = ledger.get(order_id)
        if mine is None:
            ledger[order_id] = theirs
            continue
        counted = sorted((r for r in (mine, theirs) if r.known and not r.refunded), key=_record_order)
        refunded = mine.refunded or theirs.refunded
        known = sorted((r for r in (mine, theirs) if r.known), key=_record_order)
        base = known[0] if known else min(mine, theirs, key=_record_order)
        ledger[order_id] = msgspec.structs.replace(base, refunded=refunded)
        double_counted.extend(counted if refunded else counted[1:])
        double_refunds += mine.refunded and theirs.refunded
    if len(ledger) > MAX_LEDGER_ORDERS:
        ledger = _top(ledger, MAX_LEDGER_ORDERS, lambda k: ledger[k].at)
    return ledger, double_counted, double_refunds


def _record_order(record: OrderRecord) -> tuple:
    return (record.at, record.revenue, record.payment_method, record.product_ids, record.coupon)


def _merge_nested(a: dict[str, dict[str, int]], b: dict[str, dict[str, int]], outer: int, inner: int) -> dict:
    merged = {k: dict(v) for k, v in a.items()}
    for key, counts in b.items():
        merged[key] = _add_counts(merged.get(key, {}), counts, inner)
    return _top(merged, outer, lambda k: sum(merged[k].values()))


def _merge_purchases(a: dict[str, tuple[float, ...]], b: dict[str, tuple[float, ...]]) -> dict[str, tuple[float, ...]]:
    merged = dict(a)
    for product_id, times in b.items():
        merged[product_id] = _merge_times(merged.get(product_id, ()), times, MAX_PURCHASES_PER_PRODUCT)
    return _top(merged, MAX_PURCHASED_PRODUCTS, lambda k: merged[k][-1])


def _merge_consent(a: Profile, b: Profile) -> dict[str, Any]:
    consent, times = dict(a.consent), dict(a.consent_updated_at)
    for channel, granted in b.consent.items():
        at = b.consent_updated_at.get(channel, 0.0)
        if is_newer(at, granted, times.get(channel) if channel in consent else None, consent.get(channel)):
            consent[channel], times[channel] = granted, at
    consent = _top(consent, MAX_CHANNELS, lambda k: times.get(k, 0.0))
    return {"consent": consent, "consent_updated_at": {k: v for k, v in times.items() if k in consent}}


def merge_profiles(into: Profile, absorbed: Profile, *, half_life_s: float = 14 * 86400.0) -> Profile:
    """One profile of the customer ``into.customer_id`` holding what both profiles know.

    Counters add; first_seen is the earliest, last_seen (and every other "latest time") the latest;
    lists and sets are unions within their caps; applied message ids are united (a replayed event is
    still deduplicated); count dicts add; traits and consent are last-write-wins by event time; the cart
    merges per product keeping the latest change (and drops what the latest order bought); orders known
    to both ledgers are counted once. ``user_id``, ``segments`` and ``scores`` are ``into``'s when set.

    Counters, min/max times and set unions are commutative and associative (below the caps, where
    eviction keeps the top entries by a deterministic order).
    """
    a, b = into, absorbed
    last_order_at = max(a.last_order_at, b.last_order_at)
    ledger, double_counted, double_refunds = _merge_ledgers(a, b)
    last_active = max((a.last_active_at, a.last_session_id), (b.last_active_at, b.last_session_id))
    counts = _add_counts(a.event_counts, b.event_counts, 10**9)
    last_at = {k: max(a.event_last_at.get(k, 0.0), b.event_last_at.get(k, 0.0)) for k in counts}
    counts = _top(counts, MAX_EVENT_NAMES, lambda k: last_at[k])
    viewed: dict[str, float] = {}
    for product_id, at in (*a.recently_viewed, *b.recently_viewed):
        viewed[product_id] = max(at, viewed.get(product_id, at))
    merged = msgspec.structs.replace(
        a,
        first_seen=min((x for x in (a.first_seen, b.first_seen) if x), default=0.0),
        last_seen=max(a.last_seen, b.last_seen),
        event_count=a.event_count + b.event_count,
        cart=_merge_cart(a, b, last_order_at),
        cart_updated_at=max(a.cart_updated_at, b.cart_updated_at),
        last_checkout_at=max(a.last_checkout_at, b.last_checkout_at),
        orders=a.orders + b.orders,
        revenue=a.revenue + b.revenue,
        last_order_at=last_order_at,
        triggers_sent=_union(b.triggers_sent, a.triggers_sent, MAX_TRIGGERS_REMEMBERED),
        applied_ids=_union(b.applied_ids, a.applied_ids, MAX_APPLIED_IDS),
        user_id=a.user_id or b.user_id,
        anonymous_ids=_union(b.anonymous_ids, a.anonymous_ids, MAX_ANONYMOUS_IDS),
        linked_ids=tuple(
            i for i in _union(b.linked_ids, (*a.linked_ids, b.customer_id), MAX_LINKED_IDS + 1) if i != a.customer_id
        )[-MAX_LINKED_IDS:],
        absorbed_ids=_union(b.absorbed_ids, a.absorbed_ids, MAX_ABSORBED_IDS),
        **_merge_traits(a, b),
        sessions=a.sessions + b.sessions,
        last_session_id=last_active[1],
        last_active_at=last_active[0],
        devices=_union(b.devices, a.devices, MAX_DEVICES),
        product_views=_add_counts(a.product_views, b.product_views, MAX_PRODUCT_VIEWS),
        category_views=_add_counts(a.category_views, b.category_views, MAX_CATEGORY_VIEWS),
        category_affinity=_merge_affinity(a.category_affinity, b.category_affinity, half_life_s),
        recently_viewed=tuple(sorted(viewed.items(), key=lambda e: (e[1], e[0])))[-MAX_RECENTLY_VIEWED:],
        event_counts=counts,
        event_last_at={k: last_at[k] for k in counts},
        order_times=_merge_times(a.order_times, b.order_times, MAX_ORDER_TIMES),
        product_purchases=_merge_purchases(a.product_purchases, b.product_purchases),
        orders_with_coupon=a.orders_with_coupon + b.orders_with_coupon,
        payment_methods=_add_counts(a.payment_methods, b.payment_methods, MAX_PAYMENT_METHODS),
        size_counts=_merge_nested(a.size_counts, b.size_counts, MAX_SIZE_CATEGORIES, MAX_SIZES_PER_CATEGORY),
        stores_visited=_union(b.stores_visited, a.stores_visited, MAX_STORES),
        order_ledger=ledger,
        refunds=a.refunds + b.refunds - double_refunds,
        engagement=_merge_nested(a.engagement, b.engagement, MAX_CHANNELS, 10**9),
        **_merge_consent(a, b),
        **merge_trigger_state(a, b, MAX_TRIGGER_HISTORY),
    )
    for record in double_counted:
        merged = msgspec.structs.replace(merged, **order_contribution(merged, record, -1))
    return merged
