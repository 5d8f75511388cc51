"""The profile stage's policy, built once per process from ``Settings``.

Reads and validates the segment definitions and the propensity model named in the settings: a broken
definition stops the worker at start with the file, line and problem, rather than evaluating nothing.
The runtime and the web views share the one instance the worker builds.
"""

from __future__ import annotations

from core.audiences import AudiencePolicy
from core.profile import ProfilePolicy
from core.profile_stage import StagePolicy
from core.scoring import load_models
from core.segment_defs import load_definitions
from core.triggers.definitions import load_triggers
from core.triggers.engine import TriggerPolicy
from streams.settings import Settings


def load_audience_policy(config: Settings) -> AudiencePolicy:
    definitions = load_definitions(config.segments_file)
    models = load_models(config.model_file)
    # The trigger file is part of the fingerprint: after it changes, a restart wakes every profile once,
    # and each re-evaluates its pending triggers against the new definitions (same ids, no duplicates).
    fingerprint = b"\0".join(
        path.read_bytes() for path in (config.segments_file, config.model_file, config.triggers_file)
    )
    return AudiencePolicy.build(definitions, models, config.score_threshold_map, fingerprint)


def load_trigger_policy(config: Settings, audiences: AudiencePolicy | None) -> TriggerPolicy:
    consumables = audiences.definitions.consumables if audiences is not None else None
    return TriggerPolicy(load_triggers(config.triggers_file), consumables=consumables)


def stage_policy(settings: Settings) -> StagePolicy:
    audiences = load_audience_policy(settings)
    return StagePolicy(
        triggers=load_trigger_policy(settings, audiences),
        profile=ProfilePolicy(pii_hash_key=settings.pii_hash_key, max_applied_ids=settings.dedup_max_ids),
        max_users_per_anonymous_id=settings.max_users_per_anonymous_id,
        audiences=audiences,
        audience_min_interval_s=settings.audience_min_interval_s,
        audience_backlog_fraction=settings.audience_backlog_fraction,
        audience_max_interval_s=settings.audience_max_interval_s,
    )
