"""The clock of the profile stage: commands that time alone makes necessary, applied in place.

- ``due_commands``: keys with something pending (a pending trigger, a time-driven segment
  change) have a wake-up time in ``WAKE_UPS``; the partition's in-memory ``due_index`` heap beside it
  lets each tick touch only the keys that are due, never the whole table.
- ``stale_audience_commands``: when a partition is taken over (at start, after a rebalance), every
  profile whose segments were computed by other definitions or another model gets a check, so changing
  a definition and restarting re-evaluates membership and publishes the entries and exits. The partition
  remembers the version it last checked all its profiles against (``CHECKED_AUDIENCES``), so a restart
  with the same definitions reads no profile (reading 166,000 took 7–16 s in the restore bench).

Both only say which keys need ``WakeUp``; the profile stage decides.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

from agents.store import StageStore
from agents.tables import CHECKED_AUDIENCES, PARTITION_KEY, PROFILES, WAKE_UPS
from core.profile_stage import StagePolicy
from schemas.commands import WakeUp


def rebuild_due_index(store: StageStore) -> int:
    store.due_index.rebuild((key, due_at) for key, due_at in store.items(WAKE_UPS) if due_at is not None)
    return len(store.due_index)


def due_commands(store: StageStore, now: float) -> Iterator[tuple[bytes, WakeUp]]:
    """The wake-ups due at or before ``now``, in time order, each decided at its own due time (not at
    ``now``): when the clock happens to fire (a tick, the next record) then changes nothing in what is
    decided, so a replay of the same history decides the same triggers and segment changes with the same
    times.

    Lazy: each is applied before the next is looked up, so a wake-up that applying one writes at or before
    ``now`` (a reminder deferred by quiet hours that have already ended) fires in the same pass. Left to the
    next tick, any command for the key before it (a record, a forwarded command) would find the trigger
    overdue and decide it at its own, later time. A key is woken once per due time (a step that asks again
    for the time it was just woken at would otherwise spin)."""
    if store.due_index.needs_compaction():
        rebuild_due_index(store)
    woken: set[tuple[bytes, float]] = set()
    pop_next = store.due_index.pop_next
    current = partial(store.get, WAKE_UPS)
    while (due := pop_next(now, current)) is not None:
        if due not in woken:
            woken.add(due)
            yield due[0], WakeUp(now=due[1])


def stale_audience_commands(store: StageStore, policy: StagePolicy, now: float) -> list[tuple[bytes, WakeUp]]:
    if policy.audiences is None:
        return []
    version = policy.audiences.version
    if store.get(CHECKED_AUDIENCES, PARTITION_KEY) == version:
        return []  # every profile was checked against these definitions, and later ones are made by them
    stale = [
        (key, WakeUp(now=now))
        for key, profile in store.items(PROFILES)
        if profile is not None and profile.audience_version != version
    ]
    # Written with the checks' results (one flush, one transaction with exactly-once).
    store.put(CHECKED_AUDIENCES, PARTITION_KEY, version)
    return stale
