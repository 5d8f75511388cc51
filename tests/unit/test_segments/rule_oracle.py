"""The test oracle: a plain, readable interpreter of the rule language, used only by the tests.

``core.rules.compiler`` is what the worker runs; this module evaluates the same node trees by walking them
(``evaluate_node``) and lists each time-driven atom's flip instants (``breakpoints``) the obvious way;
``half_life_s`` is the affinity half-life the compiler binds into its closures. The
tests check that the compiled closures give the same answers and instants over generated profiles.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

from core.rules.context import (
    DEFAULT_AFFINITY_HALF_LIFE_S,
    Context,
    affinity_at,
    decayed_affinity,
    is_hashable,
    last_time,
    replenishment_times,
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
from core.segment_fields import DAY_S, read_path, read_time


def _value(node: Any, ctx: Context, half_life_s: float) -> Any:
    if isinstance(node, Literal):
        return node.value
    if isinstance(node, ListLiteral):
        return node.values
    if isinstance(node, FieldRef):
        return read_path(ctx.view, node.path)
    if isinstance(node, EventCount):
        counts = ctx.view.get("event_counts")
        return counts.get(node.event, 0) if isinstance(counts, dict) else 0
    if isinstance(node, Affinity):
        return decayed_affinity(ctx.view, node.category, ctx.now, half_life_s)
    if isinstance(node, Count):
        value = read_path(ctx.view, node.path)
        return len(value) if isinstance(value, (list, dict, str)) else 0
    return evaluate_node(node, ctx, half_life_s)


def _ordered(op: str, left: Any, right: Any) -> bool:
    if op == "==":
        return left == right
    if op == "!=":
        return left != right
    numeric = (int, float)
    comparable = (
        isinstance(left, numeric)
        and isinstance(right, numeric)
        and not isinstance(left, bool)
        and not isinstance(right, bool)
    ) or (isinstance(left, str) and isinstance(right, str))
    if not comparable:
        return False
    if op == "<":
        return left < right
    if op == "<=":
        return left <= right
    if op == ">":
        return left > right
    return left >= right


def _age_boundary(node: AgeCompare, view: Mapping[str, Any]) -> float | None:
    start = read_time(view, node.path)
    return None if start is None else start + node.days * DAY_S


def evaluate_node(node: Any, ctx: Context, half_life_s: float = DEFAULT_AFFINITY_HALF_LIFE_S) -> bool:
    """Evaluate a compiled condition against a profile view at ``ctx.now``."""
    if isinstance(node, And):
        return all(evaluate_node(item, ctx, half_life_s) for item in node.items)
    if isinstance(node, Or):
        return any(evaluate_node(item, ctx, half_life_s) for item in node.items)
    if isinstance(node, Not):
        return not evaluate_node(node.item, ctx, half_life_s)
    if isinstance(node, Compare):
        return _ordered(node.op, _value(node.left, ctx, half_life_s), _value(node.right, ctx, half_life_s))
    if isinstance(node, AgeCompare):
        boundary = _age_boundary(node, ctx.view)
        return boundary is not None and _ordered(node.op, ctx.now, boundary)
    if isinstance(node, Within):
        last = last_time(ctx.view, node.source, node.key)
        return last is not None and ctx.now < last + node.window_s
    if isinstance(node, AffinityCompare):
        return _ordered(node.op, decayed_affinity(ctx.view, node.category, ctx.now, half_life_s), node.threshold)
    if isinstance(node, ReplenishmentDue):
        return any(ctx.now >= due for due in replenishment_times(node, ctx))
    if isinstance(node, In):
        left, right = _value(node.left, ctx, half_life_s), _value(node.right, ctx, half_life_s)
        if isinstance(right, (list, tuple, dict)):
            found = (
                any(item in right for item in left)
                if isinstance(left, list)
                else (left is not None and is_hashable(left) and left in right)
            )
        else:
            found = False
        return found != node.negate
    if isinstance(node, Contains):
        left, right = _value(node.left, ctx, half_life_s), _value(node.right, ctx, half_life_s)
        if isinstance(left, str):
            return isinstance(right, str) and right in left
        if isinstance(left, (list, tuple)):
            return right in left
        if isinstance(left, dict):
            return is_hashable(right) and right in left
        return False
    if isinstance(node, Exists):
        value = read_path(ctx.view, node.path)
        return value not in (None, "", 0, 0.0, [], {}) and value is not False
    if isinstance(node, Literal):
        return bool(node.value)
    message = f"not a condition: {type(node).__name__}"
    raise TypeError(message)


def breakpoints(node: Any, ctx: Context, half_life_s: float = DEFAULT_AFFINITY_HALF_LIFE_S) -> Iterator[float]:
    """Instants (any order, maybe in the past) at which a time-driven atom of ``node`` flips."""
    if isinstance(node, (And, Or)):
        for item in node.items:
            yield from breakpoints(item, ctx, half_life_s)
    elif isinstance(node, Not):
        yield from breakpoints(node.item, ctx, half_life_s)
    elif isinstance(node, AgeCompare):
        boundary = _age_boundary(node, ctx.view)
        if boundary is not None:
            # ">=" and "<" flip at the boundary itself; ">" and "<=" at the first instant after it.
            if node.op in (">=", "<", "==", "!="):
                yield boundary
            if node.op in (">", "<=", "==", "!="):
                yield math.nextafter(boundary, math.inf)
    elif isinstance(node, Within):
        last = last_time(ctx.view, node.source, node.key)
        if last is not None:
            yield last + node.window_s
    elif isinstance(node, ReplenishmentDue):
        yield from replenishment_times(node, ctx)
    elif isinstance(node, AffinityCompare):
        stored = affinity_at(ctx.view, node.category, ctx.now)
        if stored is not None and node.threshold > 0 and stored[0] >= node.threshold:
            value, at = stored
            crossing = at + half_life_s * math.log2(value / node.threshold)
            # Rounding may put the exact crossing a hair late; the caller re-evaluates at each candidate.
            yield from (crossing, math.nextafter(crossing, math.inf), crossing + 1e-3)
