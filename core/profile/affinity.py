"""Time-decayed category affinity: the decay itself and adding a weight to a profile's affinities.

The half-life always comes from ``ProfilePolicy.affinity_half_life_s`` (passed in).
"""

from __future__ import annotations

import math

from core.profile.policy import MAX_AFFINITIES, ProfilePolicy
from schemas.profile import Affinity


def decay(value: float, from_at: float, to_at: float, half_life_s: float) -> float:
    """``value`` decayed from time ``from_at`` to ``to_at`` (no growth when ``to_at`` is earlier)."""
    if to_at <= from_at:
        return value
    return value * math.pow(0.5, (to_at - from_at) / half_life_s)


def add_affinity(affinity: Affinity | None, weight: float, at: float, half_life_s: float) -> Affinity:
    """``affinity`` plus ``weight`` earned at ``at``; late weights are decayed to the stored time.

    The stored value is a sum of decayed weights, so adding in any order gives the same value.
    """
    if affinity is None:
        return Affinity(weight, at)
    if at >= affinity.at:
        return Affinity(decay(affinity.value, affinity.at, at, half_life_s) + weight, at)
    return Affinity(affinity.value + decay(weight, at, affinity.at, half_life_s), affinity.at)


def with_affinity(
    affinities: dict[str, Affinity], category: str, weight: float, at: float, policy: ProfilePolicy
) -> dict[str, Affinity]:
    updated = dict(affinities)
    updated[category] = add_affinity(updated.get(category), weight, at, policy.affinity_half_life_s)
    if len(updated) > MAX_AFFINITIES:
        newest = max(a.at for a in updated.values())
        weakest = min(
            (k for k in updated if k != category),
            key=lambda k: (decay(updated[k].value, updated[k].at, newest, policy.affinity_half_life_s), k),
        )
        del updated[weakest]
    return updated
