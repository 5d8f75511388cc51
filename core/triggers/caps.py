"""Frequency caps: how many messages a customer had in a rolling window, per customer, kind and channel.

A send (or a holdout decision: the control arm must meet the same caps as the treated one) is kept in
``Profile.trigger_sends`` as long as the longest cap window; ``cap_reached`` answers which cap a new message
would break, or None.
"""

from __future__ import annotations

from collections.abc import Iterable

from core.profile.bounded import capped_append
from core.triggers.guardrails import Cap, Guardrails
from core.triggers.pending import MAX_TRIGGER_SENDS
from schemas.triggers import TriggerSend


def _over(caps: Iterable[Cap], times: list[float], at: float) -> Cap | None:
    for cap in caps:
        if sum(1 for t in times if t > at - cap.window) >= cap.limit:
            return cap
    return None


def customer_cap_reached(
    sends: Iterable[TriggerSend], kind: str, at: float, guardrails: Guardrails, kind_caps: tuple[Cap, ...] | None
) -> Cap | None:
    """The customer-wide or per-kind cap one more message of ``kind`` at ``at`` would break, or None.

    ``kind_caps``: the definition's own caps (None: ``guardrails.kind_caps``).
    """
    sends = tuple(sends)
    if not sends:
        return None
    everything = [s.at for s in sends]
    over = _over(guardrails.customer_caps, everything, at)
    if over is not None:
        return over
    same_kind = [s.at for s in sends if s.kind == kind]
    return _over(guardrails.kind_caps if kind_caps is None else kind_caps, same_kind, at)


def channel_cap_reached(sends: Iterable[TriggerSend], channel: str, at: float, guardrails: Guardrails) -> bool:
    caps = guardrails.channel_caps.get(channel)
    if not caps:
        return False
    return _over(caps, [s.at for s in sends if s.channel == channel], at) is not None


def remember_send(sends: tuple[TriggerSend, ...], send: TriggerSend, guardrails: Guardrails) -> tuple[TriggerSend, ...]:
    """``sends`` with ``send`` added and what no cap window reaches any more forgotten."""
    horizon = send.at - guardrails.longest_window
    kept = tuple(s for s in sends if s.at > horizon)
    return capped_append(kept, send, MAX_TRIGGER_SENDS)
