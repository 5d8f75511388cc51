"""When the worker flushes (``Checkpoint.commit``): the trade between large transactions and fresh outputs.

A flush makes everything processed since the last one durable and, with exactly-once, visible: outputs are
held in the outbox until then, so the time to the next flush is part of every output's latency. Under a
backlog, flushes follow the record count and ``commit_interval_s`` (few, large transactions: the
throughput). Once the worker keeps up with its inputs, a fetch returns fewer records than it may, and an
output waiting for the interval would only add latency: it is flushed at most ``output_linger_s`` after
the previous flush (Kafka Streams' 100 ms commit interval under exactly-once plays that role there, for
every load). Pure functions of the loop's counters, so the choice is tested without a broker.

Why "the fetch was not full" and not a stricter test of keeping up (nothing held back for event-time order,
no records behind the fetch responses' high watermarks): under live traffic a record is nearly always in
flight, so the stricter test rarely held, the outputs waited for the interval, and the short fetch waits
meant for a coming flush spun the loop (p50 879 ms against 64 ms at 1,000 events/s, bench README "Round 2"
of the latency section). The price of the simple test is a flush per linger while a backlog drains in
partial fetches; measured on a drain, within the noise.

Why a pause between live fetches (``fetch_pause_s``): a worker keeping up fetched again as soon as it had processed
a fetch, 10-20 records at 400-600 events/s, and every fetch has fixed costs (the consumer's round trips, the
event-time merge, the lag gauges, a share of the flushes): live traffic cost it twice the CPU per event of a backlog
of it, more the smaller its fetches (bench README, round 3 of the latency section). Outputs are visible only at the
next flush, so records left to gather in the consumer for up to ``live_fetch_interval_s`` are not decided later
than their flush unless the linger ends meanwhile; the pause never runs past that end.
"""

from __future__ import annotations

from streams.settings import Settings

FETCH_WAIT_MS = 100  # a fetch's longest wait for records when nothing is held back and no output waits
HELD_BACK_FETCH_WAIT_MS = 10  # records held back for a lagging input are waited for with short fetches


def flush_due(
    settings: Settings, *, since_flush_s: float, inputs: int, empty: bool, outputs: int, caught_up: bool
) -> bool:
    """Whether to flush now: ``inputs`` records processed and ``outputs`` waiting since the flush
    ``since_flush_s`` ago; ``empty``: nothing at all to commit; ``caught_up``: the last fetch was not full."""
    if inputs >= settings.flush_max_records:
        return True
    if empty:
        return False
    if since_flush_s >= settings.commit_interval_s:
        return True
    return caught_up and outputs > 0 and since_flush_s >= settings.output_linger_s


def flush_due_within_fetch(settings: Settings, *, dirty_keys: int) -> bool:
    """Whether to flush between two slices of a fetch (or two wake-ups): ``dirty_keys`` state keys changed since
    the last flush. A draining worker's fetch of new customers changes about three keys per event, each written
    encoded to the changelog and to RocksDB's write batch at the flush: without this bound a fetch of 5,000
    such events made flushes of ~13,500 values, and their copies were the peak of its memory (bench README,
    "Round 5" of the state bench). A fetch of returning customers changes fewer keys per event, but may reach it
    too (not measured); the pipeline bench showed no cost of the bound above its noise."""
    return dirty_keys >= settings.flush_max_dirty_keys


def fetch_wait_ms(settings: Settings, *, held_back: bool, outputs: int, since_flush_s: float) -> int:
    """How long the next fetch may wait for records: not past the moment waiting outputs are due a flush."""
    wait = HELD_BACK_FETCH_WAIT_MS if held_back else FETCH_WAIT_MS
    if outputs:
        wait = min(wait, max(0, round((settings.output_linger_s - since_flush_s) * 1000)))
    return wait


def fetch_pause_s(
    settings: Settings, *, fetched: int, held_back: bool, since_fetch_s: float, outputs: int, since_flush_s: float
) -> float:
    """How long to let records gather before the next fetch: after a fetch of ``fetched`` records that was not
    full, up to ``live_fetch_interval_s`` since it returned (``since_fetch_s`` ago), never past the moment waiting
    outputs are due a flush. None under a backlog (full fetches), after an empty fetch (it waited already), or with
    records held back for event-time order (their inputs are waited for with short fetches)."""
    if not fetched or fetched >= settings.fetch_max_records or held_back:
        return 0.0
    pause = settings.live_fetch_interval_s - since_fetch_s
    if outputs:
        pause = min(pause, settings.output_linger_s - since_flush_s)
    return max(0.0, pause)
