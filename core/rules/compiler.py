"""The rule compiler: a checked node tree → nested closures ``ctx -> bool``, and each time-driven atom → a
closure listing the instants at which its answer flips (``compile_breakpoints``), so the worker schedules a
re-evaluation instead of scanning every profile.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from core.rules.analysis import time_atoms
from core.rules.context import (
    DEFAULT_AFFINITY_HALF_LIFE_S,
    TIME_SOURCES,
    Context,
    affinity_at,
    decayed_affinity,
    is_hashable,
    replenishment_times,
    time_in,
)
from core.rules.nodes import (
    Affinity,
    AffinityCompare,
    AgeCompare,
    And,
    Compare,
    Contains,
    Count,
    EventCount,
    Exists,
    FieldRef,
    In,
    ListLiteral,
    Literal,
    Not,
    Or,
    ReplenishmentDue,
    Within,
)
from core.segment_fields import DAY_S, DERIVED_FIELDS, read_path

# ``compile_node`` turns a checked node tree into nested closures, once, when the definitions are loaded:
# evaluation then makes no isinstance dispatch on nodes and no generator per ``and``/``or``. Only closures
# over the node's own constants — no Python source is generated, so a rule still cannot run code.
# The tests keep a plain interpreter as the reference (tests/unit/test_segments/rule_oracle.py) and check
# that both give the same answers and the same breakpoints.

Evaluator = Callable[[Context], Any]
_NUMERIC = (int, float)
_CONTAINERS = (list, tuple, dict)
_EMPTY: tuple[Any, ...] = (None, "", 0, 0.0, [], {})
_ORDER_OPS: Mapping[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _ordered_function(op: str) -> Callable[[Any, Any], bool]:
    """``lambda left, right: _ordered(op, left, right)``, with the operator chosen once."""
    if op == "==":
        return operator.eq
    if op == "!=":
        return operator.ne
    compare = _ORDER_OPS[op]

    def ordered(left: Any, right: Any) -> bool:
        if isinstance(left, str):
            return isinstance(right, str) and compare(left, right)
        return (
            isinstance(left, _NUMERIC)
            and isinstance(right, _NUMERIC)
            and left.__class__ is not bool
            and right.__class__ is not bool
            and compare(left, right)
        )

    return ordered


def _compile_path(path: tuple[str, ...]) -> Evaluator:
    """``read_path(ctx.view, path)``, with a fast lane for plain dicts one or two levels deep."""
    if len(path) == 1 and path[0] not in DERIVED_FIELDS:
        name = path[0]

        def read_top(ctx: Context) -> Any:
            view = ctx.view
            return view.get(name) if view.__class__ is dict else read_path(view, path)

        return read_top
    if len(path) == 2:
        outer, inner = path

        def read_nested(ctx: Context) -> Any:
            view = ctx.view
            if view.__class__ is dict:
                section = view.get(outer)
                if section.__class__ is dict:
                    return section.get(inner)
            return read_path(view, path)

        return read_nested
    return lambda ctx: read_path(ctx.view, path)


def _compile_value(node: Any, half_life_s: float) -> Evaluator:
    """The closure reading a value node (a literal, field, count or affinity), or a condition's closure."""
    if isinstance(node, Literal):
        value = node.value
        return lambda ctx: value
    if isinstance(node, ListLiteral):
        values = node.values
        return lambda ctx: values
    if isinstance(node, FieldRef):
        return _compile_path(node.path)
    if isinstance(node, EventCount):
        event = node.event

        def event_count(ctx: Context) -> Any:
            counts = ctx.view.get("event_counts")
            return counts.get(event, 0) if isinstance(counts, dict) else 0

        return event_count
    if isinstance(node, Affinity):
        category = node.category
        return lambda ctx: decayed_affinity(ctx.view, category, ctx.now, half_life_s)
    if isinstance(node, Count):
        read = _compile_path(node.path)

        def count(ctx: Context) -> int:
            value = read(ctx)
            return len(value) if isinstance(value, (list, dict, str)) else 0

        return count
    return compile_node(node, half_life_s)


def _compile_compare(node: Compare, half_life_s: float) -> Evaluator:
    left = _compile_value(node.left, half_life_s)
    if isinstance(node.right, Literal):
        constant = node.right.value
        if node.op == "==":
            return lambda ctx: left(ctx) == constant
        if node.op == "!=":
            return lambda ctx: left(ctx) != constant
        compare = _ORDER_OPS[node.op]
        if isinstance(constant, _NUMERIC) and constant.__class__ is not bool:

            def against_number(ctx: Context) -> bool:
                value = left(ctx)
                kind = value.__class__
                if kind is int or kind is float:
                    return compare(value, constant)
                return isinstance(value, _NUMERIC) and kind is not bool and compare(value, constant)

            return against_number
        if isinstance(constant, str):

            def against_string(ctx: Context) -> bool:
                value = left(ctx)
                return isinstance(value, str) and compare(value, constant)

            return against_string
    right = _compile_value(node.right, half_life_s)
    ordered = _ordered_function(node.op)
    return lambda ctx: ordered(left(ctx), right(ctx))


def _compile_age(node: AgeCompare) -> Evaluator:
    read = _compile_path(node.path)
    span = node.days * DAY_S
    ordered = _ordered_function(node.op)

    def age(ctx: Context) -> bool:
        start = read(ctx)  # read_time, inlined: 0, missing or not a number mean "never"
        if start.__class__ is bool or not isinstance(start, _NUMERIC) or start <= 0:
            return False
        return ordered(ctx.now, float(start) + span)

    return age


def _last_time_reader(source: str, key: str) -> Callable[[Mapping[str, Any]], float | None]:
    """``last_time(view, source, key)`` with the source's containers looked up once."""
    names = TIME_SOURCES[source]
    if len(names) == 1:
        name = names[0]
        return lambda view: time_in(view.get(name), key)

    def newest(view: Mapping[str, Any]) -> float | None:
        best: float | None = None
        for name in names:
            container = view.get(name)
            if container is not None:  # most sources' second container is absent
                found = time_in(container, key)
                if found is not None and (best is None or found > best):
                    best = found
        return best

    return newest


def _compile_within(node: Within) -> Evaluator:
    last_of = _last_time_reader(node.source, node.key)
    window = node.window_s

    def within(ctx: Context) -> bool:
        last = last_of(ctx.view)
        return last is not None and ctx.now < last + window

    return within


def _compile_affinity(node: AffinityCompare, half_life_s: float) -> Evaluator:
    category, threshold = node.category, node.threshold
    ordered = _ordered_function(node.op)
    absent = ordered(0.0, threshold)  # most profiles never touched most categories

    def affinity(ctx: Context) -> bool:
        view = ctx.view
        table = view.get("category_affinity")
        if table.__class__ is dict:
            entry = table.get(category)
            if entry is None:
                return absent
            if entry.__class__ is list and len(entry) == 2:  # decayed_affinity, inlined for the view's shape
                value, at, now = float(entry[0]), float(entry[1]), ctx.now
                decayed = value if now <= at else value * math.pow(0.5, (now - at) / half_life_s)
                return ordered(decayed, threshold)
        return ordered(decayed_affinity(view, category, ctx.now, half_life_s), threshold)

    return affinity


def _compile_replenishment(node: ReplenishmentDue) -> Evaluator:
    def due(ctx: Context) -> bool:
        purchases = ctx.view.get("product_purchases")
        if not purchases and isinstance(purchases, dict):  # nothing bought: no prediction to make
            return False
        now = ctx.now
        return any(now >= at for at in replenishment_times(node, ctx))

    return due


def _compile_in(node: In, half_life_s: float) -> Evaluator:
    left, right = _compile_value(node.left, half_life_s), _compile_value(node.right, half_life_s)
    negate = node.negate

    def member(ctx: Context) -> bool:
        item, container = left(ctx), right(ctx)
        if isinstance(container, _CONTAINERS):
            if isinstance(item, list):
                found = any(one in container for one in item)
            else:
                found = item is not None and is_hashable(item) and item in container
        else:
            found = False
        return found != negate

    return member


def _compile_contains(node: Contains, half_life_s: float) -> Evaluator:
    left, right = _compile_value(node.left, half_life_s), _compile_value(node.right, half_life_s)

    def contains(ctx: Context) -> bool:
        container, item = left(ctx), right(ctx)
        if isinstance(container, str):
            return isinstance(item, str) and item in container
        if isinstance(container, (list, tuple)):
            return item in container
        if isinstance(container, dict):
            return is_hashable(item) and item in container
        return False

    return contains


# ``and``/``or`` of n items: a balanced tree of two-item closures, ``(a and b) and (c and d)``: each call
# short-circuits left to right without a generator or a loop, and the nesting stays log2(n) deep however
# long the rule. The items are closures returning bools, so the answer is a bool too.


def _compile_all(items: tuple[Evaluator, ...]) -> Evaluator:
    if len(items) == 1:
        return items[0]
    middle = len(items) // 2
    first, second = _compile_all(items[:middle]), _compile_all(items[middle:])
    return lambda ctx: first(ctx) and second(ctx)


def _compile_any(items: tuple[Evaluator, ...]) -> Evaluator:
    if len(items) == 1:
        return items[0]
    middle = len(items) // 2
    first, second = _compile_any(items[:middle]), _compile_any(items[middle:])
    return lambda ctx: first(ctx) or second(ctx)


def compile_node(node: Any, half_life_s: float = DEFAULT_AFFINITY_HALF_LIFE_S) -> Evaluator:
    """A checked node tree → a closure ``ctx -> bool``: whether the profile in ``ctx`` matches at ``ctx.now``.

    ``half_life_s``: how fast ``affinity(...)`` decays, bound into the closures (the definitions' value).
    """
    if isinstance(node, And):
        return _compile_all(tuple(compile_node(item, half_life_s) for item in node.items))
    if isinstance(node, Or):
        return _compile_any(tuple(compile_node(item, half_life_s) for item in node.items))
    if isinstance(node, Not):
        inner = compile_node(node.item, half_life_s)
        return lambda ctx: not inner(ctx)
    if isinstance(node, Compare):
        return _compile_compare(node, half_life_s)
    if isinstance(node, AgeCompare):
        return _compile_age(node)
    if isinstance(node, Within):
        return _compile_within(node)
    if isinstance(node, AffinityCompare):
        return _compile_affinity(node, half_life_s)
    if isinstance(node, ReplenishmentDue):
        return _compile_replenishment(node)
    if isinstance(node, In):
        return _compile_in(node, half_life_s)
    if isinstance(node, Contains):
        return _compile_contains(node, half_life_s)
    if isinstance(node, Exists):
        read = _compile_path(node.path)

        def exists(ctx: Context) -> bool:
            value = read(ctx)
            return value not in _EMPTY and value is not False

        return exists
    if isinstance(node, Literal):
        answer = bool(node.value)
        return lambda ctx: answer
    message = f"not a condition: {type(node).__name__}"
    raise TypeError(message)


Instants = Callable[[Context], Iterable[float]]


def _compile_age_breakpoints(node: AgeCompare) -> Instants:
    read = _compile_path(node.path)
    span = node.days * DAY_S
    # ">=" and "<" flip at the boundary itself; ">" and "<=" at the first instant after it.
    at_boundary = node.op in (">=", "<", "==", "!=")
    after_boundary = node.op in (">", "<=", "==", "!=")

    def age(ctx: Context) -> tuple[float, ...]:
        start = read(ctx)  # read_time, inlined
        if start.__class__ is bool or not isinstance(start, _NUMERIC) or start <= 0:
            return ()
        boundary = float(start) + span
        if at_boundary and after_boundary:
            return boundary, math.nextafter(boundary, math.inf)
        return (boundary,) if at_boundary else (math.nextafter(boundary, math.inf),)

    return age


def _compile_within_breakpoints(node: Within) -> Instants:
    last_of = _last_time_reader(node.source, node.key)
    window = node.window_s

    def within(ctx: Context) -> tuple[float, ...]:
        last = last_of(ctx.view)
        return () if last is None else (last + window,)

    return within


def _compile_affinity_breakpoints(node: AffinityCompare, half_life_s: float) -> Instants:
    category, threshold = node.category, node.threshold
    if not threshold > 0:
        return lambda ctx: ()

    def affinity(ctx: Context) -> tuple[float, ...]:
        stored = affinity_at(ctx.view, category, ctx.now)
        # A value exactly at the threshold (one view against ``>= 1``) flips as soon as it decays: at ``at``.
        if stored is None or not stored[0] >= threshold:
            return ()
        value, at = stored
        crossing = at + half_life_s * math.log2(value / threshold)
        # Rounding may put the exact crossing a hair late; the caller re-evaluates at each candidate.
        return crossing, math.nextafter(crossing, math.inf), crossing + 1e-3

    return affinity


def compile_breakpoints(atom: Any, half_life_s: float = DEFAULT_AFFINITY_HALF_LIFE_S) -> Instants:
    """The instants (any order, maybe past) at which ``atom``, an atom of ``time_atoms``, flips its answer.

    Anything else gets the union of its own time atoms' instants (none for a timeless node). ``half_life_s``
    as for ``compile_node``.
    """
    if isinstance(atom, AgeCompare):
        return _compile_age_breakpoints(atom)
    if isinstance(atom, Within):
        return _compile_within_breakpoints(atom)
    if isinstance(atom, ReplenishmentDue):
        return lambda ctx: replenishment_times(atom, ctx)
    if isinstance(atom, AffinityCompare):
        return _compile_affinity_breakpoints(atom, half_life_s)
    parts = tuple(compile_breakpoints(part, half_life_s) for part in time_atoms(atom))
    return lambda ctx: [at for part in parts for at in part(ctx)]
