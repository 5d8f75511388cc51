"""Loading config/triggers.yaml: the shipped file, and every kind of bad file refused with its line."""

from __future__ import annotations

import pytest

from core.triggers.definitions import DEFAULT_TRIGGERS, load_triggers, parse_triggers
from schemas.errors import ConfigError
from schemas.profile import Affinity, Profile

GOOD = """\
version: 1
triggers:
  - name: cart_abandonment
    entry: {events: [Product Added], when: count(cart) > 0}
    wait: {after: 30m}
    channels: [email]
"""


def test_the_shipped_file_defines_every_shipped_kind():
    definitions = load_triggers(DEFAULT_TRIGGERS)
    assert [d.name for d in definitions.definitions] == [
        "cart_abandonment",
        "checkout_abandonment",
        "browse_abandonment",
        "replenishment",
        "high_intent_offer",
        "post_purchase_cross_sell",
        "win_back",
    ]
    cart = definitions.by_kind["cart_abandonment"]
    assert cart.wait.after == 1800 and cart.wait.expires == 3 * 86400 and cart.re_entry == 86400
    assert cart.exit_events == {"Checkout Started", "Order Completed"} and cart.exit_rule is not None
    assert definitions.by_entry_event["Order Completed"] == (
        definitions.by_kind["replenishment"],
        definitions.by_kind["post_purchase_cross_sell"],
    )
    assert definitions.rule_only == (definitions.by_kind["win_back"],)
    assert definitions.by_kind["browse_abandonment"].params == {"min_views": 3, "min_category_views": 5}


def test_a_minimal_definition_and_its_defaults():
    [definition] = parse_triggers(GOOD).definitions
    assert definition.priority == 50 and definition.content.items == "none" and definition.re_entry == 0


BAD = [
    ("unknown field", GOOD + "    colour: red\n", "<memory>:7:5: unknown key 'colour'"),
    ("unknown event", GOOD.replace("Product Added", "Product Bought"), "<memory>:4:22: unknown event name"),
    ("rule that does not compile", GOOD.replace("count(cart) > 0", "count(cart) >"), "<memory>:4:"),
    ("unknown profile field", GOOD.replace("count(cart)", "count(basket)"), "entry rule of trigger"),
    (
        "a wait that can never end",
        GOOD.replace("{after: 30m}", "{before: expected_at, lead: 3d}"),
        "<memory>:5:20: wait of trigger 'cart_abandonment' counts back from 'expected_at', which is never known",
    ),
    ("two waits", GOOD.replace("{after: 30m}", "{after: 30m, as_soon_as: true}"), "needs exactly one of"),
    ("no wait", GOOD.replace("    wait: {after: 30m}\n", ""), "has no 'wait'"),
    ("no entry", GOOD.replace("    entry: {events: [Product Added], when: count(cart) > 0}\n", ""), "no 'entry'"),
    ("empty entry", GOOD.replace("{events: [Product Added], when: count(cart) > 0}", "{}"), "could never start"),
    ("unknown channel", GOOD.replace("[email]", "[pigeon]"), "unknown channel 'pigeon'"),
    ("bad duration", GOOD.replace("30m", "half an hour"), "bad window"),
    ("never sent", GOOD.replace("{after: 30m}", "{after: 30m, expires: 0s}"), "must be positive"),
    ("unknown facts", GOOD.replace("when: count", "facts: psychic, when: count"), "unknown facts function"),
    ("unknown param", GOOD.replace("when: count", "params: {x: 1}, when: count"), "unknown param 'x'"),
    ("duplicate name", GOOD + GOOD.split("triggers:\n")[1], "duplicate trigger name"),
    ("bad priority", GOOD + "    priority: 500\n", "priority of trigger"),
    ("bad items", GOOD + "    content: {items: wishlist}\n", "content.items"),
    ("not YAML", "triggers: [", "not valid YAML"),
    ("empty", "", "empty file"),
]


@pytest.mark.parametrize(("name", "text", "problem"), BAD, ids=[row[0] for row in BAD])
def test_a_bad_file_is_refused_with_line_and_problem(name: str, text: str, problem: str):
    with pytest.raises(ConfigError) as caught:
        parse_triggers(text)
    assert problem in str(caught.value)


def test_a_file_that_cannot_be_read(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_triggers(tmp_path / "missing.yaml")


def test_rules_decay_affinity_with_the_half_life_they_are_loaded_with():
    # The worker passes the profile policy's half-life (streams.stage_config), as it does for segments.
    text = GOOD.replace("count(cart) > 0", 'affinity("tents") >= 2')
    profile = Profile(customer_id="c", category_affinity={"tents": Affinity(4.0, 0.0)})
    two_days = 2 * 86400.0
    [fortnight] = parse_triggers(text).definitions  # the default: 14 days, 4 → ~3.6 after two days
    [one_day] = parse_triggers(text, affinity_half_life_s=86400.0).definitions  # 4 → 1 after two days
    assert fortnight.entry_rule is not None and one_day.entry_rule is not None
    assert fortnight.entry_rule.holds(profile, two_days)
    assert not one_day.entry_rule.holds(profile, two_days)
