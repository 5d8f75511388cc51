"""What evaluating a rule reads: the ``Context`` and the readers of times, affinities and replenishment
predictions in a profile view, shared by the compiled closures and the tests' reference interpreter.

``DEFAULT_AFFINITY_HALF_LIFE_S`` is the one default of the affinity half-life; the definitions carry the
value in use (``core.rules.definitions.load_definitions``) and the compiler binds it into the closures.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from core.profile.policy import DEFAULT_POLICY
from core.replenishment import ConsumableCatalog, Replenishment, predict_replenishment
from core.rules.nodes import ReplenishmentDue

DEFAULT_AFFINITY_HALF_LIFE_S = DEFAULT_POLICY.affinity_half_life_s  # the profile policy's default


@dataclass(slots=True)
class Context:
    """What evaluation reads: the profile view, the time, and the consumables catalog.

    ``memo`` holds what is derived from the view alone (replenishment predictions), so contexts of the
    same view at other instants (``at``) derive it once; it never changes an answer.

    Read-only by convention, not ``frozen``: a context is built for every rule evaluated on every event,
    and a frozen dataclass's ``__init__`` (one ``object.__setattr__`` per field) tripled that cost.
    """

    view: Mapping[str, Any]
    now: float
    consumables: ConsumableCatalog | None = None
    memo: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def at(self, now: float) -> Context:
        """The same view (and memo) at another instant."""
        return Context(self.view, now, self.consumables, self.memo)


# Where each windowed function finds "the last time", per the profile's fields: a map key → time, → list of
# times, → record holding a time (``category_affinity``: [value, at]), or a list of [key, time] pairs
# (``recently_viewed``). The newest time found wins. ``viewed_category`` reads the category's affinity
# time: the last view, list view, add to cart or purchase in that category (the profile keeps no other).
TIME_KEYS = ("last_at", "last_viewed_at", "viewed_at", "at", "timestamp", "last")
TIME_SOURCES: Mapping[str, tuple[str, ...]] = {
    "event": ("event_last_at",),
    "category_view": ("category_affinity", "category_last_viewed_at"),
    "product_view": ("recently_viewed", "product_last_viewed_at"),
    "product_purchase": ("product_purchases",),
}


def _time_of(value: Any) -> float | None:
    if value.__class__ is float:  # the common cases first: a stored time, or nothing recorded
        return value if value > 1e8 else None
    if value is None:
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if value > 1e8 else None  # counts are not times
    if isinstance(value, (list, tuple)):
        newest = _newest_float(value)
        if newest is not None:
            return newest
        times = [t for t in (_time_of(item) for item in value) if t is not None]
        return max(times) if times else None
    if isinstance(value, dict):
        for key in TIME_KEYS:
            if key in value:
                return _time_of(value[key])
    return None


def _newest_float(values: list | tuple) -> float | None:
    """``max(values)`` if that is a float time (None otherwise), for lists of plain times (most of them).

    It then equals what ``_time_of`` finds item by item: every item compared with a float, so each is a
    number, and a larger int, a NaN first or a nested list would have made ``max`` return a non-float.
    """
    try:
        newest = max(values)
    except (TypeError, ValueError):  # not comparable, or empty
        return None
    return newest if newest.__class__ is float and newest > 1e8 else None


def time_in(container: Any, key: str) -> float | None:
    """The newest time of ``key`` in one container of a ``TIME_SOURCES`` entry."""
    if isinstance(container, dict):
        return _time_of(container.get(key))
    if isinstance(container, list):
        return _time_of([item[1:] for item in container if isinstance(item, (list, tuple)) and item and item[0] == key])
    return None


def last_time(view: Mapping[str, Any], source: str, key: str) -> float | None:
    """The newest time the profile records for ``key`` in ``source`` (see ``TIME_SOURCES``)."""
    best: float | None = None
    for name in TIME_SOURCES[source]:
        found = time_in(view.get(name), key)
        if found is not None and (best is None or found > best):
            best = found
    return best


def affinity_at(view: Mapping[str, Any], category: str, now: float) -> tuple[float, float] | None:
    """``(value, at)`` of the stored (undecayed) affinity for ``category``, or None."""
    table = view.get("category_affinity")
    entry = table.get(category) if isinstance(table, dict) else None
    if isinstance(entry, (list, tuple)) and len(entry) == 2:
        return float(entry[0]), float(entry[1])
    if isinstance(entry, dict) and "value" in entry and "at" in entry:
        return float(entry["value"]), float(entry["at"])
    return None


def decayed_affinity(view: Mapping[str, Any], category: str, now: float, half_life_s: float) -> float:
    """The category's affinity as of ``now`` (halving every ``half_life_s``), 0 if none."""
    stored = affinity_at(view, category, now)
    if stored is None:
        return 0.0
    value, at = stored
    return value if now <= at else value * math.pow(0.5, (now - at) / half_life_s)


def _predictions(ctx: Context) -> Mapping[str, Replenishment]:
    """``predict_replenishment`` of the view's purchases, once per view (see ``Context.memo``)."""
    predictions = ctx.memo.get("replenishment")
    if predictions is None:
        predictions = predict_replenishment(ctx.view["product_purchases"], ctx.consumables)
        ctx.memo["replenishment"] = predictions
    return predictions


def replenishment_times(node: ReplenishmentDue, ctx: Context) -> list[float]:
    """When each matching consumable becomes due: its expected next purchase less the window."""
    if ctx.consumables is None:
        return []
    purchases = ctx.view.get("product_purchases")
    if not isinstance(purchases, dict):
        return []
    predictions = _predictions(ctx)
    return [
        prediction.expected_at - node.within_s
        for prediction in predictions.values()
        if (node.product is None or prediction.product_id == node.product)
        and (node.category is None or prediction.category == node.category)
    ]


def is_hashable(value: Any) -> bool:
    """Whether ``value`` can be looked up in a dict or compared by hash (the view's lists and maps cannot)."""
    return not isinstance(value, (list, dict))
