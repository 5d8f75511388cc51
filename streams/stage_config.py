"""The profile stage's policy, built once per process from ``Settings``.

Reads and validates the segment definitions and the propensity model named in the settings: a broken
definition stops the worker at start with the file, line and problem, rather than evaluating nothing.
The runtime and the web views share the one instance the worker builds. The limits of the event
contract (``ContractLimits``) come from the settings here too, for the worker and the producer tool alike.
"""

from __future__ import annotations

from core.audiences import AudiencePolicy
from core.profile.policy import DEFAULT_POLICY, ProfilePolicy
from core.profile_stage import StagePolicy
from core.rules.definitions import load_definitions
from core.scoring import load_models
from core.triggers import CartAbandonmentPolicy
from schemas.validation import ContractLimits
from streams.settings import Settings


def load_audience_policy(config: Settings, profile: ProfilePolicy = DEFAULT_POLICY) -> AudiencePolicy:
    """Segments and scores; rules decay affinity with ``profile``'s half-life, the one the profile keeps."""
    half_life = profile.affinity_half_life_s
    definitions = load_definitions(config.segments_file, affinity_half_life_s=half_life)
    models = load_models(config.model_file)
    # A changed half-life changes memberships as a changed file does: profiles are re-checked after a restart.
    fingerprint = (
        config.segments_file.read_bytes() + b"\0" + config.model_file.read_bytes() + b"\0" + repr(half_life).encode()
    )
    return AudiencePolicy.build(definitions, models, config.score_threshold_map, fingerprint)


def stage_policy(settings: Settings) -> StagePolicy:
    profile = ProfilePolicy(pii_hash_key=settings.pii_hash_key, max_applied_ids=settings.dedup_max_ids)
    return StagePolicy(
        cart_abandonment=CartAbandonmentPolicy(
            delay_s=settings.cart_abandonment_delay_s, max_age_s=settings.cart_abandonment_max_age_s
        ),
        profile=profile,
        max_users_per_anonymous_id=settings.max_users_per_anonymous_id,
        audiences=load_audience_policy(settings, profile),
        audience_min_interval_s=settings.audience_min_interval_s,
        audience_backlog_fraction=settings.audience_backlog_fraction,
        audience_max_interval_s=settings.audience_max_interval_s,
    )


def contract_limits(settings: Settings) -> ContractLimits:
    return ContractLimits(
        max_event_bytes=settings.max_event_bytes,
        max_future_skew_s=settings.max_future_skew_s,
        max_past_skew_s=settings.max_past_skew_s,
    )
