"""The worker's own CPU per event on the pipeline benchmark's workload, without a broker.

Run: ``.venv/bin/python bench/worker_cpu_bench.py [--events 50000] [--repeats 3] [--triggers]``.

``bench/pipeline_bench.py`` measures the whole path through a real broker, so on the shared 2-core machine
its events/s moves with everything else that runs. This drives the same code the worker runs — the real
``streams.runtime.Runtime`` loop (event-time alignment, in-place routing, the clock, the checkpoint with
exactly-once transactions, the default settings) with the real ``ProfilePipeline`` and RocksDB partition
stores — over the same generated backlog (``pipeline_bench.build_workload``: ``offline.generator``, keyed by
routing id, murmur2-partitioned, Kafka timestamps = load time), with the broker replaced by the unit
tests' fakes (``tests/unit/test_streams/fake_kafka.py``: batches handed out, sends acknowledged at once).
So it counts the worker's Python (decode, validate, profile stage, outputs and changelog encoding, RocksDB
writes) and leaves out aiokafka's fetch and produce paths and the network.

Like ``pipeline_bench`` it runs with an empty trigger definitions file unless ``--triggers`` (the
worker's ``config/triggers.yaml``). Prints process CPU seconds per event for each repeat (a fresh data
dir each time) and the best, in µs/event and events per CPU-second.

The runtime's work is not fixed from run to run: its clock follows the wall clock (and so does the refresh
interval with ``STREAMCDP_AUDIENCE_BACKLOG_FRACTION`` > 0: a slower run then refreshes segments less often).
``--stages-only`` leaves the loop out — each record through ``ProfilePipeline.ingest`` and ``.apply`` in its
partition's store, commands for other keys to the outbox — with the backlog an hour behind (with the stretch,
every refresh interval at its maximum): the same work in every run, in thread CPU, to compare small changes of
the per-event glue.

The garbage collector is set as the worker sets it (``streams.worker``: ``gc.freeze()`` of what is loaded, then
``GC_THRESHOLDS``), the generated backlog frozen with it: the worker never holds a backlog in memory, and with
Python's default thresholds the collections scan it again and again (0.54 CPU-s of collections in a process
running 2 repeats of 30,000 events, loading included, before branch ``runtime15``). ``--python-gc`` keeps
Python's defaults (what this bench measured before).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pickle
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tests" / "unit" / "test_streams"))

from aiokafka.partitioner import DefaultPartitioner  # noqa: E402
from aiokafka.structs import TopicPartition  # noqa: E402
from fake_kafka import (  # noqa: E402
    FakeConsumer,
    FakeProducer,
    FakeRestoreConsumer,
    FakeTransactionalProducer,
    consumer_record,
)
from pipeline_bench import build_workload  # noqa: E402

from agents.outbox import Outbox  # noqa: E402
from agents.pipeline import ProfilePipeline  # noqa: E402
from agents.tally import Tally  # noqa: E402
from streams.assignor import CoPartitionAssignor  # noqa: E402
from streams.runtime import Runtime  # noqa: E402
from streams.settings import Settings  # noqa: E402
from streams.stage_config import contract_limits, stage_policy  # noqa: E402
from streams.topics import topic_names  # noqa: E402
from streams.worker import GC_THRESHOLDS  # noqa: E402

PARTITIONS = 4
STAGES_BEHIND_S = 3600.0  # --stages-only: how far the backlog's Kafka timestamps are behind the wall clock
LOAD_RATE = 70_000  # records per second of the backlog load (pipeline_bench's is 70,000-120,000): Kafka timestamps


def build_runtime(data_dir: Path, *, triggers: bool) -> Runtime:
    values: dict[str, object] = {"topic_prefix": "b.", "app_id": "cpu", "data_dir": data_dir}
    values["topic_partitions"] = PARTITIONS
    if not triggers:
        empty = data_dir / "no-triggers.yaml"
        empty.write_text("triggers: []\n")
        values["triggers_file"] = empty
    settings = Settings(**values)
    outbox = Outbox()
    stages = ProfilePipeline(
        stage_policy(settings),
        topics=topic_names(settings),
        limits=contract_limits(settings),
        privacy=_privacy(settings),
        outbox=outbox,
        tally=Tally(),
    )
    calls: list[str] = []
    exactly_once = settings.processing_guarantee == "exactly_once"
    return Runtime(
        settings,
        stages,
        outbox=outbox,
        producer=FakeTransactionalProducer(calls) if exactly_once else FakeProducer(calls),
        consumer=FakeConsumer(calls, PARTITIONS),
        restore_consumer=FakeRestoreConsumer(calls, topic_names(settings).state_changelog(settings.app_id)),
        assignor=CoPartitionAssignor("http://127.0.0.1:1"),
    )


def _privacy(settings: Settings):
    from streams.security import pii_policy

    return pii_policy(settings)


def workload_messages(rt: Runtime, events: int, seed: int, cache: Path | None) -> list:
    """``pipeline_bench.build_workload``'s messages; with ``cache``, read from that file when it exists
    (written otherwise), so that a run under an instruction counter does not count the generator."""
    if cache is not None and cache.exists():
        messages = pickle.loads(cache.read_bytes())
        if len(messages) >= events:
            return messages[:events]
    messages = build_workload(rt.topics, events, None, seed).messages
    if cache is not None:
        cache.write_bytes(pickle.dumps(messages))
    return messages


def fetches(
    rt: Runtime, events: int, seed: int, cache: Path | None = None, behind_s: float = 0.0
) -> list[dict[TopicPartition, list]]:
    """The backlog as the worker's fetches would return it: per partition in offset order, up to
    ``fetch_max_records`` records per fetch, taken round robin from the partitions that have some. Its
    Kafka timestamps start ``behind_s`` seconds before now."""
    messages = workload_messages(rt, events, seed, cache)
    partitioner = DefaultPartitioner()
    everything = list(range(PARTITIONS))
    started_ms = int((time.time() - behind_s) * 1000)
    queues: dict[TopicPartition, list] = {}
    for index, message in enumerate(messages):
        partition = partitioner(message.key, everything, everything)
        tp = TopicPartition(message.topic, partition)
        queue = queues.setdefault(tp, [])
        stamp = started_ms + index * 1000 // LOAD_RATE
        queue.append(consumer_record(tp.topic, partition, len(queue), message.key, message.value, timestamp=stamp))
    per_fetch = rt.settings.fetch_max_records
    batches: list[dict[TopicPartition, list]] = []
    position = dict.fromkeys(queues, 0)
    while any(position[tp] < len(queue) for tp, queue in queues.items()):
        batch: dict[TopicPartition, list] = {}
        room = per_fetch
        for tp, queue in queues.items():
            take = queue[position[tp] : position[tp] + max(room // len(queues), 1)]
            if take:
                batch[tp] = take
                position[tp] += len(take)
                room -= len(take)
        batches.append(batch)
    return batches


async def drain(rt: Runtime, batches: list) -> dict[str, int]:
    await rt.start()
    await rt.on_partitions_assigned([TopicPartition(t, p) for t in rt.source_topics for p in range(PARTITIONS)])
    for batch in batches:
        for tp, records in batch.items():
            rt.consumer.highwaters[tp] = max(rt.consumer.highwaters.get(tp, 0), records[-1].offset + 1)
    rt.consumer.batches = list(batches)
    rt.consumer.when_drained = rt.stop
    await rt.run()
    summary = summarise(rt)
    await rt.close()
    return summary


async def drain_stages(rt: Runtime, batches: list) -> tuple[float, dict[str, int]]:
    """The records through the stages alone (``ProfilePipeline.ingest`` and ``.apply``), each in its record's
    partition store at its Kafka timestamp, commands for other keys to the outbox: no runtime loop, no
    alignment, clock or checkpoint. The thread CPU seconds of the loop, and what it left."""
    await rt.start()
    await rt.on_partitions_assigned([TopicPartition(t, p) for t in rt.source_topics for p in range(PARTITIONS)])
    stages, outbox, stores = rt.stages, rt.outbox, rt.stores
    started = time.thread_time()
    for batch in batches:
        for tp, records in batch.items():
            store = stores[tp.partition]
            outbox.partition = tp.partition
            for record in records:
                key, command = stages.ingest(record)
                stages.apply(store, key, command, record.timestamp / 1000, None)
    seconds = time.thread_time() - started
    summary = summarise(rt)
    for topic, *_ in outbox.take():
        summary[topic] = summary.get(topic, 0) + 1
    await rt.close()
    return seconds, summary


def summarise(rt: Runtime) -> dict[str, int]:
    """What the drain left: profiles and the events they counted, outputs per topic (a check that a change
    of the code kept the behaviour, beside the tests)."""
    from agents.tables import PROFILES

    summary: dict[str, int] = {"profiles": 0, "profile events": 0}
    for store in rt.stores.values():
        for _, profile in store.items(PROFILES):
            summary["profiles"] += 1
            summary["profile events"] += profile.event_count
    if isinstance(rt.producer, FakeTransactionalProducer):  # what the transactions committed
        for topic, _, _ in rt.producer.sent:
            summary[topic] = summary.get(topic, 0) + 1
    return summary


def one_run(
    events: int,
    seed: int,
    *,
    triggers: bool,
    profile: Path | None,
    cache: Path | None = None,
    stages_only: bool = False,
    worker_gc: bool = True,
) -> tuple[float, int, dict[str, int]]:
    """CPU seconds of one drain (fresh data dir), the events it processed and what it left (``summarise``)."""
    with tempfile.TemporaryDirectory(prefix="worker-cpu-") as tmp:
        rt = build_runtime(Path(tmp), triggers=triggers)
        # The stages alone run an hour behind: even with ``audience_backlog_fraction`` > 0 the refresh interval
        # is then always at its maximum, so every run does the same work, whatever the machine's speed.
        batches = fetches(rt, events, seed, cache, behind_s=STAGES_BEHIND_S if stages_only else 0.0)
        count = sum(len(records) for batch in batches for records in batch.values())
        if worker_gc:  # as the worker: what is loaded is frozen, and the backlog with it (see the docstring)
            gc.collect()
            gc.freeze()
        profiler = cProfile.Profile() if profile else None
        started = time.process_time()
        if profiler:
            profiler.enable()
        if stages_only:
            seconds, summary = asyncio.run(drain_stages(rt, batches))  # the loop's own thread CPU
        else:
            summary = asyncio.run(drain(rt, batches))
            seconds = time.process_time() - started
        if profiler:
            profiler.disable()
            profiler.dump_stats(profile)
        return seconds, count, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--triggers", action="store_true", help="the worker's trigger definitions (default: none)")
    parser.add_argument("--profile", type=Path, help="write a cProfile of the last repeat here")
    parser.add_argument("--workload", type=Path, help="cache of the generated messages (read if it exists)")
    parser.add_argument(
        "--stages-only",
        action="store_true",
        help="the stages without the runtime loop, an hour behind (the same work in every run; thread CPU)",
    )
    parser.add_argument(
        "--python-gc", action="store_true", help="Python's default GC thresholds, nothing frozen (not the worker's)"
    )
    args = parser.parse_args()
    if not args.python_gc:
        gc.set_threshold(*GC_THRESHOLDS)
    results = []
    for repeat in range(args.repeats):
        profile = args.profile if repeat == args.repeats - 1 else None
        seconds, count, summary = one_run(
            args.events,
            args.seed,
            triggers=args.triggers,
            profile=profile,
            cache=args.workload,
            stages_only=args.stages_only,
            worker_gc=not args.python_gc,
        )
        results.append(seconds / count)
        print(f"repeat {repeat + 1}: {count} events, {seconds:.2f} CPU-s, {seconds / count * 1e6:.1f} µs/event")
    print("left:", ", ".join(f"{name} {value}" for name, value in sorted(summary.items())))
    best = min(results)
    print(f"best: {best * 1e6:.1f} µs/event = {1 / best:,.0f} events per CPU-second")


if __name__ == "__main__":
    main()
