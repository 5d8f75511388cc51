"""Holdouts: a deterministic share of customers gets no message, so the uplift of each kind can be measured.

A customer is in the control arm of a kind when the hash of ``customer_id|kind`` falls below the kind's
share, or in the global control group when the hash of ``customer_id`` alone falls below
``Guardrails.control_group_share`` (no message of any kind). The hash depends on nothing else: an
assignment never changes while the shares stay the same, and raising a share only adds customers.
"""

from __future__ import annotations

import hashlib

from core.triggers.guardrails import Guardrails

_SCALE = float(1 << 64)


def unit_hash(text: str) -> float:
    """A uniform number in [0, 1) from ``text`` (the first 8 bytes of its BLAKE2b digest)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") / _SCALE


def in_holdout(customer_id: str, kind: str, guardrails: Guardrails, share: float | None = None) -> bool:
    """Whether ``customer_id`` is in the control arm of ``kind`` (``share``: the definition's own)."""
    kind_share = guardrails.holdout_share(kind) if share is None else share
    if kind_share > 0 and unit_hash(f"{customer_id}|{kind}") < kind_share:
        return True
    control = guardrails.control_group_share
    return control > 0 and unit_hash(customer_id) < control
