"""The passthrough ceiling: a plain aiokafka consume → produce → commit loop over the inbound topics.

It does what the cheapest possible one-hop stream processor in Python would do with the same backlog:
consume every record of the inbound topics (one consumer, one consumer group, from the earliest offset),
produce each one unchanged — same key, same bytes — to a scratch topic, wait until the broker
acknowledged the whole batch (``acks=all``, as the worker's producer), then commit the batch's offsets.
No decoding, no state. Its rate is what Kafka plus one Python process can move on this machine, so the
pipeline's rate divided by it says how much of the ceiling the pipeline reaches.

Importable (``run_passthrough``, ``steady_rate``, also used by ``bench/pipeline_bench.py``) and
runnable alone against a broker that already holds the events::

    .venv/bin/python bench/passthrough.py --bootstrap 127.0.0.1:9092 --prefix '' --events 100000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field

log = logging.getLogger("bench.passthrough")

INBOUND_FAMILIES = ("clickstream", "purchase", "messaging", "customer")  # as streams.topics.INBOUND_FAMILIES


@dataclass
class PassthroughResult:
    """What one passthrough run moved and how fast; times are seconds, rates events per second."""

    events: int
    bytes: int
    startup_s: float  # consumer start → first record (group join, metadata, first fetch)
    seconds: float  # first record → last batch delivered and committed
    rate: float  # events / seconds
    sustained_rate: float  # between 10 % and 90 % of the events, as for the pipeline
    batches: int
    samples: list[tuple[float, int]] = field(default_factory=list, repr=False)  # (s since first record, done)


def steady_rate(samples: list[tuple[float, int]], total: int, low: float = 0.1, high: float = 0.9) -> float:
    """Events/s between the moments ``low·total`` and ``high·total`` events were done (linear interpolation).

    ``samples`` are (time, cumulative count) pairs in time order. Excluding the first and last tenth
    leaves out warm-up (group join, table recovery, JIT-less Python caches) and the drain's tail.
    Returns 0.0 when the samples never reach ``high·total``.
    """

    def crossing(target: float) -> float | None:
        previous = None
        for moment, count in samples:
            if count >= target:
                if previous is None or count == previous[1]:
                    return moment
                t0, c0 = previous
                return t0 + (moment - t0) * (target - c0) / (count - c0)
            previous = (moment, count)
        return None

    start, end = crossing(low * total), crossing(high * total)
    if start is None or end is None or end <= start:
        return 0.0
    return (high - low) * total / (end - start)


async def run_passthrough(
    bootstrap: str,
    topics: tuple[str, ...],
    out_topic: str,
    expected: int,
    *,
    group_id: str | None = None,
    timeout_s: float = 600.0,
    max_records: int = 10_000,
) -> PassthroughResult:
    """Consume ``expected`` records of ``topics``, produce each to ``out_topic``, commit per batch."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=group_id or f"bench-passthrough-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
        isolation_level="read_committed",  # as the worker reads
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=256 * 1024)
    began = time.monotonic()
    deadline = began + timeout_s
    await producer.start()
    await consumer.start()
    done = moved_bytes = batches = 0
    first: float | None = None
    samples: list[tuple[float, int]] = []
    try:
        while done < expected:
            if time.monotonic() > deadline:
                message = f"passthrough moved only {done} of {expected} events within {timeout_s:.0f} s"
                raise TimeoutError(message)
            fetched = await consumer.getmany(timeout_ms=500, max_records=max_records)
            if not fetched:
                continue
            if first is None:
                first = time.monotonic()
                samples.append((0.0, 0))
            deliveries = []
            for records in fetched.values():
                for record in records:
                    deliveries.append(await producer.send(out_topic, value=record.value, key=record.key))
                    moved_bytes += len(record.value or b"")
            await asyncio.gather(*deliveries)
            await consumer.commit()
            done += len(deliveries)
            batches += 1
            samples.append((time.monotonic() - first, done))
    finally:
        await consumer.stop()
        await producer.stop()
    seconds = samples[-1][0] if samples else 0.0
    return PassthroughResult(
        events=done,
        bytes=moved_bytes,
        startup_s=(first or began) - began,
        seconds=seconds,
        rate=done / seconds if seconds > 0 else 0.0,
        sustained_rate=steady_rate(samples, done),
        batches=batches,
        samples=samples,
    )


def ensure_topic(bootstrap: str, name: str, partitions: int) -> None:
    """Create the scratch topic if it is missing (the project's broker does not auto-create topics)."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench-passthrough")
    try:
        if name not in set(admin.list_topics()):
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics([NewTopic(name=name, num_partitions=partitions, replication_factor=1)])
    finally:
        admin.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", help="broker host:port (default 127.0.0.1:9092)")
    parser.add_argument("--prefix", default="", help="topic prefix of the inbound topics (STREAMCDP_TOPIC_PREFIX)")
    parser.add_argument("--events", type=int, required=True, help="how many records the inbound topics hold")
    parser.add_argument("--partitions", type=int, default=4, help="partitions of the scratch topic if created")
    parser.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    topics = tuple(f"{args.prefix}events.{family}" for family in INBOUND_FAMILIES)
    out_topic = f"{args.prefix}bench.passthrough"
    ensure_topic(args.bootstrap, out_topic, args.partitions)
    result = asyncio.run(run_passthrough(args.bootstrap, topics, out_topic, args.events, timeout_s=args.timeout))
    document = asdict(result)
    document.pop("samples")
    sys.stdout.write(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
