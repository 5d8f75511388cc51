"""Segments and propensity scores of one profile, kept current: a pure refresh after every change.

``refresh_audiences(profile, now=..., policy=...)`` scores the profile, evaluates every segment on the
scored profile, and returns the new profile (``segments``, ``scores``, ``audience_version``,
``audience_due_at``) with the changes to publish on ``segments.changes``: entries, exits and score
threshold crossings.

``audience_due_at`` is when time alone would next change a membership; the profile stage keeps it in the
worker's due table, so a windowed rule ("no order for 60 days") flips with no new event and no scan of
all profiles. Computing it is the costly part (it tries each instant a time-driven rule flips), so it
is recomputed only when the memberships changed, the definitions changed, or the previous instant has
passed; otherwise the stored one stands. A stored instant can only be early, never late, for rules
whose windows an event extends — an early wake-up re-evaluates and finds nothing to do.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import msgspec

from core.profile.policy import DEFAULT_POLICY, ProfilePolicy
from core.rules.definitions import SegmentDefinitions
from core.scoring import PropensityModels, score_crossings, score_profile
from core.segment_eval import evaluate_segments, next_time_change, segment_changes
from core.segment_fields import profile_view
from schemas.profile import Profile
from schemas.segments import AudienceChange, ScoreCrossed

SCORE_DECIMALS = 4  # scores are stored rounded: noise below this must not rewrite the profile


@dataclass(frozen=True)
class AudiencePolicy:
    """The segment definitions, the propensity models and the score thresholds that emit events."""

    definitions: SegmentDefinitions
    models: PropensityModels | None = None
    score_thresholds: Mapping[str, Sequence[float]] = field(default_factory=dict)
    version: str = ""

    @cached_property
    def view_fields(self) -> frozenset[str] | None:
        """The view keys the rules read but ``scores``: ``refresh_audiences`` puts the fresh scores there."""
        fields = self.definitions.view_fields
        return None if fields is None else fields - {"scores"}

    @staticmethod
    def build(
        definitions: SegmentDefinitions,
        models: PropensityModels | None,
        score_thresholds: Mapping[str, Sequence[float]],
        fingerprint: bytes,
    ) -> AudiencePolicy:
        """``fingerprint``: the bytes of the definition and model files, so editing either re-evaluates."""
        version = hashlib.sha256(fingerprint).hexdigest()[:16]
        return AudiencePolicy(
            definitions=definitions, models=models, score_thresholds=score_thresholds, version=version
        )


@dataclass(frozen=True)
class AudienceUpdate:
    profile: Profile
    changes: tuple[AudienceChange, ...] = ()


def _scores(profile: Profile, now: float, policy: AudiencePolicy, profile_policy: ProfilePolicy) -> dict[str, float]:
    if policy.models is None:
        return dict(profile.scores)
    # Scored from the record itself (``compute_features`` reads a record or its view alike).
    raw = score_profile(policy.models, profile, now=now, policy=profile_policy)
    return {name: round(value, SCORE_DECIMALS) for name, value in raw.items()}


def refresh_audiences(
    profile: Profile, *, now: float, policy: AudiencePolicy, profile_policy: ProfilePolicy = DEFAULT_POLICY
) -> AudienceUpdate:
    """``profile`` with current scores and segments at ``now``, and the changes to publish.

    ``profile_policy``: what the computed traits decide by (``StagePolicy.profile``: the affinity half-life
    of the scores and of the rule view, the RFM and lifecycle thresholds).
    """
    scores = _scores(profile, now, policy, profile_policy)
    # Only the fields the rules read: rendering the whole profile for every event is most of the cost.
    view = profile_view(profile, now=now, fields=policy.view_fields, policy=profile_policy)
    view["scores"] = scores
    segments = evaluate_segments(policy.definitions, view, now=now)
    before_segments = frozenset(profile.segments)
    version_changed = profile.audience_version != policy.version
    due = profile.audience_due_at
    if segments != before_segments or version_changed or due is None or due <= now:
        due = next_time_change(policy.definitions, view, now=now, current=segments)
    changes: list[AudienceChange] = []
    if segments != before_segments:
        changes.extend(segment_changes(profile.customer_id, before_segments, segments, policy.definitions, at=now))
    changes.extend(
        ScoreCrossed(
            customer_id=profile.customer_id,
            score=crossing.score,
            threshold=crossing.threshold,
            direction=crossing.direction,
            value=crossing.after,
            at=now,
        )
        for crossing in score_crossings(profile.scores, scores, policy.score_thresholds)
    )
    updated = msgspec.structs.replace(
        profile,
        segments=tuple(sorted(segments)),
        scores=scores,
        audience_version=policy.version,
        audience_due_at=due,
    )
    if updated == profile:
        return AudienceUpdate(profile=profile)
    return AudienceUpdate(profile=updated, changes=tuple(changes))
