"""The groups (accounts, households) a customer belongs to, from Segment ``group`` calls.

A profile keeps ``groups`` (groupId → the group's scalar traits) and ``group_times`` (groupId → event
time of its latest call). Pure functions of those two dicts, so they do not depend on where ``Profile``
lives: ``apply_group_call`` for one call, ``merge_groups`` when two profiles of one customer merge.

Order independence as for the person's traits: a call newer than the group's latest overwrites the traits
it names; an older one only fills traits the group does not have yet. Raw contact details (a group's
``email`` or ``phone``) are never kept, as for the person's custom traits.
"""

from __future__ import annotations

from core.privacy import is_pii_trait, looks_like_contact
from core.profile.bounded import clipped_id, clipped_text
from core.profile.policy import MAX_TEXT_BYTES, MAX_TRAIT_NAME_BYTES

Scalar = str | int | float | bool
Groups = dict[str, dict[str, Scalar]]
GroupTimes = dict[str, float]

MAX_GROUPS = 10
MAX_GROUP_TRAITS = 20


def _safe_traits(traits: dict) -> dict[str, Scalar]:
    """The group traits worth keeping: scalars, no contact details, names and strings cut to size."""
    kept: dict[str, Scalar] = {}
    for name, value in traits.items():
        if not isinstance(name, str) or is_pii_trait(name):
            continue
        if not isinstance(value, (str, int, float, bool)) or looks_like_contact(value):
            continue
        kept[clipped_text(name, MAX_TRAIT_NAME_BYTES)] = (
            clipped_text(value, MAX_TEXT_BYTES) if isinstance(value, str) else value
        )
        if len(kept) >= MAX_GROUP_TRAITS:
            break
    return kept


def _combine(newer: dict[str, Scalar], older: dict[str, Scalar]) -> dict[str, Scalar]:
    """``newer``'s traits, then ``older``'s others (by name) while the cap allows."""
    combined = dict(newer)
    for name in sorted(older):
        if len(combined) >= MAX_GROUP_TRAITS:
            break
        combined.setdefault(name, older[name])
    return combined


def _capped(groups: Groups, times: GroupTimes, keep: str | None = None) -> tuple[Groups, GroupTimes]:
    """At most ``MAX_GROUPS``: the groups whose latest call is oldest are forgotten first."""
    while len(groups) > MAX_GROUPS:
        stalest = min((g for g in groups if g != keep), key=lambda g: (times.get(g, 0.0), g))
        del groups[stalest]
        times.pop(stalest, None)
    return groups, times


def apply_group_call(
    groups: Groups, times: GroupTimes, group_id: str, traits: dict, at: float
) -> tuple[Groups, GroupTimes]:
    """New ``(groups, group_times)`` with the call of ``group_id`` at event time ``at`` applied."""
    group_id = clipped_id(group_id)
    incoming = _safe_traits(traits)
    current = groups.get(group_id)
    latest = times.get(group_id)
    updated_groups = dict(groups)
    updated_times = dict(times)
    if current is None or latest is None or at >= latest:
        updated_groups[group_id] = _combine(incoming, current or {})
        updated_times[group_id] = at
    else:
        updated_groups[group_id] = _combine(current, incoming)
    return _capped(updated_groups, updated_times, keep=group_id)


def merge_groups(
    a_groups: Groups, a_times: GroupTimes, b_groups: Groups, b_times: GroupTimes
) -> tuple[Groups, GroupTimes]:
    """The groups of two profiles of one customer: per group, the traits of the later call win."""
    groups: Groups = dict(a_groups)
    times: GroupTimes = dict(a_times)
    for group_id, traits in b_groups.items():
        b_at = b_times.get(group_id, 0.0)
        a_at = times.get(group_id)
        if a_at is None:
            groups[group_id] = dict(traits)
            times[group_id] = b_at
        elif b_at > a_at:
            groups[group_id] = _combine(traits, groups[group_id])
            times[group_id] = b_at
        else:
            groups[group_id] = _combine(groups[group_id], traits)
    return _capped(groups, times)
