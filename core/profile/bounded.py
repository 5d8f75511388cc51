"""Small helpers that change the profile's bounded, immutable collections: each returns a new container.

Also the last-write-wins order that traits, consent and merges share (``is_newer``) and the clipping of
ids taken from events (``clipped_id``).
"""

from __future__ import annotations

from typing import Any

from core.profile.policy import MAX_ID_CHARS


def capped_append(items: tuple, item: object, cap: int) -> tuple:
    """``items`` with ``item`` appended, the oldest dropped past ``cap``."""
    return items + (item,) if len(items) < cap else items[len(items) - cap + 1 :] + (item,)


def remember(items: tuple[str, ...], item: str, cap: int) -> tuple[str, ...]:
    """``items`` with ``item`` added if new (first-seen order), the oldest dropped past ``cap``."""
    if item in items:
        return items
    return capped_append(items, item, cap)


def bump(counts: dict[str, int], key: str, by: int, cap: int) -> dict[str, int]:
    """A copy of ``counts`` with ``key`` increased.

    Past ``cap`` + a quarter, the dict is trimmed back to ``cap`` entries, dropping the smallest counts
    other than ``key`` (ties: larger key first): one sort per ``cap / 4`` new keys instead of a scan
    per event, so a full dict stays cheap to update. A dict therefore holds at most ``cap * 5 / 4`` keys.
    """
    updated = dict(counts)
    updated[key] = updated.get(key, 0) + by
    if len(updated) > cap + cap // 4:
        ranked = sorted((k for k in updated if k != key), key=lambda k: (-updated[k], k))
        for dropped in ranked[cap - 1 :]:
            del updated[dropped]
    return updated


def decrement(counts: dict[str, int], key: str) -> dict[str, int]:
    """A copy of ``counts`` with ``key`` decreased by one (never below zero; zero removes the key)."""
    if key not in counts:
        return counts
    updated = dict(counts)
    if updated[key] <= 1:
        del updated[key]
    else:
        updated[key] -= 1
    return updated


def is_newer(at: float, value: object, old_at: float | None, old_value: object) -> bool:
    """Last-write-wins order: later time wins; on a tie the larger ``str(value)`` (so merges commute)."""
    if old_at is None:
        return True
    return (at, str(value)) > (old_at, str(old_value))


def insert_sorted(times: tuple[float, ...], at: float, cap: int) -> tuple[float, ...]:
    """``times`` (sorted) with ``at`` added, keeping the latest ``cap``."""
    if not times or at >= times[-1]:
        return (*times, at)[-cap:]
    return tuple(sorted((*times, at)))[-cap:]


def without_one(times: tuple[float, ...], at: float) -> tuple[float, ...]:
    """``times`` with one occurrence of ``at`` removed (unchanged if absent)."""
    if at not in times:
        return times
    index = times.index(at)
    return times[:index] + times[index + 1 :]


def clipped_id(value: Any) -> str:
    if type(value) is str and len(value) <= MAX_ID_CHARS:
        return value
    return str(value)[:MAX_ID_CHARS]


def product_id_of(properties: dict[str, Any]) -> str:
    return clipped_id(properties.get("product_id") or properties.get("sku") or "")
