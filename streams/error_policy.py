"""The one place that decides, for every record whose processing fails, whether to park it or to stop.

The runtime calls ``ProcessingErrors.on_processing_error`` for a failure in any per-record step: decoding
a ``profile-commands`` record, validating an inbound one, routing and encoding it, and applying it (with
every command it leads to in place). The decision:

**Park it and go on.** A dead letter goes to ``events.deadletter`` (reason, detail, source topic /
partition / offset, time, the original bytes) and is counted by reason
(``streamcdp_events_deadlettered_total``); the record's offset is consumed like any other, so one bad
record never stalls its partition:

- ``InvalidEvent``: an inbound message breaks the contract (its reason code, ``schemas/CONTRACT.md``);
- ``UndecodableCommand``: a ``profile-commands`` record does not decode (``undecodable_command``);
- any other ``Exception``: a bug met by this record (``processing_failed``, the error in ``detail``).
  Nothing of it is lost: the bytes are in the dead letter, to be replayed after a fix. The pure stage
  step runs before anything is written back, so a command that fails in it leaves its key's state as it
  was.

A failure without an input record (a clock wake-up's ``WakeUp``, or a second command of a record
already parked) has nothing to park: it is logged and counted (``processing_failed``), and the key's due
time stays in its table, so the next rebuild of the wake-up index brings it back.

**Stop** (the error propagates, the worker stops and writes nothing more; the inputs since the last
commit replay after a restart), where going on would lose data:

- ``MemoryError`` and everything that is not an ``Exception`` (cancellation, exit): the process failed,
  not the record. Parking would send every following record to the dead-letter topic as well, and a
  write-back cut in half would be flushed as state.
- A failed checkpoint (outputs, changelog, RocksDB: ``streams.checkpoint``), not decided here: going on
  would persist state that claims outputs which were never sent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from agents.outbox import Outbox
from agents.tally import EVENTS_DEADLETTERED, Tally
from schemas.codecs import encode_json
from schemas.deadletter import PROCESSING_FAILED, SourceRecord, dead_letter
from schemas.errors import InvalidEvent, InvalidRecord
from streams.logs import record_context

log = logging.getLogger(__name__)

FATAL = (MemoryError,)  # Exceptions that stop the worker (see the module docstring); BaseExceptions always do


class ProcessingErrors:
    """Parks failed records on the dead-letter topic, or stops the worker (see the module docstring)."""

    def __init__(
        self,
        deadletter_topic: str,
        outbox: Outbox,
        tally: Tally,
        clock: Callable[[], float] = time.time,
        redact: Callable[[bytes], bytes] | None = None,
    ) -> None:
        self.deadletter_topic = deadletter_topic
        self.redact = redact  # PII out of dead letters (core.privacy.redact_payload), unless configured to keep
        self.outbox = outbox
        self.tally = tally
        self.clock = clock

    def on_processing_error(self, error: Exception, record: SourceRecord | None, key: bytes | None = None) -> None:
        """Park ``record`` (or, without one, log) and return; re-raise ``error`` when the worker must stop."""
        if isinstance(error, FATAL):
            raise error
        if isinstance(error, InvalidRecord):
            reason, detail = error.reason, error.detail
        else:
            reason, detail = PROCESSING_FAILED, f"{type(error).__name__}: {error}"
        self.tally.add(EVENTS_DEADLETTERED, reason)
        if record is None:
            log.error("processing failed for key %r", key, exc_info=error)
            return
        letter = dead_letter(record, reason, detail, failed_at=self.clock(), redact=self.redact)
        # The letter's key and reason are the record's, clipped: its whole record fits a produce request.
        self.outbox.send(
            self.deadletter_topic, letter.original_key, encode_json(letter), [("reason", letter.reason.encode())]
        )
        where = f"{record.topic}:{record.partition}@{record.offset}"
        if isinstance(error, InvalidEvent):
            log.debug("dead-lettered %s: %s", where, error, extra=record_context(record.partition, record))
        else:
            log.error(
                "dead-lettered %s (%s)", where, reason, exc_info=error, extra=record_context(record.partition, record)
            )
