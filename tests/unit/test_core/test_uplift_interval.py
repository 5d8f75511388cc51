"""The uplift interval against published values (Newcombe 1998, Table II; Wilson 1927 via Newcombe 1998)."""

from __future__ import annotations

import random

import pytest

from core.uplift import kind_report, newcombe_interval, wald_interval, wilson_interval
from schemas.conversions import ChannelStats, KindStats


@pytest.mark.parametrize(
    ("counts", "low", "high"),
    [
        ((56, 70, 48, 80), 0.0524, 0.3339),
        ((9, 10, 3, 10), 0.1705, 0.8090),
        ((6, 7, 2, 7), 0.0582, 0.8062),
        ((5, 56, 0, 29), -0.0381, 0.1926),
    ],
)
def test_newcombe_hybrid_score_interval_matches_the_published_examples(counts, low, high):
    interval = newcombe_interval(*counts)
    assert interval.low == pytest.approx(low, abs=5e-5) and interval.high == pytest.approx(high, abs=5e-5)


@pytest.mark.parametrize(
    ("counts", "low", "high"),
    [((56, 70, 48, 80), 0.0575, 0.3425), ((9, 10, 3, 10), 0.2605, 0.9395)],
)
def test_wald_interval_matches_the_published_examples(counts, low, high):
    interval = wald_interval(*counts)
    assert interval.low == pytest.approx(low, abs=5e-5) and interval.high == pytest.approx(high, abs=5e-5)


def test_wilson_interval_of_a_single_proportion():
    interval = wilson_interval(81, 263)
    assert interval.low == pytest.approx(0.2553, abs=5e-5) and interval.high == pytest.approx(0.3662, abs=5e-5)
    assert wilson_interval(0, 0).low == 0.0 and wilson_interval(0, 0).high == 1.0


def test_the_interval_covers_the_true_difference_about_95_percent_of_the_time():
    rng = random.Random(7)
    p1, p2, n = 0.3, 0.2, 400
    covered = 0
    for _ in range(400):
        x1 = sum(rng.random() < p1 for _ in range(n))
        x2 = sum(rng.random() < p2 for _ in range(n))
        covered += newcombe_interval(x1, n, x2, n).contains(p1 - p2)
    assert 0.91 <= covered / 400 <= 0.99


def test_kind_report_has_rates_uplift_revenue_and_channel_rates():
    stats = KindStats(
        sent=70,
        holdout=80,
        converted_treatment=56,
        converted_holdout=48,
        revenue_treatment=1200,
        revenue_holdout=900,
        channels={"email": ChannelStats(sent=70, delivered=63, opened=35, clicked=7)},
    )
    report = kind_report(stats)
    assert report["conversion_rate"] == {"treatment": 0.8, "holdout": 0.6}
    assert report["uplift"]["difference"] == pytest.approx(0.2)
    assert (report["uplift"]["low"], report["uplift"]["high"]) == pytest.approx((0.0524, 0.3339), abs=5e-5)
    assert report["revenue"] == {"treatment": 1200, "holdout": 900}
    assert report["channels"]["email"] == {
        "sent": 70,
        "delivered": 63,
        "opened": 35,
        "clicked": 7,
        "delivery_rate": 0.9,
        "open_rate": 0.5,
        "click_rate": 0.1,
    }


def test_no_uplift_while_an_arm_is_empty():
    report = kind_report(KindStats(sent=10, converted_treatment=2))
    assert report["uplift"] is None and report["conversion_rate"] == {"treatment": 0.2, "holdout": None}
