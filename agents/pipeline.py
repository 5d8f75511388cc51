"""The profile stage's handlers, bound to their policy and outputs, as the runtime drives them.

``streams.worker`` builds one ``ProfilePipeline`` and hands it to ``streams.runtime.Runtime`` (which
takes any object with these methods, its ``Stages``): the loop fetches, routes, flushes and recovers,
and calls these for everything the stage decides, so the runtime imports no agent. Each method is one
agent call: ``ingest`` (``agents.ingest``), ``apply`` (``agents.profiles.CommandHandler``), ``due_commands``,
``rebuild_index`` and ``stale_commands`` (``agents.clock``); ``decode`` reads a ``profile-commands`` record.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from agents.clock import due_commands, rebuild_due_index, stale_audience_commands
from agents.ingest import ingest_record
from agents.outbox import Outbox
from agents.profiles import CommandHandler
from agents.store import StageStore
from agents.tally import Tally
from core.privacy import PiiPolicy
from core.profile_stage import StagePolicy
from schemas.commands import ApplyEvent, ProfileCommand, WakeUp, decode_command
from schemas.deadletter import SourceRecord
from schemas.errors import UndecodableCommand
from schemas.topics import TopicNames
from schemas.validation import ContractLimits


class ProfilePipeline(CommandHandler):
    """Ingest → profile stage → outbox, and the clock beside it (see the module docstring).

    ``apply`` is ``CommandHandler.apply`` itself: the runtime's call for every command reaches the profile
    stage without a layer in between."""

    def __init__(
        self,
        policy: StagePolicy,
        *,
        topics: TopicNames,
        limits: ContractLimits,
        privacy: PiiPolicy,
        outbox: Outbox,
        tally: Tally,
    ) -> None:
        super().__init__(policy, topics=topics, outbox=outbox, tally=tally)
        self.limits = limits
        self.privacy = privacy

    def ingest(self, record: SourceRecord) -> tuple[bytes, ApplyEvent]:
        """An inbound record → ``(routing key, ApplyEvent)``; raises ``InvalidEvent``."""
        return ingest_record(record, limits=self.limits, privacy=self.privacy, tally=self.tally)

    def decode(self, record: SourceRecord) -> ProfileCommand:
        """A ``profile-commands`` record → its command; raises ``UndecodableCommand``."""
        if record.value is None:
            detail = "no value (a tombstone)"
            raise UndecodableCommand(detail)
        try:
            return decode_command(record.value)
        except msgspec.DecodeError as exc:
            raise UndecodableCommand(str(exc)) from exc

    def due_commands(self, store: StageStore, now: float) -> Iterable[tuple[bytes, WakeUp]]:
        return due_commands(store, now)

    def rebuild_index(self, store: StageStore) -> int:
        return rebuild_due_index(store)

    def stale_commands(self, store: StageStore, now: float) -> list[tuple[bytes, WakeUp]]:
        return stale_audience_commands(store, self.policy, now)
