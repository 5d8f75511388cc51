"""A linked device's link event is always inside the workload's window (found by the ground-truth test).

A replenishment on a customer's first day linked the device 60 s *before* the order, which could fall
before ``start``: the identify was cut off with everything outside the window, while the device's
later events still carried the userId. The pipeline links any event with both ids, the truth only
identify/alias events — so truth and pipeline disagreed on that customer's devices and events.
"""

from __future__ import annotations

from offline.generator import WorkloadConfig, generate_workload
from schemas.validation import decode_event

START = 1_760_000_000.0


def test_every_device_seen_with_a_user_id_is_linked_to_it_in_the_truth() -> None:
    workload = generate_workload(WorkloadConfig(start=START, customers=300, days=10, seed=3))
    linked = {row["user_id"]: set(row["anonymous_ids"]) for row in workload.truth["profiles"]}
    now = START + 11 * 86400
    unlinked = set()
    for line in workload.lines:
        event = decode_event(line, now=now)
        if event.user_id and event.anonymous_id and event.anonymous_id not in linked[event.user_id]:
            unlinked.add((event.user_id, event.anonymous_id))
    assert not unlinked, sorted(unlinked)[:5]
