"""The names of every Kafka topic streamcdp reads or writes (no I/O: ``streams.topics`` creates them).

Inbound (one per event family), dead letters, outbound trigger topics (one per channel plus the holdout
log), trigger conversions (responses attributed to triggers), segment changes, and the internal topics of
the profile stage (commands re-keyed by id, and the compacted changelog of its state).
"""

from __future__ import annotations

from dataclasses import dataclass

CHANNELS = ("email", "sms", "whatsapp", "webpush", "apppush")
INBOUND_FAMILIES = ("clickstream", "purchase", "messaging", "customer")


@dataclass(frozen=True)
class TopicNames:
    prefix: str

    def inbound(self, family: str) -> str:
        return f"{self.prefix}events.{family}"

    @property
    def all_inbound(self) -> tuple[str, ...]:
        return tuple(self.inbound(family) for family in INBOUND_FAMILIES)

    @property
    def deadletter(self) -> str:
        return f"{self.prefix}events.deadletter"

    def triggers(self, channel: str) -> str:
        return f"{self.prefix}triggers.{channel}"

    @property
    def all_triggers(self) -> tuple[str, ...]:
        return tuple(self.triggers(channel) for channel in (*CHANNELS, "holdout"))

    @property
    def trigger_conversions(self) -> str:
        """Responses attributed to a sent or held-out trigger (``schemas.conversions``); not ``triggers.*``,
        which senders subscribe to by pattern."""
        return f"{self.prefix}trigger-conversions"

    @property
    def segment_changes(self) -> str:
        return f"{self.prefix}segments.changes"

    @property
    def profile_commands(self) -> str:
        """Internal: events and commands re-keyed by the id whose profile partition must act."""
        return f"{self.prefix}streamcdp.profile-commands"

    def state_changelog(self, app_id: str) -> str:
        """Internal, compacted: the profile stage's state (``streams.state_store``), partitioned like its inputs."""
        return f"{self.prefix}{app_id}.state-changelog"

    @property
    def all_declared(self) -> tuple[str, ...]:
        return (
            *self.all_inbound,
            self.deadletter,
            *self.all_triggers,
            self.trigger_conversions,
            self.segment_changes,
            self.profile_commands,
        )
