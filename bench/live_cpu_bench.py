"""The worker's CPU per event for the same live-shaped traffic taken as a backlog or as live traffic, without a
broker (issue 15 item 4: why live traffic costs the worker more than a backlog of it).

Run: ``.venv/bin/python bench/live_cpu_bench.py [--customers 2000] [--repeats 3] [--modes backlog,live]``.

``latency_bench.py --backlog-kind live`` drains new customers shaped like the live ones, then sends them live;
the worker spends more CPU per event on the live phase. This drives the real ``streams.runtime.Runtime`` with
the real ``ProfilePipeline`` and RocksDB stores over the unit tests' fake Kafka clients
(``worker_cpu_bench.build_runtime``; the triggers of ``config/triggers.yaml``) and feeds it the same events two
ways, so each difference can be taken apart:

- ``backlog``: Kafka timestamps of a load (70,000 records/s: a customer's events within a fraction of a millisecond
  of each other, as the latency bench's backlog), fetches of ``fetch_max_records``;
- ``live``: Kafka timestamps as sent live (a new customer every ``8 / --rate`` s, its events ``--gap`` s apart),
  fetches of what arrives in ``--fetch-every-ms`` at ``--rate``, each followed by a flush (a worker keeping up
  flushes its outputs ``output_linger_s`` after the previous flush: about every fetch at this rate);
- ``spaced``: live timestamps in backlog-sized fetches (the stage work of live traffic without its small fetches);
- ``burst``: backlog timestamps in live-sized fetches with a flush each (small fetches and flushes alone).

Both end an hour before the wall clock, so every partition's clock follows its records (the runtime's event-time
order), and the wake-ups left are fired at the end by a tick an hour later. Prints, per mode, process CPU per
event (best of the repeats), and per event: audience refreshes (``core.audiences.refresh_audiences`` calls),
wake-ups, changelog records and flushes.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "bench"), str(REPO / "tests" / "unit" / "test_streams")]

import orjson  # noqa: E402
from aiokafka.partitioner import DefaultPartitioner  # noqa: E402
from aiokafka.structs import TopicPartition  # noqa: E402
from fake_kafka import consumer_record  # noqa: E402
from latency_bench import EVENTS_PER_LIVE_CUSTOMER, live_customer  # noqa: E402
from pipeline_bench import _route, iso_now_ms  # noqa: E402
from worker_cpu_bench import PARTITIONS, build_runtime, summarise  # noqa: E402

import core.profile_stage  # noqa: E402
from agents.tally import PROFILE_COMMANDS  # noqa: E402
from streams import metrics  # noqa: E402
from streams.worker import GC_THRESHOLDS  # noqa: E402

LOAD_RATE = 70_000  # records/s of the backlog's load: its Kafka timestamps
BEHIND_S = 3600.0
MODES = {"backlog": (False, False), "live": (True, True), "spaced": (True, False), "burst": (False, True)}


class Refreshes:
    """Counts ``refresh_audiences`` calls (the profile stage imports it by name: wrapped there)."""

    def __init__(self) -> None:
        self.calls = 0
        self._refresh = core.profile_stage.refresh_audiences

        def counted(*args, **kwargs):
            self.calls += 1
            return self._refresh(*args, **kwargs)

        core.profile_stage.refresh_audiences = counted


def records(rt, customers: int, *, spaced: bool, rate: float, gap: float) -> list:
    """The customers' records in send order (all partitions), with Kafka timestamps ending ``BEHIND_S`` ago."""
    sends = []
    for index in range(customers):
        start = index * EVENTS_PER_LIVE_CUSTOMER / rate
        for step, (_, payload) in enumerate(live_customer(index, "UTC")):
            sends.append((start + step * gap, payload))
    sends.sort(key=lambda item: item[0])
    began = time.time() - BEHIND_S - sends[-1][0]
    partitioner, everything = DefaultPartitioner(), list(range(PARTITIONS))
    offsets: dict[TopicPartition, int] = {}
    out = []
    for index, (sent, payload) in enumerate(sends):
        stamped = dict(payload, timestamp=iso_now_ms(began + sent))
        message = _route(rt.topics, stamped, orjson.dumps(stamped))
        tp = TopicPartition(message.topic, partitioner(message.key, everything, everything))
        offset = offsets[tp] = offsets.get(tp, -1) + 1
        at = began + sent if spaced else time.time() - BEHIND_S - (len(sends) - index) / LOAD_RATE
        out.append(
            (
                sent,
                consumer_record(tp.topic, tp.partition, offset, message.key, message.value, timestamp=int(at * 1000)),
            )
        )
    return out


def fetches(stamped: list, *, small: bool, fetch_max: int, rate: float, every_ms: float) -> list[dict]:
    """Batches as the consumer returns them: ``fetch_max`` records, or (``small``) what arrives in ``every_ms``."""
    per_fetch = max(1, round(rate * every_ms / 1000)) if small else fetch_max
    batches = []
    for start in range(0, len(stamped), per_fetch):
        batch: dict[TopicPartition, list] = {}
        for _, record in stamped[start : start + per_fetch]:
            batch.setdefault(TopicPartition(record.topic, record.partition), []).append(record)
        batches.append(batch)
    return batches


async def drain(rt, batches: list[dict], *, flush_each: bool) -> int:
    """The runtime's loop over ``batches`` (``Runtime.run``), a flush after each with ``flush_each``; the flushes."""
    await rt.start()
    await rt.on_partitions_assigned([TopicPartition(t, p) for t in rt.source_topics for p in range(PARTITIONS)])
    consumer = rt.consumer
    for batch in batches:  # every input caught up at the end of what is handed out
        for tp, recs in batch.items():
            consumer.highwaters[tp] = max(consumer.highwaters.get(tp, 0), recs[-1].offset + 1)
    consumer.batches = list(batches)
    consumer.when_drained = rt.stop
    flushes = 0
    commit = rt.checkpoint.commit

    async def counted(stores):
        nonlocal flushes
        flushes += 1
        await commit(stores)

    rt.checkpoint.commit = counted
    if flush_each:
        rt.settings = rt.settings.model_copy(update={"output_linger_s": 0.0})
    await rt.run()
    await rt.tick(time.time() + BEHIND_S, ())  # the wake-ups left, an hour later (the tick of a live partition)
    await rt.checkpoint.commit(rt.stores.values())
    summarise(rt)
    await rt.close()
    return flushes


def _counters(rt) -> tuple[float, float]:
    """Wake-ups applied (the stage's own tally: ``build_runtime`` gives it one) and changelog records written."""
    counts, _ = rt.stages.tally.take()
    return counts.get((PROFILE_COMMANDS, ("check",)), 0), metrics.changelog_records._value.get()


def one_run(mode: str, args, refreshes: Refreshes) -> dict:
    spaced, small = MODES[mode]
    with tempfile.TemporaryDirectory(prefix="live-cpu-") as tmp:
        rt = build_runtime(Path(tmp), triggers=True)
        stamped = records(rt, args.customers, spaced=spaced, rate=args.rate, gap=args.gap)
        batches = fetches(
            stamped, small=small, fetch_max=rt.settings.fetch_max_records, rate=args.rate, every_ms=args.fetch_every_ms
        )
        events = len(stamped)
        del stamped
        gc.collect()
        gc.freeze()
        refreshes.calls = 0
        rt.stages.tally.take()
        before = 0.0, metrics.changelog_records._value.get()
        started = time.process_time()
        flushes = asyncio.run(drain(rt, batches, flush_each=small))
        seconds = time.process_time() - started
        after = _counters(rt)
        gc.unfreeze()
    return {
        "mode": mode,
        "events": events,
        "fetches": len(batches),
        "cpu_us_per_event": seconds / events * 1e6,
        "refreshes_per_event": refreshes.calls / events,
        "wake_ups_per_event": (after[0] - before[0]) / events,
        "changelog_per_event": (after[1] - before[1]) / events,
        "flushes_per_event": flushes / events,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rate", type=float, default=1500.0, help="live events/s (a customer every 8/rate s)")
    parser.add_argument("--gap", type=float, default=2.0, help="seconds between one customer's events")
    parser.add_argument("--fetch-every-ms", type=float, default=50.0, help="live: one fetch per this much traffic")
    parser.add_argument("--modes", default="backlog,live,spaced,burst")
    args = parser.parse_args()
    gc.set_threshold(*GC_THRESHOLDS)
    refreshes = Refreshes()
    modes = args.modes.split(",")
    best: dict[str, dict] = {}
    for repeat in range(args.repeats):
        for mode in modes:  # alternated: the machine's load moves
            result = one_run(mode, args, refreshes)
            print(
                f"repeat {repeat + 1} "
                + " ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items()),
                flush=True,
            )
            if mode not in best or result["cpu_us_per_event"] < best[mode]["cpu_us_per_event"]:
                best[mode] = result
    print("best:")
    for mode in modes:
        r = best[mode]
        print(
            f"  {mode:<8} {r['cpu_us_per_event']:6.0f} µs/event  refreshes {r['refreshes_per_event']:.3f}  wake-ups "
            f"{r['wake_ups_per_event']:.3f}  changelog {r['changelog_per_event']:.3f}  "
            f"flushes {r['flushes_per_event']:.4f} "
            f"per event; {r['fetches']} fetches"
        )


if __name__ == "__main__":
    main()
