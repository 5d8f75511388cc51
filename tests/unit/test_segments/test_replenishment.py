"""Replenishment: own median interval after two purchases, catalog cycle after one, nothing otherwise."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.replenishment import (
    ConsumableCatalog,
    catalog_from_mapping,
    due_replenishments,
    predict_replenishment,
    purchase_intervals,
    soonest_replenishment,
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


# Histories over the catalog's product, category and unknown products: a purchase at most 60 days after T0,
# on whole hours or a minute apart (split orders, ties in expected time between products).
_times = st.lists(
    st.integers(0, 60 * 24).map(lambda h: T0 + h * 3600.0) | st.integers(0, 5).map(lambda m: T0 + m * 60.0)
)
_histories = st.dictionaries(
    st.sampled_from(["food-12kg", "litter-10l", "tent", "litter-5l"]), _times | _times.map(tuple), max_size=4
)
_TIED_CATALOG = ConsumableCatalog(
    cycle_days_by_product={"food-12kg": 14.0},
    cycle_days_by_category={"cat-litter": 14.0},
    category_by_product={"food-12kg": "dog-food", "litter-10l": "cat-litter", "litter-5l": "cat-litter"},
)


@given(_histories, st.sampled_from([CATALOG, _TIED_CATALOG]))
def test_soonest_is_the_first_of_all_predictions(purchases: dict, catalog: ConsumableCatalog) -> None:
    predictions = predict_replenishment(purchases, catalog)
    expected = min(predictions.values(), key=lambda p: (p.expected_at, p.product_id)) if predictions else None
    assert soonest_replenishment(purchases, catalog) == expected


def test_soonest_of_two_due_together_is_the_smaller_product_id() -> None:
    purchases = {"litter-10l": (T0,), "food-12kg": (T0,)}  # both due at T0 + 14 days
    soonest = soonest_replenishment(purchases, _TIED_CATALOG)
    assert soonest is not None and soonest.product_id == "food-12kg" and soonest.expected_at == T0 + 14 * DAY


def test_soonest_without_a_catalog_or_purchases() -> None:
    assert soonest_replenishment({"food-12kg": (T0,)}, None) is None
    assert soonest_replenishment({"tent": (T0,), "food-12kg": ()}, CATALOG) is None


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
