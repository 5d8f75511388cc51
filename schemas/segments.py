"""Records published on ``segments.changes`` (keyed by customer id, JSON).

Two kinds, told apart by ``kind``: a customer entered or left a segment (``SegmentChange``), or one of
the customer's propensity scores crossed a configured threshold (``ScoreCrossed``).
"""

from __future__ import annotations

from typing import Literal

import msgspec


class SegmentChange(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="segment"):
    """A customer entered or left a segment; ``reason`` names the rule (or the waterfall pick)."""

    customer_id: str
    segment: str
    change: Literal["entered", "exited"]
    at: float
    reason: str
    group: str = ""


class ScoreCrossed(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="score"):
    """A propensity score moved across a threshold: ``direction`` "up" (now ≥ threshold) or "down"."""

    customer_id: str
    score: str
    threshold: float
    direction: Literal["up", "down"]
    value: float | None
    at: float


AudienceChange = SegmentChange | ScoreCrossed
