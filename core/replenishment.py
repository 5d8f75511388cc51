"""Replenishment prediction: when will a customer next buy a consumable they have bought before?

Pure: a function of the profile's ``product_purchases`` (product id → purchase timestamps) and a
``ConsumableCatalog`` (which products are consumables and their default cycle). With two or more
purchases the customer's own rhythm wins (median inter-purchase interval); after one purchase the
catalog's default cycle for the product (else for its category) is used.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import msgspec

from core.shop_catalog import CATALOG
from schemas.errors import ConfigError

DAY_S = 86400.0
# Purchases of one product closer together than this are one shopping trip (a split order), not a cycle.
MIN_INTERVAL_S = 3600.0


@dataclass(frozen=True)
class ConsumableCatalog:
    """Default replenishment cycles: per product, else per category (days); and each product's category."""

    cycle_days_by_product: Mapping[str, float] = field(default_factory=dict)
    cycle_days_by_category: Mapping[str, float] = field(default_factory=dict)
    category_by_product: Mapping[str, str] = field(default_factory=dict)

    def category_of(self, product_id: str) -> str:
        return self.category_by_product.get(product_id, "")

    def default_cycle_days(self, product_id: str) -> float | None:
        """The catalog cycle for ``product_id``, or None if it is not a known consumable."""
        if product_id in self.cycle_days_by_product:
            return self.cycle_days_by_product[product_id]
        return self.cycle_days_by_category.get(self.category_of(product_id))


class Replenishment(msgspec.Struct, frozen=True):
    """The expected next purchase of one consumable by one customer (a struct: the trigger stage builds one on
    every order, a frozen dataclass costs several times more to build)."""

    product_id: str
    category: str
    last_purchase_at: float
    interval_days: float
    expected_at: float
    basis: str  # "own" (median of the customer's intervals) or "catalog" (default cycle)
    purchases: int


def purchase_intervals(timestamps: Iterable[float]) -> list[float]:
    """Gaps (seconds) between successive purchases, ignoring repeats within ``MIN_INTERVAL_S``."""
    ordered = sorted(timestamps)
    gaps: list[float] = []
    previous: float | None = None
    for at in ordered:
        if previous is not None and at - previous >= MIN_INTERVAL_S:
            gaps.append(at - previous)
            previous = at
        elif previous is None:
            previous = at
    return gaps


def next_purchase(timestamps: Sequence[float], default_days: float) -> tuple[float, float, int]:
    """The prediction for one consumable bought at ``timestamps`` (seconds, not empty) whose catalog cycle is
    ``default_days``: ``(last purchase, expected interval in seconds, purchases counted)``. Two or more purchases
    counted (``MIN_INTERVAL_S`` apart): the median of their intervals; one: the catalog cycle. The one
    definition both ``predict_product`` and ``soonest_replenishment`` predict with."""
    gaps = purchase_intervals(timestamps)
    interval_s = statistics.median(gaps) if gaps else default_days * DAY_S
    return max(timestamps), interval_s, len(gaps) + 1


def predict_product(product_id: str, timestamps: Sequence[float], catalog: ConsumableCatalog) -> Replenishment | None:
    """The next expected purchase of one consumable, or None (not a consumable, or never bought)."""
    default = catalog.default_cycle_days(product_id)
    if default is None or not timestamps:
        return None
    return _replenishment(product_id, catalog, *next_purchase(timestamps, default))


def _replenishment(
    product_id: str, catalog: ConsumableCatalog, last: float, interval_s: float, purchases: int
) -> Replenishment:
    return Replenishment(
        product_id=product_id,
        category=catalog.category_of(product_id),
        last_purchase_at=last,
        interval_days=interval_s / DAY_S,
        expected_at=last + interval_s,
        basis="own" if purchases > 1 else "catalog",
        purchases=purchases,
    )


def _next_purchases(
    product_purchases: Mapping[str, Sequence[float]], catalog: ConsumableCatalog
) -> Iterator[tuple[str, float, float, int]]:
    """``(product id, last purchase, expected interval in seconds, purchases counted)`` of every consumable
    bought (``next_purchase``): the one walk over a profile's purchases both predictions below make."""
    for product_id, timestamps in product_purchases.items():
        if not isinstance(timestamps, (list, tuple)) or not timestamps:
            continue
        default = catalog.default_cycle_days(product_id)
        if default is not None:
            yield (product_id, *next_purchase([float(t) for t in timestamps], default))


def predict_replenishment(
    product_purchases: Mapping[str, Sequence[float]], catalog: ConsumableCatalog | None
) -> dict[str, Replenishment]:
    """For every consumable the customer has bought: when they are expected to buy it again (nothing
    without a catalog of consumables)."""
    if catalog is None:
        return {}
    return {
        product_id: _replenishment(product_id, catalog, last, interval_s, purchases)
        for product_id, last, interval_s, purchases in _next_purchases(product_purchases, catalog)
    }


def soonest_replenishment(
    product_purchases: Mapping[str, Sequence[float]], catalog: ConsumableCatalog | None
) -> Replenishment | None:
    """The consumable expected soonest (of two at the same time, the smaller product id): the first of
    ``predict_replenishment``'s predictions by ``(expected_at, product_id)``, or None. Builds the record of
    that one only (the trigger stage asks this on every order)."""
    if catalog is None:
        return None
    soonest = min(
        _next_purchases(product_purchases, catalog), key=lambda next_: (next_[1] + next_[2], next_[0]), default=None
    )
    return None if soonest is None else _replenishment(soonest[0], catalog, *soonest[1:])


def due_replenishments(
    product_purchases: Mapping[str, Sequence[float]], catalog: ConsumableCatalog, *, now: float, within_days: float
) -> list[Replenishment]:
    """Consumables expected within ``within_days`` from ``now`` (or overdue), soonest first."""
    horizon = now + within_days * DAY_S
    due = [p for p in predict_replenishment(product_purchases, catalog).values() if p.expected_at <= horizon]
    return sorted(due, key=lambda p: (p.expected_at, p.product_id))


def catalog_from_mapping(data: Mapping, *, source: str = "consumables") -> ConsumableCatalog:
    """``{"products": {id: days}, "categories": {name: days}, "product_categories": {id: name}}`` → catalog.

    Also accepts a flat ``{product_id_or_category: days}`` mapping (each key may name a product or a category).
    """
    if not isinstance(data, Mapping):
        message = f"{source}: expected a mapping"
        raise ConfigError(message)
    if not {"products", "categories", "product_categories"} & set(data):
        data = {"products": data, "categories": data}
    products = _cycles(data.get("products") or {}, f"{source}.products")
    categories = _cycles(data.get("categories") or {}, f"{source}.categories")
    product_categories = data.get("product_categories") or {}
    if not isinstance(product_categories, Mapping):
        message = f"{source}.product_categories: expected a mapping of product id to category"
        raise ConfigError(message)
    return ConsumableCatalog(products, categories, {str(k): str(v) for k, v in product_categories.items()})


def _cycles(data: object, source: str) -> dict[str, float]:
    if not isinstance(data, Mapping):
        message = f"{source}: expected a mapping of id to cycle days"
        raise ConfigError(message)
    cycles: dict[str, float] = {}
    for key, value in data.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 3650:
            message = f"{source}.{key}: cycle must be a number of days in (0, 3650], got {value!r}"
            raise ConfigError(message)
        cycles[str(key)] = float(value)
    return cycles


def catalog_from_generator() -> ConsumableCatalog:
    """The consumables of the demo shops' catalog (``core.shop_catalog``), which the workload generator sells."""
    consumables = [product for product in CATALOG if product.cycle_days]
    return ConsumableCatalog(
        cycle_days_by_product={p.product_id: float(p.cycle_days) for p in consumables},
        category_by_product={p.product_id: p.category for p in CATALOG},
    )
