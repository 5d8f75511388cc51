"""The profile stage's policy, built once per process from ``Settings``.

Reads and validates the segment definitions and the propensity model named in the settings: a broken
definition stops the worker at start with the file, line and problem, rather than evaluating nothing.
The runtime and the web views share the one instance the worker builds.
"""

from __future__ import annotations

from core.audiences import AudiencePolicy
from core.profile.policy import ProfilePolicy
from core.profile_stage import StagePolicy
from core.scoring import load_models
from core.segment_defs import load_definitions
from core.triggers import CartAbandonmentPolicy
from streams.settings import Settings


def load_audience_policy(config: Settings) -> AudiencePolicy:
    definitions = load_definitions(config.segments_file)
    models = load_models(config.model_file)
    fingerprint = config.segments_file.read_bytes() + b"\0" + config.model_file.read_bytes()
    return AudiencePolicy.build(definitions, models, config.score_threshold_map, fingerprint)


def stage_policy(settings: Settings) -> StagePolicy:
    return StagePolicy(
        cart_abandonment=CartAbandonmentPolicy(
            delay_s=settings.cart_abandonment_delay_s, max_age_s=settings.cart_abandonment_max_age_s
        ),
        profile=ProfilePolicy(pii_hash_key=settings.pii_hash_key, max_applied_ids=settings.dedup_max_ids),
        max_users_per_anonymous_id=settings.max_users_per_anonymous_id,
        audiences=load_audience_policy(settings),
        audience_min_interval_s=settings.audience_min_interval_s,
        audience_backlog_fraction=settings.audience_backlog_fraction,
        audience_max_interval_s=settings.audience_max_interval_s,
    )
