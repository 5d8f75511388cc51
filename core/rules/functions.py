"""The built-in functions of the rule language: each one's parameters, result type, the node it builds, and
the one-line help ``segments check --help`` prints.

The parser checks a call's arguments against ``params`` and ``kinds``, then calls ``build`` with them; the
functions whose node depends on the argument's type (``days_since``, ``count``, ``exists``) are finished
by the parser (``Parser.build_call``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from core.rules.nodes import Affinity, Count, EventCount, Exists, FieldRef, Not, ReplenishmentDue, Within
from core.segment_fields import BOOL, NUMBER, FieldType


@dataclass(frozen=True)
class Function:
    """A callable of the rule language: its parameters and how it builds a node from checked arguments."""

    params: tuple[str, ...]  # positional order; "name?" marks an optional parameter
    kinds: Mapping[str, str]  # param → "string" | "window" | "path"
    result: FieldType
    build: Callable[..., Any] | None  # None: a function the parser builds itself (time reads)
    doc: str


NUMBER_TYPE = FieldType(NUMBER)
BOOL_TYPE = FieldType(BOOL)


def _within(source: str) -> Callable[..., Any]:
    def build(key: str, window: float) -> Within:
        return Within(source, key, window)

    return build


FUNCTIONS: Mapping[str, Function] = {
    "days_since": Function(
        ("field",), {"field": "path"}, NUMBER_TYPE, None, "days since the timestamp field (compare with a number)"
    ),
    "days_since_event": Function(
        ("event",),
        {"event": "string"},
        NUMBER_TYPE,
        None,
        "days since the last event of that name (compare with a number)",
    ),
    "event_within": Function(
        ("event", "within"),
        {"event": "string", "within": "window"},
        BOOL_TYPE,
        _within("event"),
        "an event of that name happened within the window",
    ),
    "no_event": Function(
        ("event", "for"),
        {"event": "string", "for": "window"},
        BOOL_TYPE,
        lambda key, window: Not(Within("event", key, window)),
        "no event of that name within the window (true if never)",
    ),
    "viewed_category": Function(
        ("category", "within"),
        {"category": "string", "within": "window"},
        BOOL_TYPE,
        _within("category_view"),
        "viewed a product of the category within the window",
    ),
    "viewed_product": Function(
        ("product", "within"),
        {"product": "string", "within": "window"},
        BOOL_TYPE,
        _within("product_view"),
        "viewed the product within the window",
    ),
    "purchased_product": Function(
        ("product", "within"),
        {"product": "string", "within": "window"},
        BOOL_TYPE,
        _within("product_purchase"),
        "bought the product within the window",
    ),
    "replenishment_due": Function(
        ("within", "category?", "product?"),
        {"within": "window", "category": "string", "product": "string"},
        BOOL_TYPE,
        lambda window, category=None, product=None: ReplenishmentDue(window, category, product),
        "a consumable's predicted next purchase is at most the window ahead (or overdue)",
    ),
    "event_count": Function(
        ("event",), {"event": "string"}, NUMBER_TYPE, EventCount, "how many events of that name the profile counted"
    ),
    "affinity": Function(
        ("category",),
        {"category": "string"},
        NUMBER_TYPE,
        Affinity,
        "the category's time-decayed affinity (views 1, adds 3, purchases 5; half-life 14d by default)",
    ),
    "score": Function(
        ("name",),
        {"name": "string"},
        NUMBER_TYPE,
        lambda name: FieldRef(("scores", name)),
        "a propensity score, same as scores.<name>",
    ),
    "count": Function(("field",), {"field": "path"}, NUMBER_TYPE, Count, "number of items of a list or map field"),
    "exists": Function(
        ("field",), {"field": "path"}, BOOL_TYPE, Exists, "the field is present, not null, not empty and not 0"
    ),
}


def describe_functions() -> str:
    """One line per function, for ``segments check --help`` and the docs."""
    return "\n".join(f"  {name}({', '.join(fn.params)}): {fn.doc}" for name, fn in sorted(FUNCTIONS.items()))
