"""The clock of the profile stage: faust has no per-key timers, so periodic scans find keys that need a look.

- ``check_due_triggers``: keys with something pending (a cart that may be abandoned, a time-driven
  segment change) are in ``customer_to_trigger_due``; the in-memory ``due_index`` heap beside it lets
  each tick touch only the keys that are due, never the whole table.
- ``reevaluate_stale_audiences``: once per worker start, after table recovery, every local profile whose
  segments were computed by other definitions or another model gets a check (changing a definition and
  restarting re-evaluates membership and publishes the resulting entries and exits).

Neither timer decides or writes state itself: each sends a ``CheckTriggers`` command keyed by the
customer, and the profile stage decides in the partition that owns the customer.
"""

from __future__ import annotations

import logging
import time

from schemas.commands import CheckTriggers, encode_command
from streams import metrics
from streams.app import app, customer_to_profile, customer_to_trigger_due, due_index, profile_commands_topic, settings
from streams.codecs import decode_float, decode_profile
from streams.stage_config import stage_policy

log = logging.getLogger(__name__)


class IndexedPartitions:
    """Which partitions the due index was built for; a rebalance changes them and forces a rebuild."""

    def __init__(self) -> None:
        self.partitions: frozenset | None = None


indexed = IndexedPartitions()


def _current_due(key: bytes) -> float | None:
    raw = customer_to_trigger_due.get(key)
    return None if raw is None else decode_float(raw)


@app.timer(interval=settings.trigger_scan_interval_s)
async def check_due_triggers():
    if app.rebalancing or not app.tables.recovery.completed.is_set():
        return
    assigned = frozenset(app.assignor.assigned_actives())
    if assigned != indexed.partitions or due_index.needs_compaction():
        due_index.rebuild((key, decode_float(raw)) for key, raw in customer_to_trigger_due.items())
        indexed.partitions = assigned
        metrics.wakeups_indexed.set(len(due_index))
    now = time.time()
    for key in due_index.pop_due(now, _current_due):
        await profile_commands_topic.send(key=key, value=encode_command(CheckTriggers(now=now)))


class AudienceSweep:
    """Done once per process: the local profiles are swept after the first complete recovery."""

    def __init__(self) -> None:
        self.done = False


audience_sweep = AudienceSweep()


@app.timer(interval=2.0)
async def reevaluate_stale_audiences():
    if audience_sweep.done or not app.tables.recovery.completed.is_set() or app.rebalancing:
        return
    audience_sweep.done = True
    policy = stage_policy().audiences
    if policy is None:
        return
    now = time.time()
    stale = 0
    for key, raw in list(customer_to_profile.items()):
        profile = decode_profile(raw)
        if profile is not None and profile.audience_version != policy.version:
            stale += 1
            await profile_commands_topic.send(key=key, value=encode_command(CheckTriggers(now=now)))
    log.info("audience sweep: %d profile(s) computed by other definitions or model were sent for re-evaluation", stale)
