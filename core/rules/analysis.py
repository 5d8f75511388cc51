"""What a checked rule depends on, read off its tree: its time-driven atoms, whether time alone can change
its answer, and which top-level profile-view fields evaluating it reads.
"""

from __future__ import annotations

from typing import Any

from core.rules.context import TIME_SOURCES
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
from core.segment_fields import DERIVED_INPUTS

_TIMED_ATOMS = (AgeCompare, Within, ReplenishmentDue, AffinityCompare)  # what ``breakpoints`` lists


def time_atoms(node: Any) -> tuple[Any, ...]:
    """The atoms of ``node`` that ``breakpoints`` reads: ``breakpoints(node)`` is the union of theirs."""
    if isinstance(node, (And, Or)):
        return tuple(atom for item in node.items for atom in time_atoms(item))
    if isinstance(node, Not):
        return time_atoms(node.item)
    return (node,) if isinstance(node, _TIMED_ATOMS) else ()


_TIMELESS_LEAVES = (Literal, ListLiteral, FieldRef, EventCount, Count, Exists)


def depends_on_time(node: Any) -> bool:
    """Whether the answer for ``node`` can change with ``ctx.now`` alone (True when not known)."""
    if isinstance(node, (And, Or)):
        return any(depends_on_time(item) for item in node.items)
    if isinstance(node, Not):
        return depends_on_time(node.item)
    if isinstance(node, (Compare, In, Contains)):
        return depends_on_time(node.left) or depends_on_time(node.right)
    return not isinstance(node, _TIMELESS_LEAVES)


def referenced_fields(node: Any) -> frozenset[str] | None:
    """The top-level profile-view keys evaluating ``node`` may read; None if that is not known."""
    names: set[str] = set()
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, (And, Or)):
            stack.extend(current.items)
        elif isinstance(current, Not):
            stack.append(current.item)
        elif isinstance(current, (Compare, In, Contains)):
            stack.extend((current.left, current.right))
        elif isinstance(current, (FieldRef, Count, Exists, AgeCompare)):
            head = current.path[0]
            names.add(head)
            if len(current.path) == 1:
                names.update(DERIVED_INPUTS.get(head, ()))
        elif isinstance(current, EventCount):
            names.add("event_counts")
        elif isinstance(current, (Affinity, AffinityCompare)):
            names.add("category_affinity")
        elif isinstance(current, Within):
            names.update(TIME_SOURCES[current.source])
        elif isinstance(current, ReplenishmentDue):
            names.add("product_purchases")
        elif not isinstance(current, (Literal, ListLiteral)):
            return None
    return frozenset(names)
