"""HTTP collector benchmark (issue 13): events/s through ``streamcdp collect`` into Kafka, batches of 100.

Steps: start a private Kafka broker (``streams.kafka_local``, free ports, temp run dir) unless
``--bootstrap`` names one; generate seeded valid events (``offline.generator``, 30 days ending now);

1. **Baseline**: ``streamcdp produce`` sends them from a JSONL file (its own summary line gives events/s).
2. **Throughput**: one ``streamcdp collect`` process; this process posts the same events as
   ``/v1/batch`` bodies of ``--batch`` events (serialised beforehand, Basic auth) with ``--concurrency``
   requests in flight; events/s = events acknowledged (200) / wall time. The collector's CPU seconds
   (``/proc/<pid>/stat``) give events per CPU-second too, since this machine's cores are shared. The
   records on the inbound topics are counted afterwards: every acknowledged event must be there.
3. **Latency**: batches paced at half the measured throughput, one request per slot; p50/p99/max of the
   call (request sent → 200 read).

Everything started here is stopped by pid in ``finally``; on a shared broker (``--bootstrap``) the run's topics
are deleted at the end. Prints a table and writes ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import orjson  # noqa: E402

from offline.generator import WorkloadConfig, generate_workload  # noqa: E402
from schemas.errors import InvalidEvent  # noqa: E402
from schemas.topics import TopicNames  # noqa: E402
from schemas.validation import decode_event  # noqa: E402
from streams import kafka_local  # noqa: E402
from streams.settings import Settings  # noqa: E402
from streams.topics import ensure_topics  # noqa: E402

WRITE_KEY = "bench-key"


def valid_events(count: int, seed: int) -> list[bytes]:
    now = time.time()
    workload = generate_workload(
        WorkloadConfig(start=now - 30 * 86400, customers=max(50, count // 85), days=29.0, seed=seed)
    )
    lines = []
    for line in workload.lines:
        try:
            decode_event(line, now=now)
        except InvalidEvent:
            continue
        lines.append(line)
        if len(lines) == count:
            break
    return lines


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def inbound_records(bootstrap: str, topics: TopicNames) -> int:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed")
    try:
        partitions = [
            TopicPartition(topic, p) for topic in topics.all_inbound for p in consumer.partitions_for_topic(topic) or ()
        ]
        return sum(consumer.end_offsets(partitions).values())
    finally:
        consumer.close()


def delete_topics(bootstrap: str, prefixes: list[str]) -> int:
    """Delete the topics a run created on a shared broker (``--bootstrap``), so that runs do not pile up topics
    (every client's full-metadata request grows with them). Returns how many were deleted."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        topics = [topic for topic in admin.list_topics() if topic.startswith(tuple(prefixes))]
        if topics:
            admin.delete_topics(topics)
        return len(topics)
    finally:
        admin.close()


def run_produce(env: dict[str, str], lines: list[bytes], workdir: Path) -> dict:
    path = workdir / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "streams.cli", "produce", "--no-create-topics", str(path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    seconds = time.perf_counter() - started
    summary = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ""
    if result.returncode != 0:
        msg = f"streamcdp produce failed ({result.returncode}): {result.stderr[-2000:]}"
        raise RuntimeError(msg)
    return {"events": len(lines), "summary": summary, "wall_s": seconds, "events_per_s_wall": len(lines) / seconds}


def batch_bodies(lines: list[bytes], size: int) -> list[bytes]:
    return [b'{"batch":[' + b",".join(lines[i : i + size]) + b"]}" for i in range(0, len(lines), size)]


async def post_all(url: str, bodies: list[bytes], concurrency: int) -> tuple[int, int, float]:
    """(requests answered 200, other answers, seconds) posting every body with ``concurrency`` in flight."""
    import aiohttp

    headers = {
        "Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode(),
        "Content-Type": "application/json",
    }
    queue = list(reversed(bodies))
    ok = failed = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def worker() -> None:
            nonlocal ok, failed
            while queue:
                body = queue.pop()
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    if response.status == 200:
                        ok += 1
                    else:
                        failed += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return ok, failed, time.perf_counter() - started


async def paced_latencies(url: str, bodies: list[bytes], requests_per_s: float) -> list[float]:
    """Seconds per call, one request started every 1/``requests_per_s`` s (each on its own task)."""
    import aiohttp

    headers = {"Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()}
    latencies: list[float] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as session:

        async def call(body: bytes) -> None:
            started = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                if response.status == 200:
                    latencies.append(time.perf_counter() - started)

        tasks = []
        began = time.perf_counter()
        for index, body in enumerate(bodies):
            delay = began + index / requests_per_s - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(call(body)))
        await asyncio.gather(*tasks)
    return latencies


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def wait_ready(port: int, proc: subprocess.Popen, timeout_s: float = 60.0) -> None:
    from streams.http_probe import http_get

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            msg = f"collector exited with {proc.returncode}"
            raise RuntimeError(msg)
        if http_get(f"http://127.0.0.1:{port}/readyz")[0] == 200:
            return
        time.sleep(0.2)
    msg = "collector not ready in time"
    raise RuntimeError(msg)


def run(args: argparse.Namespace, workdir: Path) -> dict:
    # The cores are shared: the load says how much of them this run had (events per CPU-second says it too).
    results: dict = {
        "config": vars(args).copy(),
        "machine": {"cpus": os.cpu_count(), "loadavg_before": os.getloadavg()},
    }
    broker: Settings | None = None
    collector: subprocess.Popen | None = None
    prefixes: list[str] = []
    try:
        if args.bootstrap:
            bootstrap = args.bootstrap
        else:
            port = kafka_local.free_port()
            broker = Settings(
                broker_url=f"kafka://127.0.0.1:{port}",
                kafka_port=port,
                kafka_controller_port=kafka_local.free_port(),
                kafka_run_dir=workdir / "kafka",
                kafka_home=REPO / ".cache" / "kafka",
                kafka_heap=args.kafka_heap,
            )
            kafka_local.start(broker)
            bootstrap = f"127.0.0.1:{port}"
        lines = valid_events(args.events, args.seed)
        results["events"] = len(lines)
        env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMCDP_")}
        base = {
            "STREAMCDP_BROKER_URL": f"kafka://{bootstrap}",
            "STREAMCDP_TOPIC_PARTITIONS": str(args.partitions),
            "STREAMCDP_WRITE_KEYS": WRITE_KEY,
            "STREAMCDP_LOG_LEVEL": "warning",
        }

        # 1. Baseline: streamcdp produce from a file, into its own topics.
        produce_prefix = f"benchp{uuid.uuid4().hex[:6]}."
        prefixes.append(produce_prefix)
        produce_env = {**env, **base, "STREAMCDP_TOPIC_PREFIX": produce_prefix}
        ensure_topics(
            Settings(broker_url=f"kafka://{bootstrap}", topic_prefix=produce_prefix, topic_partitions=args.partitions)
        )
        results["produce"] = run_produce(produce_env, lines, workdir)

        # 2. Throughput through one collector process.
        prefix = f"benchc{uuid.uuid4().hex[:6]}."
        prefixes.append(prefix)
        port = kafka_local.free_port()
        collector_env = {**env, **base, "STREAMCDP_TOPIC_PREFIX": prefix, "STREAMCDP_COLLECTOR_PORT": str(port)}
        with (workdir / "collector.log").open("ab") as log:
            collector = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "collect"],
                cwd=REPO,
                env=collector_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_ready(port, collector)
        url = f"http://127.0.0.1:{port}/v1/batch"
        bodies = batch_bodies(lines, args.batch)
        asyncio.run(post_all(url, bodies[: max(1, len(bodies) // 20)], args.concurrency))  # warm-up
        warm = inbound_records(bootstrap, TopicNames(prefix))
        cpu_before = cpu_seconds(collector.pid)
        ok, failed, seconds = asyncio.run(post_all(url, bodies, args.concurrency))
        cpu = cpu_seconds(collector.pid) - cpu_before
        stored = inbound_records(bootstrap, TopicNames(prefix)) - warm
        acknowledged = sum(len(orjson.loads(body)["batch"]) for body in bodies) if failed == 0 else None
        results["collector"] = {
            "requests_ok": ok,
            "requests_failed": failed,
            "seconds": seconds,
            "events_per_s": len(lines) * ok / len(bodies) / seconds,
            "collector_cpu_s": cpu,
            "events_per_collector_cpu_s": len(lines) * ok / len(bodies) / cpu if cpu else None,
            "records_stored": stored,
            "all_acknowledged_stored": acknowledged is not None and stored == acknowledged,
        }

        # 3. Latency of a batch call at half that rate.
        rate = results["collector"]["events_per_s"] / 2
        requests_per_s = rate / args.batch
        count = max(20, min(len(bodies), int(requests_per_s * args.latency_seconds)))
        latencies = asyncio.run(paced_latencies(url, (bodies * (count // len(bodies) + 1))[:count], requests_per_s))
        results["latency_at_half_rate"] = {
            "events_per_s": rate,
            "requests": count,
            "answered_200": len(latencies),
            "p50_ms": quantile(latencies, 0.50) * 1000,
            "p99_ms": quantile(latencies, 0.99) * 1000,
            "max_ms": max(latencies) * 1000 if latencies else None,
        }
    finally:
        if collector is not None and collector.poll() is None:
            collector.send_signal(signal.SIGTERM)
            try:
                collector.wait(timeout=30)
            except subprocess.TimeoutExpired:
                collector.kill()
                collector.wait(timeout=10)
        if broker is not None:
            kafka_local.stop(broker)
        elif prefixes:
            results["topics_deleted"] = delete_topics(bootstrap, prefixes)
    results["machine"]["loadavg_after"] = os.getloadavg()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000, help="events sent (default 200,000)")
    parser.add_argument("--batch", type=int, default=100, help="events per /v1/batch call (default 100)")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight (default 16)")
    parser.add_argument("--partitions", type=int, default=4, help="partitions of every topic (default 4)")
    parser.add_argument("--latency-seconds", type=float, default=20.0, help="length of the paced phase (20 s)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--bootstrap", default="", help="use this broker instead of starting one")
    parser.add_argument("--kafka-heap", default="1g")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "collector.json"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="collector-bench-") as workdir:
        results = run(args, Path(workdir))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    produce, collector, latency = results["produce"], results["collector"], results["latency_at_half_rate"]
    print(f"events                       {results['events']:>12,}")
    print(f"streamcdp produce (file)     {produce['events_per_s_wall']:>12,.0f} events/s   ({produce['summary']})")
    print(f"collector, batches of {args.batch:<4}   {collector['events_per_s']:>12,.0f} events/s")
    if collector["events_per_collector_cpu_s"]:
        print(f"  per collector CPU-second   {collector['events_per_collector_cpu_s']:>12,.0f} events")
    print(f"  stored = acknowledged      {collector['all_acknowledged_stored']!s:>12}")
    print(
        f"batch call at {latency['events_per_s']:,.0f} events/s: p50 {latency['p50_ms']:.1f} ms, "
        f"p99 {latency['p99_ms']:.1f} ms, max {latency['max_ms']:.1f} ms "
        f"({latency['answered_200']}/{latency['requests']} answered 200)"
    )
    machine = results["machine"]
    load_before, load_after = machine["loadavg_before"][0], machine["loadavg_after"][0]
    print(f"machine: {machine['cpus']} CPUs, load average {load_before:.1f} → {load_after:.1f}")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
