"""HTTP collector benchmark (issue 13): events/s through ``streamcdp collect`` into Kafka, batches of 100.

Steps: start a private Kafka broker (``streams.kafka_local``, free ports, temp run dir) unless
``--bootstrap`` names one; generate seeded valid events (``offline.generator``, 30 days ending now);

1. **Baseline**: ``streamcdp produce`` sends them from a JSONL file (its own summary line gives events/s;
   its CPU seconds are those of the child process).
2. **Throughput**: one ``streamcdp collect`` process; a separate *sender* process (this script with
   ``--sender``: raw HTTP/1.1 over keep-alive connections, bodies serialised beforehand, so that the load
   generator costs as little CPU as it can) posts the events as ``/v1/batch`` bodies of ``--batch`` events
   with ``--concurrency`` requests in flight; events/s = events acknowledged (200) / the sender's wall time.
   The CPU seconds of the collector, the broker (when its pid is known) and the sender are measured over
   the phase (``/proc/<pid>/stat``), since this machine's cores are shared. The records on the inbound
   topics are counted afterwards: every acknowledged event must be there.
3. **Latency**: batches paced at half the measured throughput, one request per slot (on an idle keep-alive
   connection, a new one when none is idle); p50/p99/max of the call (request written → 200 read).

``--collector-repo`` runs the collector of another checkout (a "before" tree) with this same load
generator; ``--pin`` puts the collector on one core and the sender on the other; ``--py-spy FILE`` records
the collector with py-spy during the throughput phase. Everything started here is stopped by pid in
``finally``; on a shared broker (``--bootstrap``) the run's topics are deleted at the end. Prints a table and
writes ``--out`` (JSON).
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


def cpu_times(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of process ``pid`` so far (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def cpu_seconds(pid: int) -> float:
    return sum(cpu_times(pid))


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


def broker_cpu(pid: int | None) -> float | None:
    return cpu_seconds(pid) if pid is not None else None


def cpu_delta(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else after - before


def run_produce(env: dict[str, str], lines: list[bytes], workdir: Path, broker_pid: int | None) -> dict:
    path = workdir / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    children_before = os.times()
    broker_before = broker_cpu(broker_pid)
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
    children_after = os.times()
    summary = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ""
    if result.returncode != 0:
        msg = f"streamcdp produce failed ({result.returncode}): {result.stderr[-2000:]}"
        raise RuntimeError(msg)
    cpu = (children_after.children_user + children_after.children_system) - (
        children_before.children_user + children_before.children_system
    )
    return {
        "events": len(lines),
        "summary": summary,
        "wall_s": seconds,
        "events_per_s_wall": len(lines) / seconds,
        "produce_cpu_s": cpu,  # the whole process: interpreter start, reading the file, validation, sending
        "broker_cpu_s": cpu_delta(broker_before, broker_cpu(broker_pid)),
    }


def batch_bodies(lines: list[bytes], size: int) -> list[bytes]:
    return [b'{"batch":[' + b",".join(lines[i : i + size]) + b"]}" for i in range(0, len(lines), size)]


# --- the sender: a separate process posting prepared requests over keep-alive connections ------------------


class Connection:
    """One keep-alive HTTP/1.1 connection: write a prepared request, read the status and the body."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def call(self, request: bytes) -> int:
        """Send ``request`` (head and body), return the answer's status once its body is read."""
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        if length:
            await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        self.writer.close()


def prepared_requests(host: str, port: int, path: str, bodies: list[bytes]) -> list[bytes]:
    auth = base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    return [
        (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Basic {auth}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body
        for body in bodies
    ]


async def send_all(host: str, port: int, requests: list[bytes], concurrency: int) -> dict:
    """Every request posted with ``concurrency`` in flight, one connection each."""
    connections = [await Connection.open(host, port) for _ in range(concurrency)]
    queue = list(reversed(requests))
    counts = {"ok": 0, "failed": 0}

    async def worker(connection: Connection) -> None:
        while queue:
            status = await connection.call(queue.pop())
            counts["ok" if status == 200 else "failed"] += 1

    cpu_started, started = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(connection) for connection in connections))
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    for connection in connections:
        connection.close()
    return {"requests_ok": counts["ok"], "requests_failed": counts["failed"], "seconds": seconds, "sender_cpu_s": cpu}


async def send_paced(host: str, port: int, requests: list[bytes], requests_per_s: float) -> dict:
    """One request started every 1/``requests_per_s`` s on an idle connection (a new one when none is idle);
    the seconds of each call answered 200."""
    idle: list[Connection] = []
    latencies: list[float] = []
    failed = 0

    async def call(request: bytes) -> None:
        nonlocal failed
        connection = idle.pop() if idle else await Connection.open(host, port)
        started = time.perf_counter()
        status = await connection.call(request)
        if status == 200:
            latencies.append(time.perf_counter() - started)
        else:
            failed += 1
        idle.append(connection)

    tasks = []
    cpu_started, began = time.process_time(), time.perf_counter()
    for index, request in enumerate(requests):
        delay = began + index / requests_per_s - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(call(request)))
    await asyncio.gather(*tasks)
    cpu = time.process_time() - cpu_started
    for connection in idle:
        connection.close()
    return {"latencies": latencies, "failed": failed, "connections": len(idle), "sender_cpu_s": cpu}


def sender_main(spec_path: str) -> int:
    """``--sender SPEC``: read the spec (JSON) and the bodies file, send, write the result JSON."""
    spec = json.loads(Path(spec_path).read_text())
    bodies = Path(spec["bodies"]).read_bytes().split(b"\n")[: spec["count"]]
    requests = prepared_requests(spec["host"], spec["port"], spec["path"], bodies)
    if spec["mode"] == "throughput":
        result = asyncio.run(send_all(spec["host"], spec["port"], requests, spec["concurrency"]))
    else:
        result = asyncio.run(send_paced(spec["host"], spec["port"], requests, spec["requests_per_s"]))
    Path(spec["out"]).write_text(json.dumps(result))
    return 0


def run_sender(spec: dict, workdir: Path, cpu: int | None) -> dict:
    """Run the sender process on ``spec`` (pinned to core ``cpu`` when given) and return its result."""
    spec = {**spec, "out": str(workdir / f"sender-{uuid.uuid4().hex[:6]}.json")}
    spec_path = workdir / "sender-spec.json"
    spec_path.write_text(json.dumps(spec))
    command = [sys.executable, str(Path(__file__).resolve()), "--sender", str(spec_path)]
    if cpu is not None:
        command = ["taskset", "-c", str(cpu), *command]
    subprocess.run(command, check=True, timeout=900)
    return json.loads(Path(spec["out"]).read_text())


# --- the run ---------------------------------------------------------------------------------------------------


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


def start_collector(args: argparse.Namespace, env: dict[str, str], workdir: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "streams.cli", "collect"]
    if args.pin:
        command = ["taskset", "-c", str(COLLECTOR_CPU), *command]
    with (workdir / "collector.log").open("ab") as log:
        return subprocess.Popen(
            command,
            cwd=args.collector_repo or REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def record_profile(pid: int, out: str) -> subprocess.Popen:
    """py-spy on the collector (``--py-spy``) until stopped; ``out``'s suffix picks the format."""
    fmt = "speedscope" if out.endswith(".json") else "raw" if out.endswith(".txt") else "flamegraph"
    py_spy = Path(sys.executable).parent / "py-spy"
    return subprocess.Popen(
        [str(py_spy), "record", "--pid", str(pid), "--rate", "200", "--format", fmt, "--output", out, "--nonblocking"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


# The collector on one core and the load generator on the other (``--pin``); the broker and everything
# else on the machine are not pinned.
COLLECTOR_CPU, SENDER_CPU = 1, 0


def run(args: argparse.Namespace, workdir: Path) -> dict:
    # The cores are shared: the load says how much of them this run had (events per CPU-second says it too).
    results: dict = {
        "config": vars(args).copy(),
        "machine": {"cpus": os.cpu_count(), "loadavg_before": os.getloadavg()},
    }
    broker: Settings | None = None
    broker_pid: int | None = args.broker_pid or None
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
            broker_pid = kafka_local.start(broker)
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
        results["produce"] = run_produce(produce_env, lines, workdir, broker_pid)

        # 2. Throughput through one collector process, posted by the sender process.
        prefix = f"benchc{uuid.uuid4().hex[:6]}."
        prefixes.append(prefix)
        port = kafka_local.free_port()
        collector_env = {**env, **base, "STREAMCDP_TOPIC_PREFIX": prefix, "STREAMCDP_COLLECTOR_PORT": str(port)}
        if args.collector_repo:
            collector_env["PYTHONPATH"] = str(args.collector_repo)
        collector = start_collector(args, collector_env, workdir)
        wait_ready(port, collector)
        bodies = batch_bodies(lines, args.batch)
        bodies_file = workdir / "bodies.txt"
        bodies_file.write_bytes(b"\n".join(bodies))
        target = {"host": "127.0.0.1", "port": port, "path": "/v1/batch", "bodies": str(bodies_file)}
        sender_cpu = SENDER_CPU if args.pin else None
        warm_up = {**target, "mode": "throughput", "concurrency": args.concurrency, "count": max(1, len(bodies) // 20)}
        run_sender(warm_up, workdir, sender_cpu)
        warm = inbound_records(bootstrap, TopicNames(prefix))
        profiler = record_profile(collector.pid, args.py_spy) if args.py_spy else None
        (user_before, system_before), broker_before = cpu_times(collector.pid), broker_cpu(broker_pid)
        sent = run_sender({**warm_up, "count": len(bodies)}, workdir, sender_cpu)
        user_after, system_after = cpu_times(collector.pid)
        user, system = user_after - user_before, system_after - system_before
        cpu = user + system
        broker_used = cpu_delta(broker_before, broker_cpu(broker_pid))
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            profiler.wait(timeout=60)
        stored = inbound_records(bootstrap, TopicNames(prefix)) - warm
        ok, failed, seconds = sent["requests_ok"], sent["requests_failed"], sent["seconds"]
        acknowledged = sum(len(orjson.loads(body)["batch"]) for body in bodies) if failed == 0 else None
        events_ok = len(lines) * ok / len(bodies)
        results["collector"] = {
            "requests_ok": ok,
            "requests_failed": failed,
            "seconds": seconds,
            "events_per_s": events_ok / seconds,
            "collector_cpu_s": cpu,
            "collector_cpu_user_s": user,
            "collector_cpu_system_s": system,
            "events_per_collector_cpu_s": events_ok / cpu if cpu else None,
            "broker_cpu_s": broker_used,
            "sender_cpu_s": sent["sender_cpu_s"],
            "records_stored": stored,
            "all_acknowledged_stored": acknowledged is not None and stored == acknowledged,
        }

        # 3. Latency of a batch call at half that rate.
        rate = results["collector"]["events_per_s"] / 2
        requests_per_s = rate / args.batch
        count = max(20, min(len(bodies), int(requests_per_s * args.latency_seconds)))
        paced = run_sender(
            {**target, "mode": "paced", "requests_per_s": requests_per_s, "count": count}, workdir, sender_cpu
        )
        latencies = paced["latencies"]
        results["latency_at_half_rate"] = {
            "events_per_s": rate,
            "requests": count,
            "answered_200": len(latencies),
            "connections": paced["connections"],
            "p50_ms": quantile(latencies, 0.50) * 1000,
            "p99_ms": quantile(latencies, 0.99) * 1000,
            "max_ms": max(latencies) * 1000 if latencies else None,
            "sender_cpu_s": paced["sender_cpu_s"],
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


def _figure(value: float | None, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:,.1f}{unit}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000, help="events sent (default 200,000)")
    parser.add_argument("--batch", type=int, default=100, help="events per /v1/batch call (default 100)")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight (default 16)")
    parser.add_argument("--partitions", type=int, default=4, help="partitions of every topic (default 4)")
    parser.add_argument("--latency-seconds", type=float, default=20.0, help="length of the paced phase (20 s)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--bootstrap", default="", help="use this broker instead of starting one")
    parser.add_argument("--broker-pid", type=int, default=0, help="that broker's pid, for its CPU seconds")
    parser.add_argument("--kafka-heap", default="1g")
    parser.add_argument("--collector-repo", type=Path, default=None, help="run this checkout's collector")
    parser.add_argument("--pin", action="store_true", help="collector on core 1, sender on core 0 (taskset)")
    parser.add_argument("--py-spy", default="", help="record the collector with py-spy into this file")
    parser.add_argument("--sender", default="", help=argparse.SUPPRESS)  # internal: the sender process
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "collector.json"))
    args = parser.parse_args(argv)
    if args.sender:
        return sender_main(args.sender)
    with tempfile.TemporaryDirectory(prefix="collector-bench-") as workdir:
        results = run(args, Path(workdir))
    results["config"] = {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    produce, collector, latency = results["produce"], results["collector"], results["latency_at_half_rate"]
    print(f"events                       {results['events']:>12,}")
    print(
        f"streamcdp produce (file)     {produce['events_per_s_wall']:>12,.0f} events/s   "
        f"(CPU: produce {produce['produce_cpu_s']:.1f} s, broker {_figure(produce['broker_cpu_s'], ' s')}; "
        f"{produce['summary']})"
    )
    print(f"collector, batches of {args.batch:<4}   {collector['events_per_s']:>12,.0f} events/s")
    if collector["events_per_collector_cpu_s"]:
        print(f"  per collector CPU-second   {collector['events_per_collector_cpu_s']:>12,.0f} events")
    print(
        f"  CPU seconds                collector {collector['collector_cpu_s']:.1f} "
        f"(user {collector['collector_cpu_user_s']:.1f}, system {collector['collector_cpu_system_s']:.1f}), "
        f"broker {_figure(collector['broker_cpu_s'])}, sender {collector['sender_cpu_s']:.1f} "
        f"(wall {collector['seconds']:.1f} s)"
    )
    print(f"  stored = acknowledged      {collector['all_acknowledged_stored']!s:>12}")
    print(
        f"batch call at {latency['events_per_s']:,.0f} events/s: p50 {latency['p50_ms']:.1f} ms, "
        f"p99 {latency['p99_ms']:.1f} ms, max {_figure(latency['max_ms'])} ms "
        f"({latency['answered_200']}/{latency['requests']} answered 200)"
    )
    machine = results["machine"]
    load_before, load_after = machine["loadavg_before"][0], machine["loadavg_after"][0]
    print(f"machine: {machine['cpus']} CPUs, load average {load_before:.1f} → {load_after:.1f}")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
