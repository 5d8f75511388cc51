"""Quiet hours in the customer's time zone: when a message may go out, and when a deferred one should.

The zone is the ``timezone`` trait (an IANA name) or ``Guardrails.default_timezone``; an unknown name
falls back to the default. ``quiet_until(at, zone, quiet)`` is None outside quiet hours, else the first
minute after them (as epoch seconds): the guard chain defers the trigger to it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.triggers.guardrails import Guardrails, QuietHours


@lru_cache(maxsize=512)
def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def customer_zone(timezone: str | None, guardrails: Guardrails) -> ZoneInfo:
    """The customer's zone: the trait if it names a known zone, else the default."""
    zone = _zone(timezone) if timezone else None
    return zone if zone is not None else guardrails.default_zone


def quiet_until(at: float, zone: ZoneInfo, quiet: QuietHours | None) -> float | None:
    """None if ``at`` is outside ``quiet`` in ``zone``, else when the quiet hours end (epoch seconds)."""
    if quiet is None:
        return None
    local = datetime.fromtimestamp(at, tz=zone)
    minute = local.hour * 60 + local.minute
    if not quiet.contains(minute):
        return None
    end_day = local.date() if minute < quiet.end else local.date() + timedelta(days=1)
    end = datetime(end_day.year, end_day.month, end_day.day, quiet.end // 60, quiet.end % 60, tzinfo=zone)
    # A DST gap may put the wall-clock end before ``at``: never answer a time that is not later.
    return max(end.timestamp(), at + 60.0)
