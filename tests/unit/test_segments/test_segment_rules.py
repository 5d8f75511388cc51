"""The rule language: what compiles, what is rejected (with a ConfigError naming file and line), and answers."""

from __future__ import annotations

import pytest

from core.rules.context import Context
from core.rules.definitions import parse_definitions
from core.rules.parser import compile_rule
from core.rules.tokens import RuleError
from core.segment_fields import build_catalog
from schemas.errors import ConfigError
from tests.unit.test_segments.rule_oracle import evaluate_node

CATALOG = build_catalog()
DAY = 86400.0
NOW = 1_700_000_000.0


def definitions_with(rule: str):
    text = f"segments:\n  - name: probe\n    when: {rule!r}\n".replace("\\\\", "\\")
    return parse_definitions(text, source="probe.yaml", catalog=CATALOG)


VALID = [
    "orders >= 3",
    "revenue >= 50000 and orders >= 3",
    'country in ["NL", "BE"]',
    "country not in ['NL', 'BE']",
    "not (orders == 0)",
    "traits.country == 'DE'",
    "scores.purchase_7d >= 0.6",
    'scores["churn_60d"] < 0.2',
    'event_counts["Order Completed"] >= 2',
    "consent.email == true",
    'cart.category contains "tents"',
    "devices contains 'web'",
    "exists(email_hash)",
    "count(cart) >= 2",
    "days_since_last_order >= 60",
    "60 <= days_since_last_order",
    "days_since(last_seen) < 30",
    'days_since_event("Product Viewed") <= 7',
    'viewed_category("dog-food", within=7d)',
    'viewed_category(category="dog-food", within="12h")',
    'no_event("Order Completed", for=60d)',
    'event_within("Checkout Started", within=2w)',
    'purchased_product("out-gas-230g", within=90d)',
    'replenishment_due(within=5d, category="dog-food")',
    "replenishment_due(5d)",
    'affinity("tents") >= 2.5',
    'event_count("Product Viewed") > 10 or orders > 1',
    'lifecycle_stage == "active"',
    "loyalty_tier == null",
    "true",
    "orders > -1",
]


@pytest.mark.parametrize("rule", VALID)
def test_valid_rules_compile(rule: str) -> None:
    definitions = definitions_with(rule)
    assert definitions.independent[0].name == "probe"


INVALID = [
    ("ordrs >= 3", "unknown field 'ordrs'"),
    ("orders >= '3'", "type mismatch"),
    ("country == 3", "type mismatch"),
    ("orders", "not a condition"),
    ("orders >=", "expected a value"),
    ("orders >= 3 and", "expected a value"),
    ("(orders >= 3", "expected ')'"),
    ("orders >= 3)", "unexpected ')'"),
    ("viewed_category('dog', within=7x)", "bad number or duration"),
    ("viewed_category('dog', within='seven days')", "bad window"),
    ("viewed_category('dog', within=0d)", "bad window"),
    ("viewed_category('dog', within=99999d)", "bad window"),
    ("viewed_category('dog')", "needs within"),
    ("viewed_category('dog', within=7d, extra=1)", "no parameter 'extra'"),
    ("frobnicate(1)", "unknown function 'frobnicate'"),
    ("days_since_last_order", "must be compared"),
    ("days_since_last_order >= orders", "compared with a number"),
    ("orders >= 7d", "only allowed as a window"),
    ("country in 'NL'", "needs a list"),
    ("orders in ['a']", "type mismatch"),
    ("orders contains 3", "'contains' needs"),
    ("country.code == 'x'", "has no field"),
    ("", "empty rule"),
    ("'unterminated", "unterminated string"),
    ("orders >= 3 # comment", "unexpected character"),
    ("loyalty_tier > null", "null can only"),
]


@pytest.mark.parametrize(("rule", "problem"), INVALID)
def test_invalid_rules_name_file_line_and_problem(rule: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        definitions_with(rule)
    message = str(caught.value)
    assert "probe.yaml:3:" in message
    assert problem in message


MALICIOUS = [
    "__import__('os').system('touch /tmp/pwned')",
    "__import__",
    "orders.__class__",
    "().__class__.__bases__[0].__subclasses__()",
    "open('/etc/passwd')",
    "exec('import os')",
    "eval('1')",
    "getattr(orders, 'real')",
    "lambda: 1",
    "orders; import os",
    "orders >= 3 if True else 0",
    "[x for x in ()]",
    "{}",
    "'a' + 'b' == 'ab'",
    "orders @ 2",
    "`id`",
    "orders\x00 >= 1",
    "scores['__class__'].mro",
    "(" * 500 + "true" + ")" * 500,
    "not " * 500 + "true",
    "orders in [" + ", ".join(["1"] * 5000) + "]",
    "country == '" + "x" * 10_000 + "'",
    "orders >= 1 and " * 2000 + "true",
    "a" + ".b" * 100,
]


@pytest.mark.parametrize("rule", MALICIOUS, ids=lambda rule: rule[:40])
def test_malicious_rules_are_config_errors_and_never_run(rule: str, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError):
        definitions_with(rule)
    assert not (tmp_path / "pwned").exists()


def test_deep_nesting_is_a_rule_error_not_a_recursion_error() -> None:
    with pytest.raises(RuleError, match="nested deeper"):
        compile_rule("(" * 1000 + "true" + ")" * 1000, CATALOG)


def run(rule: str, view: dict, now: float = NOW) -> bool:
    return evaluate_node(compile_rule(rule, CATALOG), Context(view, now))


EVALUATIONS = [
    ("orders >= 3", {"orders": 3}, True),
    ("orders >= 3", {"orders": 2}, False),
    ("orders >= 3", {}, False),
    ("country in ['NL', 'BE']", {"country": "BE"}, True),
    ("country in ['NL', 'BE']", {"country": None}, False),
    ("country not in ['NL', 'BE']", {"country": "DE"}, True),
    ("cart.category contains 'tents'", {"cart": [{"category": "socks"}, {"category": "tents"}]}, True),
    ("cart.category contains 'tents'", {"cart": []}, False),
    ("scores.purchase_7d >= 0.6", {"scores": {"purchase_7d": 0.61}}, True),
    ("scores.purchase_7d >= 0.6", {"scores": {}}, False),
    ("consent.email == true", {"consent": {"email": True}}, True),
    ("consent.email", {"consent": {"email": False}}, False),
    ("exists(email_hash)", {"email_hash": "abc"}, True),
    ("exists(email_hash)", {"email_hash": None}, False),
    ("not exists(email_hash) or orders > 0", {"orders": 0}, True),
    ("count(cart) >= 2", {"cart": [{}, {}]}, True),
    ("event_count('Order Completed') >= 2", {"event_counts": {"Order Completed": 2}}, True),
    ("days_since_last_order >= 60", {"orders": 1, "last_order_at": NOW - 60 * DAY}, True),
    ("days_since_last_order >= 60", {"orders": 1, "last_order_at": NOW - 59 * DAY}, False),
    ("days_since_last_order >= 60", {"last_order_at": 0.0}, False),
    ("days_since_last_order < 60", {"last_order_at": 0.0}, False),
    ("viewed_category('dog-food', within=7d)", {"category_affinity": {"dog-food": [1.0, NOW - 6 * DAY]}}, True),
    ("viewed_category('dog-food', within=7d)", {"category_affinity": {"dog-food": [1.0, NOW - 7 * DAY]}}, False),
    ("viewed_product('p1', within=1d)", {"recently_viewed": [["p0", NOW], ["p1", NOW - 3600]]}, True),
    ("no_event('Order Completed', for=60d)", {"event_last_at": {"Order Completed": NOW - 61 * DAY}}, True),
    ("no_event('Order Completed', for=60d)", {"event_last_at": {"Order Completed": NOW - 1 * DAY}}, False),
    ("no_event('Order Completed', for=60d)", {}, True),
    ("purchased_product('x', within=30d)", {"product_purchases": {"x": [NOW - 40 * DAY, NOW - 10 * DAY]}}, True),
    ("affinity('tents') >= 2", {"category_affinity": {"tents": [4.0, NOW - 14 * DAY]}}, True),
    ("affinity('tents') >= 2", {"category_affinity": {"tents": [4.0, NOW - 15 * DAY]}}, False),
]


@pytest.mark.parametrize(("rule", "view", "expected"), EVALUATIONS)
def test_rule_answers(rule: str, view: dict, expected: bool) -> None:
    assert run(rule, view) is expected
