"""Replenishment: own median interval after two purchases, catalog cycle after one, nothing otherwise."""

from __future__ import annotations

import pytest

from core.replenishment import (
    ConsumableCatalog,
    catalog_from_mapping,
    due_replenishments,
    predict_replenishment,
    purchase_intervals,
)
from schemas.errors import ConfigError

DAY = 86400.0
T0 = 1_700_000_000.0
CATALOG = ConsumableCatalog(
    cycle_days_by_product={"food-12kg": 30.0},
    cycle_days_by_category={"cat-litter": 14.0},
    category_by_product={"food-12kg": "dog-food", "litter-10l": "cat-litter"},
)


def test_one_purchase_uses_the_catalog_cycle() -> None:
    prediction = predict_replenishment({"food-12kg": (T0,)}, CATALOG)["food-12kg"]
    assert prediction.expected_at == T0 + 30 * DAY
    assert prediction.basis == "catalog" and prediction.category == "dog-food"


def test_category_cycle_applies_to_products_of_the_category() -> None:
    assert predict_replenishment({"litter-10l": [T0]}, CATALOG)["litter-10l"].expected_at == T0 + 14 * DAY


def test_two_or_more_purchases_use_the_median_own_interval() -> None:
    times = (T0, T0 + 20 * DAY, T0 + 44 * DAY, T0 + 66 * DAY)  # gaps 20, 24, 22 → median 22
    prediction = predict_replenishment({"food-12kg": times}, CATALOG)["food-12kg"]
    assert prediction.basis == "own"
    assert prediction.interval_days == pytest.approx(22.0)
    assert prediction.expected_at == pytest.approx(T0 + 88 * DAY)


def test_unsorted_input_and_split_orders() -> None:
    assert purchase_intervals([T0 + 10 * DAY, T0, T0 + 60]) == [10 * DAY - 0.0]
    prediction = predict_replenishment({"food-12kg": [T0 + 10 * DAY, T0, T0 + 60]}, CATALOG)["food-12kg"]
    assert prediction.expected_at == pytest.approx(T0 + 20 * DAY)


def test_non_consumables_and_empty_histories_are_skipped() -> None:
    assert predict_replenishment({"tent": (T0,), "food-12kg": ()}, CATALOG) == {}


def test_due_lists_soonest_first() -> None:
    purchases = {"food-12kg": (T0,), "litter-10l": (T0,)}
    due = due_replenishments(purchases, CATALOG, now=T0 + 10 * DAY, within_days=5)
    assert [p.product_id for p in due] == ["litter-10l"]
    assert [p.product_id for p in due_replenishments(purchases, CATALOG, now=T0 + 40 * DAY, within_days=0)] == [
        "litter-10l",
        "food-12kg",
    ]


def test_inputs_are_not_mutated() -> None:
    purchases = {"food-12kg": [T0 + DAY, T0]}
    predict_replenishment(purchases, CATALOG)
    assert purchases == {"food-12kg": [T0 + DAY, T0]}


def test_catalog_from_mapping_forms_and_errors() -> None:
    flat = catalog_from_mapping({"food-12kg": 30, "cat-litter": 14})
    assert flat.default_cycle_days("food-12kg") == 30.0
    with pytest.raises(ConfigError, match="cycle must be"):
        catalog_from_mapping({"products": {"x": -1}})
    with pytest.raises(ConfigError, match="expected a mapping"):
        catalog_from_mapping(["x"])


def test_generator_catalog_when_present() -> None:
    from core.replenishment import catalog_from_generator

    catalog = catalog_from_generator()
    if catalog is None:
        pytest.skip("no generator catalog")
    assert catalog.default_cycle_days("pet-dogfood-adult-12kg") == 30.0
    assert catalog.category_of("pet-dogfood-adult-12kg") == "dog-food"
