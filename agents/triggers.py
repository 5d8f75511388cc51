"""The clock of the profile stage: faust has no per-key timers, so periodic scans find keys that need a look.

- ``check_due_triggers``: only keys with something pending are in ``customer_to_trigger_due`` (a cart
  that may be abandoned, a time-driven segment change), so the scan is over that set, not all profiles.
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
from streams.app import app, customer_to_profile, customer_to_trigger_due, profile_commands_topic, settings
from streams.codecs import decode_float, decode_profile
from streams.stage_config import stage_policy

log = logging.getLogger(__name__)


class DueChecks:
    """Which due time each key was already asked about, so a slow stage is not flooded with repeats."""

    def __init__(self) -> None:
        self.asked: dict[bytes, float] = {}

    def should_ask(self, key: bytes, due_at: float) -> bool:
        if self.asked.get(key) == due_at:
            return False
        self.asked[key] = due_at
        return True

    def forget_old(self, pending: int) -> None:
        if len(self.asked) > 4 * max(pending, 1024):
            self.asked.clear()


due_checks = DueChecks()


@app.timer(interval=settings.trigger_scan_interval_s)
async def check_due_triggers():
    now = time.time()
    pending = 0
    for key, raw_due in list(customer_to_trigger_due.items()):
        pending += 1
        due_at = decode_float(raw_due)
        if due_at <= now and due_checks.should_ask(key, due_at):
            await profile_commands_topic.send(key=key, value=encode_command(CheckTriggers(now=now)))
    metrics.triggers_pending.set(pending)
    due_checks.forget_old(pending)


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
