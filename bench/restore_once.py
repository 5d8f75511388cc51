"""One cold restore for ``restore_bench.py``, in a process of its own so that its peak RSS and CPU seconds
are the restore's. Run with ``PYTHONPATH=<tree>``: it imports ``streams`` from that tree (the "before" or
"after" code), and nothing from the bench's own checkout::

    PYTHONPATH=TREE python bench/restore_once.py BOOTSTRAP TOPIC PARTITIONS DATA_DIR [--verify]

The restore runs under the worker's garbage-collector setting (``streams.worker``: ``gc.freeze`` and
``GC_THRESHOLDS``, set before the runtime starts). Prints one JSON line: seconds, CPU seconds, records
restored, records/s, peak RSS (``VmHWM``), each partition's stored changelog offset, and with
``--verify`` the check of the stores against the changelog (same keys and values as its last record per
key, tombstones deleted; offset of its last record).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import resource
import sys
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from streams import recovery
from streams.settings import Settings
from streams.state_store import StoreOptions

OFFSET_KEY = b"\xff changelog offset"  # streams.state_store's


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def collect_garbage_as_the_worker() -> None:
    """The worker's garbage-collector setting (``streams.worker.serve``), where it has one."""
    from streams import worker

    gc.freeze()
    gc.set_threshold(*getattr(worker, "GC_THRESHOLDS", gc.get_threshold()))


def make_consumer(args: argparse.Namespace, settings: Settings):
    factory = getattr(recovery, "restore_consumer", None)
    if factory is not None:
        return factory(settings, client_id="restore-bench")
    # The trees before ``recovery.restore_consumer``: the aiokafka restore consumer streams/worker.py built.
    return AIOKafkaConsumer(
        bootstrap_servers=args.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        client_id="restore-bench",
        max_partition_fetch_bytes=8 * 1024 * 1024,
        isolation_level="read_committed",
    )


async def restore(args: argparse.Namespace, settings: Settings) -> dict:
    consumer = make_consumer(args, settings)
    options = StoreOptions(
        block_cache_bytes=settings.rocksdb_block_cache_bytes,
        write_buffer_bytes=settings.rocksdb_write_buffer_bytes,
        cache_bytes=settings.state_cache_bytes,
    )
    store_recovery = recovery.StoreRecovery(
        consumer, changelog_topic=args.topic, data_dir=settings.data_dir, options=options
    )
    await consumer.start()
    try:
        cpu_before = cpu_seconds()
        began = time.perf_counter()
        stores, restored = await store_recovery.open_stores(range(args.partitions))
        seconds = time.perf_counter() - began
        cpu = cpu_seconds() - cpu_before
        offsets = {store.partition: store.changelog_offset for store in stores.values()}
        scan = scan_after_restore(stores.values())
        for store in stores.values():
            store.close()
    finally:
        await consumer.stop()
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "restored_records": restored,
        "records_per_s": restored / seconds,
        "peak_rss_bytes": peak_rss_bytes(),
        "changelog_offsets": offsets,
        "after_restore": scan,
    }


def scan_after_restore(stores) -> dict:
    """What the runtime does with every newly assigned store after its restore, timed: the wake-up index
    rebuilt from the WAKE_UPS table, and every profile read (decoded) to re-check it against the current
    segment definitions (``agents.clock``) — not part of the restore's own seconds above."""
    from agents.clock import rebuild_due_index
    from agents.tables import PROFILES

    began = time.perf_counter()
    for store in stores:
        rebuild_due_index(store)
    index_s = time.perf_counter() - began
    began = time.perf_counter()
    profiles = sum(1 for store in stores for _ in store.items(PROFILES))
    return {"rebuild_index_s": index_s, "profiles": profiles, "read_every_profile_s": time.perf_counter() - began}


async def verify(args: argparse.Namespace, settings: Settings) -> dict:
    """The restored stores against the changelog: same keys, same values, offset of the last record."""
    import rocksdict

    consumer = AIOKafkaConsumer(
        bootstrap_servers=args.bootstrap, group_id=None, enable_auto_commit=False, isolation_level="read_committed"
    )
    await consumer.start()
    checked = {}
    try:
        for partition in range(args.partitions):
            tp = TopicPartition(args.topic, partition)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            end = (await consumer.end_offsets([tp]))[tp]
            expected: dict[bytes, bytes | None] = {}
            last_offset = -1
            while await consumer.position(tp) < end:
                for record in (await consumer.getmany(tp, timeout_ms=1000)).get(tp, []):
                    expected[record.key] = record.value
                    last_offset = record.offset
            path = settings.data_dir / "state" / f"partition-{partition}"
            db = rocksdict.Rdict(str(path), rocksdict.Options(raw_mode=True))
            try:
                stored = dict(db.items())
            finally:
                db.close()
            offset = int(stored.pop(OFFSET_KEY))
            live = {key: value for key, value in expected.items() if value is not None}
            if stored != live or offset != last_offset:
                message = (
                    f"partition {partition}: store has {len(stored)} keys, changelog {len(live)} live; "
                    f"equal={stored == live}; stored offset {offset}, last record {last_offset}"
                )
                raise AssertionError(message)
            checked[partition] = {"keys": len(live), "tombstoned": len(expected) - len(live), "offset": offset}
    finally:
        await consumer.stop()
    return checked


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bootstrap")
    parser.add_argument("topic")
    parser.add_argument("partitions", type=int)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--verify", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    settings = Settings(broker_url=f"kafka://{args.bootstrap}", data_dir=args.data_dir)
    collect_garbage_as_the_worker()
    result = asyncio.run(restore(args, settings))
    if args.verify:
        result["verified"] = asyncio.run(verify(args, settings))
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
