"""Small helpers that change the profile's bounded, immutable collections: each returns a new container.

Also the last-write-wins order that traits, consent and merges share (``is_newer``) and the clipping of
ids and text taken from events to a number of UTF-8 bytes (``clipped_id``, ``clipped_text``): a count cap
alone bounds a collection's length, not its size, since one valid event may carry strings of tens of KiB.
"""

from __future__ import annotations

import hashlib
from typing import Any

from core.profile.policy import MAX_ID_BYTES

DIGEST_CHARS = 16  # hex characters of the SHA-256 that end a clipped id


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


def clipped_text(value: str, max_bytes: int) -> str:
    """``value`` cut to at most ``max_bytes`` UTF-8 bytes (at a character boundary)."""
    if len(value) * 4 <= max_bytes:  # fast path: no character takes more than 4 bytes
        return value
    raw = value.encode("utf-8", "surrogatepass")
    if len(raw) <= max_bytes:
        return value
    return raw[:max_bytes].decode("utf-8", "ignore")


def clipped_id(value: Any, max_bytes: int = MAX_ID_BYTES) -> str:
    """``value`` as a string of at most ``max_bytes`` UTF-8 bytes: itself when it fits, else a prefix, ``~``
    and the first ``DIGEST_CHARS`` hex characters of the SHA-256 of the whole id (so that two long ids with
    one prefix stay two ids, and the same id always clips the same way)."""
    text = value if type(value) is str else str(value)
    if len(text) * 4 <= max_bytes or (text.isascii() and len(text) <= max_bytes):
        return text
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) <= max_bytes:
        return text
    digest = hashlib.sha256(raw).hexdigest()[:DIGEST_CHARS]
    return f"{raw[: max_bytes - DIGEST_CHARS - 1].decode('utf-8', 'ignore')}~{digest}"


def product_id_of(properties: dict[str, Any]) -> str:
    return clipped_id(properties.get("product_id") or properties.get("sku") or "")
