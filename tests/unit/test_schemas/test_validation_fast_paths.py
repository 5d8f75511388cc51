"""The validator's shortcuts answer exactly as the general code they skip: Segment's timestamp form read
directly, and only the normalised keys present looked at (the first bad one still named, in the same order)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.catalog import ID_PROPERTIES, MONEY_PROPERTIES
from schemas.errors import InvalidEvent
from schemas.validation import ContractLimits, _normalise_values, parse_timestamp, to_minor_units


def general_timestamp(value: str) -> float:
    """``parse_timestamp``'s general path for a string (the reference)."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    return (parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)).timestamp()


def outcome(function, *args) -> tuple[str, Any]:
    try:
        return "ok", function(*args)
    except InvalidEvent as exc:
        return "invalid", (exc.reason, exc.detail)
    except (ValueError, OverflowError):
        return "invalid", None


segment_like = st.builds(
    lambda date, sep, time, frac, end: f"{date}{sep}{time}.{frac}{end}",
    st.sampled_from(["2025-10-09", "2024-02-29", "2023-02-29", "2025-13-01", "0001-01-01", "9999-12-31", "2025-1-009"]),
    st.sampled_from(["T", " ", "t", "X"]),
    st.sampled_from(["08:53:20", "23:59:59", "24:00:00", "12:60:00", "00:00:60", "8:53:20x"]),
    st.sampled_from(["000", "999", "12", "1234", "abc"]),
    st.sampled_from(["Z", "z", "+00:00", " ", "Z "]),
)


@settings(max_examples=400, deadline=None)
@given(st.one_of(segment_like, st.text(max_size=30)))
def test_a_timestamp_string_reads_as_the_general_path_reads_it(value: str):
    got = outcome(parse_timestamp, value)
    expected = outcome(general_timestamp, value)
    assert got[0] == expected[0]
    if got[0] == "ok":
        assert got[1] == expected[1]
    else:
        assert got[1][0] == "bad_timestamp"


def general_normalise(values: dict, limits: ContractLimits, where: str) -> dict:
    """``_normalise_values`` as it was: every known key looked up in turn (the reference)."""
    from schemas.validation import _to_id, _to_quantity

    normalised = dict(values)
    for key in ID_PROPERTIES:
        value = normalised.get(key)
        if value is not None:
            normalised[key] = _to_id(value, f"{where}.{key}")
    for key in MONEY_PROPERTIES:
        value = normalised.get(key)
        if value is not None:
            normalised[key] = to_minor_units(value, f"{where}.{key}", limits.max_amount)
    quantity = normalised.get("quantity")
    if quantity is not None:
        normalised["quantity"] = _to_quantity(quantity, f"{where}.quantity", limits)
    currency = normalised.get("currency")
    if currency is not None:
        if not isinstance(currency, str) or len(currency) != 3 or not currency.isalpha() or not currency.isascii():
            detail = f"{where}.currency={str(currency)[:10]!r}"
            raise InvalidEvent("bad_currency", detail)  # noqa: EM101
        normalised["currency"] = currency.upper()
    return normalised


values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 10**9),
    st.floats(-10, 2e7, allow_nan=False),
    st.sampled_from(["eur", "EUR", "€€€", "us", "p-1", "x" * 130, ""]),
    st.lists(st.integers(), max_size=2),
)
keys = st.sampled_from([*ID_PROPERTIES, *MONEY_PROPERTIES, "quantity", "currency", "name", "category", "url"])


@settings(max_examples=600, deadline=None)
@given(st.dictionaries(keys, values, max_size=8))
def test_normalised_values_and_the_first_error_named_are_the_general_ones(properties: dict):
    limits = ContractLimits()
    got = outcome(_normalise_values, properties, limits, "properties")
    expected = outcome(general_normalise, properties, limits, "properties")
    assert got == expected
    if got[0] == "ok":
        assert list(got[1]) == list(expected[1])  # same keys in the same order
