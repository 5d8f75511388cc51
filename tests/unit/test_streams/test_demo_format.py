"""The demo's line per trigger: the payload's currency, and no amount for a trigger without items."""

from __future__ import annotations

from streams.demo import _format_trigger


def _trigger(**fields) -> dict:
    base = {
        "kind": "cart_abandonment",
        "channel": "email",
        "customer_id": "user-000097",
        "treatment": "treatment",
        "content": {"template": "cart-reminder"},
        "items": [],
        "value": 0,
        "currency": None,
        "recommendations": [],
    }
    return {**base, **fields}


def test_a_trigger_with_items_shows_their_value_in_the_payloads_currency() -> None:
    line = _format_trigger(
        _trigger(items=[{"product_id": "p1", "name": "Rain Jacket", "quantity": 1}], value=11900, currency="USD")
    )

    assert "USD   119.00" in line
    assert "[1× Rain Jacket]" in line
    assert "€" not in line


def test_a_trigger_without_items_shows_no_amount() -> None:
    line = _format_trigger(
        _trigger(kind="post_purchase_cross_sell", content={"template": "cross-sell"}, recommendations=["a", "b"])
    )

    assert "0.00" not in line
    assert "cross-sell" in line
    assert "2 recommendation(s)" in line


def test_a_held_out_trigger_says_so_instead_of_a_channel() -> None:
    line = _format_trigger(_trigger(treatment="holdout", items=[{"product_id": "p2", "quantity": 2}], value=998))

    assert "held out" in line
    assert "via email" not in line
    assert "[2× p2]" in line
    assert "9.98" in line
