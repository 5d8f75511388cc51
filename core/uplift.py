"""Uplift of a trigger kind: the difference of two conversion rates with a 95 % confidence interval.

Treatment (sent) converts ``x1`` of ``n1``, holdout (not sent) ``x2`` of ``n2``; the uplift is
``x1/n1 - x2/n2``. Its interval is Newcombe's hybrid score interval (Newcombe 1998, "Interval estimation
for the difference between independent proportions", method 10): it combines the two Wilson score
intervals, stays inside [-1, 1] and keeps its coverage for small counts and rates near 0 or 1, where the
Wald interval ``d ± z·sqrt(p1(1-p1)/n1 + p2(1-p2)/n2)`` (also given, for comparison) is too narrow.

``kind_report`` turns one kind's counters (``schemas.conversions.KindStats``) into the figures that
``GET /triggers/stats`` answers and ``streamcdp report triggers`` prints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from schemas.conversions import KindStats

Z_95 = 1.959963984540054  # the 97.5 % quantile of the standard normal


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


def rate(successes: int, trials: int) -> float | None:
    """``successes / trials``, None without trials."""
    return successes / trials if trials > 0 else None


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> Interval:
    """The Wilson score interval of a proportion (the whole [0, 1] without trials)."""
    if trials <= 0:
        return Interval(0.0, 1.0)
    p = successes / trials
    z2 = z * z
    centre = p + z2 / (2 * trials)
    spread = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials))
    denominator = 1 + z2 / trials
    return Interval(max(0.0, (centre - spread) / denominator), min(1.0, (centre + spread) / denominator))


def newcombe_interval(x1: int, n1: int, x2: int, n2: int, z: float = Z_95) -> Interval:
    """Newcombe's hybrid score interval of ``x1/n1 - x2/n2`` (both ``n`` must be positive)."""
    p1, p2 = x1 / n1, x2 / n2
    first, second = wilson_interval(x1, n1, z), wilson_interval(x2, n2, z)
    difference = p1 - p2
    low = difference - math.sqrt((p1 - first.low) ** 2 + (second.high - p2) ** 2)
    high = difference + math.sqrt((first.high - p1) ** 2 + (p2 - second.low) ** 2)
    return Interval(low, high)


def wald_interval(x1: int, n1: int, x2: int, n2: int, z: float = Z_95) -> Interval:
    """The Wald interval of ``x1/n1 - x2/n2`` (both ``n`` must be positive)."""
    p1, p2 = x1 / n1, x2 / n2
    spread = z * math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
    return Interval(p1 - p2 - spread, p1 - p2 + spread)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def kind_report(stats: KindStats) -> dict:
    """One kind's figures: both arms' counts and conversion rates, the uplift with its 95 % interval (None
    while an arm is empty), attributed revenue per arm, and per channel the delivery, open and click rates
    (over the triggers sent on that channel)."""
    treatment_rate = rate(stats.converted_treatment, stats.sent)
    holdout_rate = rate(stats.converted_holdout, stats.holdout)
    uplift: dict | None = None
    if treatment_rate is not None and holdout_rate is not None:
        interval = newcombe_interval(stats.converted_treatment, stats.sent, stats.converted_holdout, stats.holdout)
        uplift = {
            "difference": _rounded(treatment_rate - holdout_rate),
            "low": _rounded(interval.low),
            "high": _rounded(interval.high),
            "method": "newcombe-hybrid-score-95",
        }
    channels = {
        name: {
            "sent": channel.sent,
            "delivered": channel.delivered,
            "opened": channel.opened,
            "clicked": channel.clicked,
            "delivery_rate": _rounded(rate(channel.delivered, channel.sent)),
            "open_rate": _rounded(rate(channel.opened, channel.sent)),
            "click_rate": _rounded(rate(channel.clicked, channel.sent)),
        }
        for name, channel in sorted(stats.channels.items())
    }
    return {
        "sent": stats.sent,
        "holdout": stats.holdout,
        "converted": {"treatment": stats.converted_treatment, "holdout": stats.converted_holdout},
        "conversion_rate": {"treatment": _rounded(treatment_rate), "holdout": _rounded(holdout_rate)},
        "uplift": uplift,
        "revenue": {"treatment": stats.revenue_treatment, "holdout": stats.revenue_holdout},
        "channels": channels,
    }
