"""The trigger clock: faust has no per-key timers, so a periodic scan finds customers whose trigger is due.

Only customers with something pending are in ``customer_to_trigger_due`` (a cart that may be
abandoned), so the scan is over that small set, not over all profiles. The timer never decides or
writes state itself: it sends a ``CheckTriggers`` command keyed by the customer, and the profile stage
decides in the partition that owns the customer.
"""

from __future__ import annotations

import time

from schemas.commands import CheckTriggers, encode_command
from streams import metrics
from streams.app import app, customer_to_trigger_due, profile_commands_topic, settings
from streams.codecs import decode_float

# key → due time already asked about, so one due trigger is checked once, not once per tick.
_checks_sent: dict[bytes, float] = {}


@app.timer(interval=settings.trigger_scan_interval_s)
async def check_due_triggers():
    now = time.time()
    pending = 0
    for key, raw_due in list(customer_to_trigger_due.items()):
        pending += 1
        due_at = decode_float(raw_due)
        if due_at <= now and _checks_sent.get(key) != due_at:
            _checks_sent[key] = due_at
            await profile_commands_topic.send(key=key, value=encode_command(CheckTriggers(now=now)))
    metrics.triggers_pending.set(pending)
    if len(_checks_sent) > 4 * max(pending, 1024):
        _checks_sent.clear()
