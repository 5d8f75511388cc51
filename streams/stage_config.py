"""The profile stage's policy, built once per process from ``Settings``.

Reads and validates the segment definitions, the propensity model and the trigger definitions named in
the settings: a broken definition stops the worker at start with the file, line and problem, rather than
evaluating nothing. The runtime and the web views share the one instance the worker builds. The limits of
the event contract (``ContractLimits``) come from the settings here too, for the worker and the producer
tool alike.
"""

from __future__ import annotations

from core.audiences import AudiencePolicy
from core.profile.policy import DEFAULT_POLICY, ProfilePolicy
from core.profile_stage import StagePolicy
from core.rules.definitions import load_definitions
from core.scoring import load_models
from core.triggers.definitions import load_triggers
from core.triggers.engine import TriggerPolicy
from core.triggers.guardrails import Guardrails
from schemas.validation import ContractLimits
from streams.settings import Settings


def load_audience_policy(config: Settings, profile: ProfilePolicy = DEFAULT_POLICY) -> AudiencePolicy:
    """Segments and scores; rules decay affinity with ``profile``'s half-life, the one the profile keeps."""
    half_life = profile.affinity_half_life_s
    definitions = load_definitions(config.segments_file, affinity_half_life_s=half_life)
    models = load_models(config.model_file)
    # A changed half-life changes memberships as a changed file does: profiles are re-checked after a restart.
    # The trigger file is part of the fingerprint too: after it changes, a restart wakes every profile once,
    # and each re-evaluates its pending triggers against the new definitions (same ids, no duplicates).
    files = (config.segments_file, config.model_file, config.triggers_file)
    fingerprint = b"\0".join((*(path.read_bytes() for path in files), repr(half_life).encode()))
    return AudiencePolicy.build(definitions, models, config.score_threshold_map, fingerprint)


def load_trigger_policy(
    config: Settings, audiences: AudiencePolicy | None, profile: ProfilePolicy = DEFAULT_POLICY
) -> TriggerPolicy:
    """Trigger definitions; their rules decay affinity with ``profile``'s half-life, as segments do; the
    guard chain's guardrails are the settings' with the file's ``guardrails:`` section over them."""
    definitions = load_triggers(config.triggers_file, affinity_half_life_s=profile.affinity_half_life_s)
    consumables = audiences.definitions.consumables if audiences is not None else None
    guardrails = Guardrails.from_texts(definitions.guardrails, base=config.guardrails)  # the file's section wins
    return TriggerPolicy(definitions, consumables=consumables, profile=profile, guardrails=guardrails)


def stage_policy(settings: Settings) -> StagePolicy:
    profile = ProfilePolicy(pii_hash_key=settings.pii_hash_key, max_applied_ids=settings.dedup_max_ids)
    audiences = load_audience_policy(settings, profile)
    return StagePolicy(
        triggers=load_trigger_policy(settings, audiences, profile),
        profile=profile,
        max_users_per_anonymous_id=settings.max_users_per_anonymous_id,
        audiences=audiences,
        audience_min_interval_s=settings.audience_min_interval_s,
        audience_backlog_fraction=settings.audience_backlog_fraction,
        audience_max_interval_s=settings.audience_max_interval_s,
        attribution_window_s=settings.attribution_window_s,
    )


def contract_limits(settings: Settings) -> ContractLimits:
    return ContractLimits(
        max_event_bytes=settings.max_event_bytes,
        max_future_skew_s=settings.max_future_skew_s,
        max_past_skew_s=settings.max_past_skew_s,
    )
