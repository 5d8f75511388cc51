"""Cold restore of the profile stage's state from its changelog, alone (issue 15, item 3)::

    .venv/bin/python bench/restore_bench.py [--records 1000000] [--runs 3] [--before REV]
    .venv/bin/python bench/restore_bench.py --compacted   # only the last record per key, as compaction leaves it

What it measures: ``streams.recovery.StoreRecovery.open_stores`` of every partition onto an empty data
dir, in a process of its own (so its peak RSS — ``VmHWM`` — and CPU seconds are the restore's), from a
changelog topic of ``--records`` records. No group join, no worker start: ``state_bench.py`` measures
those.

Where the records come from: the worker's own changelog. A seed of ``--seed-profiles`` customers
(``state_bench.py``'s three events each: identify, Product Viewed, Order Completed, sent in three
rounds, each drained and checkpointed before the next) is processed by one ``streamcdp worker``; its
changelog (every table: profiles, identities, wake-ups, segment sizes, trigger stats, with the worker's
successive updates of a key, as uncompacted) is read back and copied, partition by partition and in
order, into a fresh changelog topic (the project's topic config, ``streams.topics.ensure_topics``) until
it holds ``--records``. Copy j of a per-customer key gets the suffix ``#j``; the per-partition counters
(segment sizes, trigger stats) keep their key, so they are updated over and over as in a real
changelog. The values are the real encoded bytes.

The broker does not clean that topic during the runs (``cleanup.policy=delete``, no retention limit),
so every run reads the same records; ``--compacted`` copies what compaction leaves of the seed instead.

Each restore is followed (not timed with it) by what the runtime does with newly assigned stores: the
wake-up index rebuilt and every profile read (``after_restore`` in the JSON). ``--warm-restarts`` restarts
the seed worker with its disk kept and splits the time to ``/readyz``: process start to ``/healthz``, the
assignment callback (logged by ``streams.runtime``), and the rest (clients started, group joined); with
``--before`` the restarts alternate between the two trees' code (same disk, same broker), and each
records the CPU seconds the supervisor and its child had used when ready. ``--runs 0``: the warm
restarts only.

Runs alternate between the trees (``--before REV``: ``git archive`` of that revision; "after": this
checkout's snapshot), each onto a new empty data dir. One "after" run is checked afterwards (not timed):
the store holds exactly the changelog's last value per key (tombstones delete) and each partition's
stored changelog offset is that of its last record.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import os
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
from fleet import REPO, Fleet, FleetRun, add_run_arguments, bench_main, drain, make_deployment
from pipeline_bench import GroupLag, _route, disk_usage, load_backlog
from state_bench import EVENTS_PER_PROFILE, customer_events

from streams import kafka_local

log = logging.getLogger("bench.restore")

SHARED_KEY_TAGS = (b"s", b"t")  # segment sizes, trigger stats: per-partition counters, not per customer
PRODUCE_BATCH_BYTES = 1024 * 1024
CHILD = Path(__file__).resolve().with_name("restore_once.py")


@dataclass
class Run(FleetRun):
    """Everything the run started (``FleetRun``)."""


# --- the changelog -----------------------------------------------------------------------------------------


def seed_changelog(
    args: argparse.Namespace, run: Run, trees: dict[str, Path]
) -> tuple[dict[int, list[tuple[bytes, bytes | None]]], dict]:
    """The changelog one worker writes for ``--seed-profiles`` customers, read back per partition.

    The customers' events arrive in rounds (every customer's first event, then every second one, …), each
    drained and checkpointed before the next: the changelog then holds each key's successive values, as
    one written while customers come back over time does, not only the last one."""
    deployment = make_deployment(run.broker, run.run_dir, args.partitions, extra={"log_level": "info"})
    bootstrap = run.broker.broker_bootstrap
    topics = deployment.topics
    fleet = Fleet(deployment, 1, run.run_dir / "seed-worker.log", cwd=run.run_dir / "src")
    run.fleets.append(fleet)
    now = time.time()
    span = 2 * 86400.0 - 300.0
    loaded = 0
    for round_index in range(EVENTS_PER_PROFILE):
        messages = []
        for index in range(args.seed_profiles):
            payload = customer_events(index, now - 2 * 86400.0 + span * index / args.seed_profiles)[round_index]
            messages.append(_route(topics, payload, orjson.dumps(payload)))
        asyncio.run(load_backlog(bootstrap, messages, args.partitions))
        loaded += len(messages)
        if round_index == 0:
            drain(fleet, loaded, kafka_local.running_pid(run.broker), bootstrap, timeout_s=300.0 + loaded / 50.0)
        else:
            wait_drained(fleet, bootstrap, loaded, timeout_s=300.0 + len(messages) / 50.0)
    fleet.stop()
    warm: dict[str, list[dict]] = {name: [] for name in trees}
    for _ in range(args.warm_restarts):
        for name, tree in trees.items():  # alternated: the same disk, the same broker, each tree's code
            fleet.cwd = tree
            warm[name].append(warm_restart(fleet))
    fleet.cwd = trees["after"]
    changelog = topics.state_changelog(deployment.app_id)
    records = asyncio.run(read_topic(bootstrap, changelog, args.partitions))
    count = sum(len(part) for part in records.values())
    log.info("seed: %d profiles, %d events → %d changelog records", args.seed_profiles, loaded, count)
    seed = {"profiles": args.seed_profiles, "events": loaded, "changelog_records": count, "warm": warm}
    seed["warm_summary"] = {
        name: {
            "median_ready_s": statistics.median(r["ready_s"] for r in done),
            "median_web_up_s": statistics.median(r["web_up_s"] for r in done),
            "median_cpu_s_to_ready": statistics.median(r["cpu_s_to_ready"] for r in done),
        }
        for name, done in warm.items()
        if done
    }
    return records, seed


ASSIGNED = re.compile(r"partitions assigned: .*; (\d+) new, (\d+) changelog records restored in ([0-9.]+) s")


def warm_restart(fleet: Fleet) -> dict:
    """Start ``fleet`` again with its disk kept: seconds to ``/healthz`` (process start, imports, web
    server), the assignment callback's own seconds (``streams.runtime`` logs them: stores opened, tails
    restored, wake-up index rebuilt, profiles re-checked), the rest of the way to ``/readyz`` (clients
    started, group joined and synced), and the stop; the CPU seconds the supervisor and its child had
    used when ready, and the machine's load average then (the wall seconds depend on it, the CPU seconds
    much less)."""
    logged = fleet.log_path.stat().st_size
    fleet.start()
    ready_s = fleet.wait_ready(120.0)
    cpu_s = fleet.cpu_seconds()
    web_up_s = fleet.web_up_s if fleet.web_up_s is not None else ready_s
    with fleet.log_path.open("rb") as log_file:
        log_file.seek(logged)
        found = ASSIGNED.findall(log_file.read().decode(errors="replace"))
    callback_s = float(found[-1][2]) if found else float("nan")
    result = {
        "ready_s": ready_s,
        "web_up_s": web_up_s,
        "assignment_callback_s": callback_s,
        "clients_and_group_join_s": ready_s - web_up_s - callback_s,
        "restored_records": int(found[-1][1]) if found else None,
        "cpu_s_to_ready": cpu_s,
        "load_average_1m": os.getloadavg()[0],
        "stop_s": fleet.stop(),
    }
    log.info("warm restart: %s", {key: round(value, 2) for key, value in result.items() if value is not None})
    return result


def wait_drained(fleet: Fleet, bootstrap: str, target: int, *, timeout_s: float) -> None:
    """Until the running ``fleet`` has processed ``target`` events and committed its inputs to their end."""
    topics = fleet.deployment.topics
    group_lag = GroupLag(bootstrap, fleet.deployment.app_id, (*topics.all_inbound, topics.profile_commands))
    deadline = time.monotonic() + timeout_s
    try:
        while not ((fleet.processed() or 0) >= target and group_lag.lag() == 0):
            fleet.check_alive()
            if time.monotonic() > deadline:
                message = f"the seed worker did not process {target} events within {timeout_s:.0f} s"
                raise TimeoutError(message)
            time.sleep(0.5)
    finally:
        group_lag.close()


def hold_still(bootstrap: str, topic: str) -> None:
    """No log cleaning of ``topic`` during the runs: the broker would compact it between them (its segments
    roll at 64 MiB), and each run would read a different number of records."""
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="restore-bench")
    try:
        unclean = {"cleanup.policy": "delete", "retention.ms": "-1"}
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs=unclean)])
    finally:
        admin.close()


async def read_topic(bootstrap: str, topic: str, partitions: int) -> dict[int, list[tuple[bytes, bytes | None]]]:
    """Every committed record of ``topic``, per partition, in offset order."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, isolation_level="read_committed"
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        records: dict[int, list[tuple[bytes, bytes | None]]] = {p: [] for p in range(partitions)}
        while any([await consumer.position(tp) < ends[tp] for tp in tps]):
            for tp, batch in (await consumer.getmany(timeout_ms=1000)).items():
                records[tp.partition].extend((r.key, r.value) for r in batch)
    finally:
        await consumer.stop()
    return records


def last_value_per_key(records: list[tuple[bytes, bytes | None]]) -> list[tuple[bytes, bytes | None]]:
    """What compaction leaves of ``records`` (tombstones kept): the last record of each key, in order."""
    last: dict[bytes, bytes | None] = {}
    for key, value in records:
        last.pop(key, None)
        last[key] = value
    return list(last.items())


def copies(seed: list[tuple[bytes, bytes | None]], count: int):
    """``count`` records: ``seed`` over and over, per-customer keys of copy j suffixed ``#j``."""
    made, copy = 0, 0
    while made < count:
        suffix = f"#{copy}".encode()
        for key, value in seed:
            yield (key if key[:1] in SHARED_KEY_TAGS else key + suffix), value
            made += 1
            if made == count:
                return
        copy += 1


async def fill_changelog(bootstrap: str, topic: str, parts: dict[int, list[tuple[bytes, bytes | None]]], total: int):
    """Write ``total`` records to ``topic``, each partition's share made from the seed's same partition."""
    from aiokafka import AIOKafkaProducer

    seeded = sum(len(seed) for seed in parts.values())
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        max_batch_size=PRODUCE_BATCH_BYTES,
        max_request_size=8 * PRODUCE_BATCH_BYTES,
    )
    await producer.start()
    written = {}
    try:
        for partition, seed in parts.items():
            share = round(total * len(seed) / seeded)
            pending = []
            batch = producer.create_batch()
            for key, value in copies(seed, share):
                if batch.append(key=key, value=value, timestamp=None) is None:
                    pending.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None)
                if len(pending) >= 32:
                    await asyncio.gather(*pending)
                    pending.clear()
            pending.append(await producer.send_batch(batch, topic, partition=partition))
            await asyncio.gather(*pending)
            written[partition] = share
    finally:
        await producer.stop()
    return written


# --- the parent ---------------------------------------------------------------------------------------------


def tree_of(revision: str, target: Path) -> Path:
    """The repository's files at ``revision`` (``git archive``), unpacked to ``target``."""
    archive = subprocess.run(["git", "archive", revision], cwd=REPO, check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return target


def restore_once(args: argparse.Namespace, run: Run, tree: Path, topic: str, index: int, *, verify: bool) -> dict:
    """One cold restore by ``restore_once.py`` with ``tree``'s code, onto a new empty data dir."""
    data_dir = run.run_dir / f"restore-{index}"
    command = [sys.executable, str(CHILD), run.broker.broker_bootstrap, topic, str(args.partitions), str(data_dir)]
    if verify:
        command.append("--verify")
    if args.py_spy:
        profile = Path(args.out).with_name(f"restore-profile-{index}.txt")
        command = [
            str(Path(sys.executable).with_name("py-spy")),
            "record",
            "-r",
            "100",
            "-f",
            "raw",
            "-o",
            str(profile),
            "--",
            *command,
        ]
    env = {key: value for key, value in os.environ.items() if not key.startswith("STREAMCDP_")}
    env["PYTHONPATH"] = str(tree)
    done = subprocess.run(command, check=False, capture_output=True, text=True, env=env, cwd=tree)
    # py-spy may exit non-zero after writing its profile (ECHILD when its child is gone), and prints its own
    # lines after the child's: the child's JSON line counts.
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        message = f"the restore exited with {done.returncode}:\n{done.stderr[-3000:]}"
        raise RuntimeError(message)
    result = json.loads(lines[-1])
    result["state_bytes_on_disk"] = disk_usage(data_dir)["bytes_on_disk"]
    shutil.rmtree(data_dir, ignore_errors=True)
    return result


def run_benchmark(args: argparse.Namespace, run: Run) -> dict:
    results = run.results
    run.start(args.partitions, args.kafka_heap)
    bootstrap = run.broker.broker_bootstrap
    trees = {"after": run.run_dir / "src"}
    if args.before:
        trees = {"before": tree_of(args.before, run.run_dir / "before"), **trees}
    seed, results["seed"] = seed_changelog(args, run, trees)
    results["config"] = {
        "records": args.records,
        "partitions": args.partitions,
        "seed_profiles": args.seed_profiles,
        "events_per_profile": EVENTS_PER_PROFILE,
        "before": args.before,
        "runs": args.runs,
        "warm_restarts": args.warm_restarts,
    }
    if args.runs == 0:  # warm restarts only
        return results
    if args.compacted:
        seed = {partition: last_value_per_key(records) for partition, records in seed.items()}
    records_per_profile = sum(len(part) for part in seed.values()) / args.seed_profiles
    target = make_deployment(run.broker, run.run_dir, args.partitions)
    topic = target.topics.state_changelog(target.app_id)
    hold_still(bootstrap, topic)
    began = time.perf_counter()
    written = asyncio.run(fill_changelog(bootstrap, topic, seed, args.records))
    results["changelog"] = {
        "topic": topic,
        "records": sum(written.values()),
        "per_partition": written,
        "compacted": args.compacted,
        "records_per_profile": records_per_profile,
        "profiles_equivalent": sum(written.values()) / records_per_profile,
        "fill_seconds": time.perf_counter() - began,
    }
    log.info(
        "changelog: %d records (≈ %d profiles)", sum(written.values()), sum(written.values()) / records_per_profile
    )
    runs: dict[str, list[dict]] = {name: [] for name in trees}
    index = 0
    for round_number in range(args.runs):
        for name, tree in trees.items():
            check = name == "after" and round_number == 0 and not args.py_spy
            result = restore_once(args, run, tree, topic, index, verify=check)
            result["profiles_per_s"] = result["records_per_s"] / records_per_profile
            runs[name].append(result)
            index += 1
            log.info(
                "%s run %d: %.1f s, %.0f records/s, %.1f CPU-s, peak RSS %.0f MiB",
                name,
                round_number + 1,
                result["seconds"],
                result["records_per_s"],
                result["cpu_seconds"],
                result["peak_rss_bytes"] / 2**20,
            )
    results["runs"] = runs
    results["summary"] = {
        name: {
            "median_records_per_s": statistics.median(r["records_per_s"] for r in done),
            "median_profiles_per_s": statistics.median(r["profiles_per_s"] for r in done),
            "median_seconds": statistics.median(r["seconds"] for r in done),
            "median_cpu_seconds": statistics.median(r["cpu_seconds"] for r in done),
            "max_peak_rss_bytes": max(r["peak_rss_bytes"] for r in done),
            "projected_seconds_1m_profiles": 1_000_000
            * records_per_profile
            / statistics.median(r["records_per_s"] for r in done),
        }
        for name, done in runs.items()
    }
    return results


def align(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in rows)


def table(results: dict) -> str:
    tables = []
    if "summary" in results:
        rows = [("tree", "records", "median s", "records/s", "profiles/s", "CPU-s", "peak RSS", "1M profiles")]
        records = results["changelog"]["records"]
        for name, s in results["summary"].items():
            rows.append(
                (
                    name,
                    f"{records:,}",
                    f"{s['median_seconds']:.1f}",
                    f"{s['median_records_per_s']:,.0f}",
                    f"{s['median_profiles_per_s']:,.0f}",
                    f"{s['median_cpu_seconds']:.1f}",
                    f"{s['max_peak_rss_bytes'] / 2**20:,.0f} MiB",
                    f"{s['projected_seconds_1m_profiles']:,.0f} s",
                )
            )
        tables.append(align(rows))
    if results["seed"]["warm_summary"]:
        rows = [("warm restart", "ready s (median)", "/healthz s", "CPU-s to ready", "ready s, each")]
        for name, s in results["seed"]["warm_summary"].items():
            each = ", ".join(f"{r['ready_s']:.2f}" for r in results["seed"]["warm"][name])
            rows.append(
                (
                    name,
                    f"{s['median_ready_s']:.2f}",
                    f"{s['median_web_up_s']:.2f}",
                    f"{s['median_cpu_s_to_ready']:.2f}",
                    each,
                )
            )
        tables.append(align(rows))
    return "\n\n".join(tables)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000, help="changelog records to restore")
    parser.add_argument("--compacted", action="store_true", help="copy only the seed's last record per key")
    parser.add_argument("--seed-profiles", type=int, default=2_000, help="customers the seed worker processes")
    parser.add_argument(
        "--warm-restarts", type=int, default=3, help="restarts of the seed worker, disk kept, per tree, alternated"
    )
    parser.add_argument("--runs", type=int, default=3, help="restores per tree, alternated (0: warm restarts only)")
    parser.add_argument("--before", help="git revision to compare with (its restore, same changelog)")
    parser.add_argument("--py-spy", action="store_true", help="record each restore with py-spy (speedscope)")
    add_run_arguments(parser, "restore")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    return bench_main(parse_args(argv), "restore", lambda run_dir: Run(run_dir=run_dir), run_benchmark, table)


if __name__ == "__main__":
    sys.exit(main())
