"""Segment evaluation as pure functions: memberships, what changed and why, and when time alone changes them.

    memberships = evaluate_segments(definitions, profile, now=now)
    entered, exited = diff_memberships(before, memberships, definitions)
    due = next_time_change(definitions, profile, now=now)   # schedule a re-check at ``due``

``profile`` is a ``core.profile.Profile`` or the dict view of one (``profile_document``'s output or
``msgspec.to_builtins(profile)``). Nothing here reads the clock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

from core.rules.context import Context
from core.rules.definitions import SegmentDefinitions, SegmentRule
from core.segment_fields import profile_view
from schemas.segments import SegmentChange

ENTERED: Literal["entered"] = "entered"
EXITED: Literal["exited"] = "exited"


def _context(definitions: SegmentDefinitions, profile: Any, now: float) -> Context:
    return Context(profile_view(profile, now=now, fields=definitions.view_fields), now, definitions.consumables)


def _memberships(definitions: SegmentDefinitions, matches: Callable[[SegmentRule], bool]) -> frozenset[str]:
    members = {rule.name for rule in definitions.independent if matches(rule)}
    for group in definitions.groups:
        for rule in group.segments:
            if matches(rule):
                members.add(rule.name)
                break
    return frozenset(members)


def _matcher(ctx: Context, fixed: Mapping[int, bool] | None = None) -> Callable[[SegmentRule], bool]:
    """Whether a rule matches at ``ctx``; ``fixed``: known answers of the rules time cannot change, by id."""
    if fixed is None:
        return lambda rule: rule.evaluate(ctx)
    return lambda rule: rule.evaluate(ctx) if rule.timed else fixed[id(rule)]


def evaluate_segments(definitions: SegmentDefinitions, profile: Any, *, now: float) -> frozenset[str]:
    """The segments ``profile`` belongs to at ``now``: matching independents and each group's first match."""
    return _memberships(definitions, _matcher(_context(definitions, profile, now)))


def next_time_change(
    definitions: SegmentDefinitions, profile: Any, *, now: float, current: frozenset[str] | None = None
) -> float | None:
    """The earliest instant after ``now`` at which, with no new event, the memberships would differ.

    Time-driven atoms (windows, ``days_since`` comparisons, replenishment) list the instants at which they
    flip; between two such instants nothing can change, so trying them in order finds the exact answer.
    None: time alone never changes this profile's memberships. ``current``: the memberships at ``now``
    (``evaluate_segments``' answer), if the caller has them already.
    """
    ctx = _context(definitions, profile, now)
    candidates = sorted({t for instants in definitions.breakpoints for t in instants(ctx) if t > now})
    if not candidates:
        return None
    if current is None:
        current = _memberships(definitions, _matcher(ctx))
    # Rules time cannot change keep their answer at every candidate: evaluate them once.
    fixed = {id(rule): rule.evaluate(ctx) for rule in definitions.rules if not rule.timed}
    for at in candidates:
        if _memberships(definitions, _matcher(ctx.at(at), fixed)) != current:
            return at
    return None


def _group_of(definitions: SegmentDefinitions | None, name: str) -> str:
    rule = definitions.rule(name) if definitions is not None else None
    return rule.group or "" if rule is not None else ""


def _reason(definitions: SegmentDefinitions | None, name: str, change: str, others: frozenset[str]) -> str:
    rule = definitions.rule(name) if definitions is not None else None
    if definitions is not None and rule is None:
        return "segment no longer defined"
    if rule is None:
        return f"{change} {name}"
    if change == ENTERED:
        prefix = f"first match in waterfall {rule.group}" if rule.group else "matches"
        return f"{prefix}: {rule.rule}"
    if rule.group and definitions is not None:
        group = next(g for g in definitions.groups if g.name == rule.group)
        now_in = next((r.name for r in group.segments if r.name in others), None)
        if now_in is not None:
            return f"waterfall {rule.group} now picks {now_in}"
    return f"no longer matches: {rule.rule}"


def diff_memberships(
    before: frozenset[str] | set[str],
    after: frozenset[str] | set[str],
    definitions: SegmentDefinitions | None = None,
) -> tuple[dict[str, str], dict[str, str]]:
    """``(entered, exited)``: each maps a segment name to the reason (which rule), sorted by name."""
    before, after = frozenset(before), frozenset(after)
    entered = {name: _reason(definitions, name, ENTERED, after) for name in sorted(after - before)}
    exited = {name: _reason(definitions, name, EXITED, after) for name in sorted(before - after)}
    return entered, exited


def segment_changes(
    customer_id: str,
    before: frozenset[str],
    after: frozenset[str],
    definitions: SegmentDefinitions,
    *,
    at: float,
) -> tuple[SegmentChange, ...]:
    """The ``SegmentChange`` records for one customer's move from ``before`` to ``after`` (exits first)."""
    entered, exited = diff_memberships(before, after, definitions)
    changes: list[SegmentChange] = []
    moves: tuple[tuple[Literal["entered", "exited"], dict[str, str]], ...] = ((EXITED, exited), (ENTERED, entered))
    for kind, table in moves:
        changes.extend(
            SegmentChange(
                customer_id=customer_id,
                segment=name,
                change=kind,
                at=at,
                reason=reason,
                group=_group_of(definitions, name),
            )
            for name, reason in table.items()
        )
    return tuple(changes)


def explain_segments(definitions: SegmentDefinitions, profile: Any, *, now: float) -> Mapping[str, bool]:
    """Every rule's own answer (ignoring waterfall exclusivity): for ``segments eval`` and debugging."""
    ctx = _context(definitions, profile, now)
    return {rule.name: rule.evaluate(ctx) for rule in definitions.rules}
