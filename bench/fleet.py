"""What the scale, state, latency and side-by-side benches share: a private broker, one deployment (topic
prefix, app id, data dir, settings) on it, and a fleet of workers run as ``streamcdp worker --processes N``
whose children are scraped and measured through their own web ports (``streams.supervisor``: child i
serves on WEB_PORT + i). Everything started is stopped by pid; the pieces that ``bench/pipeline_bench.py``
already has (workload, backlog load, metrics parsing, /proc readers) are imported from it, not copied."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from pipeline_bench import (  # noqa: E402
    GroupLag,
    _finite,
    cpu_seconds,
    machine_busy_seconds,
    machine_info,
    parse_metrics,
    snapshot_sources,
    worker_env,
)

from schemas.topics import TopicNames  # noqa: E402
from streams import kafka_local  # noqa: E402
from streams.http_probe import http_get  # noqa: E402
from streams.settings import Settings  # noqa: E402
from streams.topics import ensure_topics  # noqa: E402

log = logging.getLogger("bench.fleet")

SAMPLE_EVERY_S = 0.5


def start_broker(run_dir: Path, partitions: int, heap: str) -> Settings:
    """A private single-node broker on free ports under ``run_dir``; stop it with ``kafka_local.stop``."""
    port, controller_port = kafka_local.free_port(), kafka_local.free_port()
    broker = Settings(
        broker_url=f"kafka://127.0.0.1:{port}",
        kafka_port=port,
        kafka_controller_port=controller_port,
        kafka_run_dir=run_dir / "kafka",
        kafka_home=REPO / ".cache" / "kafka",
        kafka_heap=heap,
        topic_partitions=partitions,
    )
    kafka_local.start(broker)
    return broker


def free_port_run(count: int) -> int:
    """A port p with p .. p + count - 1 free now (the supervisor gives child i the port p + i)."""
    for _ in range(200):
        first = kafka_local.free_port()
        if first + count <= 65536 and all(kafka_local.port_is_free(first + i) for i in range(1, count)):
            return first
    message = f"no run of {count} free ports"
    raise RuntimeError(message)


@dataclass
class Deployment:
    """One isolated streamcdp deployment on the broker: its own topics, app id, token and data dir."""

    values: dict[str, object]
    topics: TopicNames

    @property
    def settings(self) -> Settings:
        return Settings(**self.values)

    @property
    def app_id(self) -> str:
        return str(self.values["app_id"])


def make_deployment(
    broker: Settings,
    run_dir: Path,
    partitions: int,
    triggers_file: Path | None = None,
    extra: dict[str, object] | None = None,
) -> Deployment:
    """Topics (created now) and settings of a fresh deployment named by a random tag; ``triggers_file``
    None keeps the default (``config/triggers.yaml`` of the source snapshot the workers run from)."""
    tag = uuid.uuid4().hex[:8]
    values: dict[str, object] = {
        "broker_url": broker.broker_url,
        "topic_prefix": f"bench{tag}.",
        "app_id": f"streamcdp-bench-{tag}",
        "data_dir": run_dir / f"data-{tag}",
        "topic_partitions": partitions,
        "api_token": f"bench-{tag}",
        "env": "dev",  # the development PII hash key is fine for generated data
        "log_level": "warning",
    }
    if triggers_file is not None:
        values["triggers_file"] = triggers_file
    values.update(extra or {})
    deployment = Deployment(values, TopicNames(prefix=str(values["topic_prefix"])))
    ensure_topics(deployment.settings)
    return deployment


def proc_children(pid: int) -> list[int]:
    """Live pids whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                state, parent = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:2]
            except (OSError, ValueError):
                continue
            if int(parent) == pid and state != "Z":  # a zombie has exited; its parent has not reaped it yet
                found.append(int(entry.name))
    return sorted(found)


@dataclass
class Fleet:
    """``streamcdp worker --processes N`` of one deployment, run from ``cwd`` (the bench's source snapshot)."""

    deployment: Deployment
    processes: int
    log_path: Path
    cwd: Path
    base_port: int = 0
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    web_up_s: float | None = None
    seen_children: set[int] = field(default_factory=set)

    def start(self) -> None:
        self.base_port = free_port_run(self.processes)
        values = dict(self.deployment.values, web_port=self.base_port)
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "worker", "--processes", str(self.processes)],
                cwd=self.cwd,
                env=worker_env(values),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.started_at = time.monotonic()

    def ports(self) -> list[int]:
        return [self.base_port + index for index in range(self.processes)]

    def children(self) -> list[int]:
        assert self.proc is not None
        pids = proc_children(self.proc.pid)
        self.seen_children.update(pids)
        return pids

    def check_alive(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            message = f"the supervisor exited; log:\n{self.log_tail()}"
            raise RuntimeError(message)

    def ready(self) -> bool:
        return all(http_get(f"http://127.0.0.1:{port}/readyz", timeout_s=2.0)[0] == 200 for port in self.ports())

    def wait_ready(self, timeout_s: float) -> float:
        """Seconds from start until every child's ``/readyz`` answers 200; ``web_up_s`` is set to the
        moment every child's ``/healthz`` first answered (the process is up and serving; the web server
        starts before the runtime joins the group and restores), so ready − web up ≈ join + restore."""
        deadline = time.monotonic() + timeout_s
        self.web_up_s = None
        while time.monotonic() < deadline:
            self.check_alive()
            if self.web_up_s is None and all(
                http_get(f"http://127.0.0.1:{port}/healthz", timeout_s=2.0)[0] == 200 for port in self.ports()
            ):
                self.web_up_s = time.monotonic() - self.started_at
            if self.ready():
                return time.monotonic() - self.started_at
            time.sleep(0.1)
        message = f"the workers were not ready within {timeout_s:.0f} s; log:\n{self.log_tail()}"
        raise TimeoutError(message)

    def metrics(self) -> list[dict]:
        """``pipeline_bench.parse_metrics`` of each child that answers."""
        figures = []
        for port in self.ports():
            status, body = http_get(f"http://127.0.0.1:{port}/metrics", timeout_s=5.0)
            if status == 200:
                figures.append(parse_metrics(body.decode()))
        return figures

    def profile_status(self, customer_id: str) -> int:
        """HTTP status of ``GET /profiles/{id}`` on the first child (it fetches from the owner if needed)."""
        token = str(self.deployment.values["api_token"])
        return http_get(f"http://127.0.0.1:{self.base_port}/profiles/{customer_id}", token=token, timeout_s=5.0)[0]

    def processed(self) -> float | None:
        """Events processed by all children together; None while one does not answer."""
        figures = self.metrics()
        return sum(f["processed"] for f in figures) if len(figures) == self.processes else None

    def cpu_seconds(self) -> float:
        """CPU seconds of the supervisor and its running children so far."""
        assert self.proc is not None
        return cpu_seconds(self.proc.pid) + sum(cpu_seconds(pid) for pid in self.children())

    def stop(self, timeout_s: float = 90.0) -> float:
        """SIGTERM to the supervisor (it stops its children); SIGKILL to every pid seen if it hangs."""
        if self.proc is None or self.proc.poll() is not None:
            return 0.0
        self.children()
        began = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("supervisor %s ignored SIGTERM; killing it and its children by pid", self.proc.pid)
            self.proc.kill()
            self.proc.wait(timeout=10)
        for pid in self.seen_children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return time.monotonic() - began

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@dataclass
class Drain:
    """The drain of a backlog by a fleet: (seconds since start, processed) samples and CPU figures."""

    samples: list[tuple[float, float]]
    ready_s: float
    drained_s: float
    fleet_cpu_s: float
    broker_cpu_s: float
    machine_cpu_s: float


def drain(
    fleet: Fleet,
    target: int,
    broker_pid: int,
    bootstrap: str,
    *,
    timeout_s: float,
    on_start: Callable[[Fleet], None] | None = None,
    after_ready: Callable[[], object] | None = None,
) -> Drain:
    """Start ``fleet`` (then call ``on_start``), wait until ready (then call ``after_ready``, e.g. to load the
    backlog once every process holds its partitions), then until ``target`` events are processed and its
    group has committed the inbound and profile-commands topics to their end; CPU is counted from ready to
    drained."""
    fleet.start()
    if on_start is not None:
        on_start(fleet)
    ready_s = fleet.wait_ready(timeout_s)
    if after_ready is not None:
        after_ready()
    fleet_cpu, broker_cpu, machine = fleet.cpu_seconds(), cpu_seconds(broker_pid), machine_busy_seconds()
    topics = fleet.deployment.topics
    group_lag = GroupLag(bootstrap, fleet.deployment.app_id, (*topics.all_inbound, topics.profile_commands))
    samples: list[tuple[float, float]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            fleet.check_alive()
            now = time.monotonic()
            processed = fleet.processed()
            if processed is not None:
                samples.append((now - fleet.started_at, processed))
                # CPU is read at every sample, so the last reading is the one at the drained moment.
                cpu_now = (fleet.cpu_seconds(), cpu_seconds(broker_pid), machine_busy_seconds())
                if processed >= target and group_lag.lag() == 0:
                    break
            if now > deadline:
                message = f"processed {samples[-1][1] if samples else 0:.0f} of {target} within {timeout_s:.0f} s"
                raise TimeoutError(message)
            time.sleep(max(0.0, SAMPLE_EVERY_S - (time.monotonic() - now)))
    finally:
        group_lag.close()
    return Drain(
        samples=samples,
        ready_s=ready_s,
        drained_s=samples[-1][0],
        fleet_cpu_s=cpu_now[0] - fleet_cpu,
        broker_cpu_s=cpu_now[1] - broker_cpu,
        machine_cpu_s=cpu_now[2] - machine,
    )


def bench_main(
    args,
    name: str,
    make_run: Callable[[Path], object],
    run_benchmark: Callable[[object, object], dict],
    table: Callable[[dict], str],
    *,
    noisy_level: int = logging.ERROR,
) -> int:
    """What every fleet bench's ``main`` does around its ``run_benchmark(args, run)``: logging, SIGTERM
    unwinding through the clean-up, a temporary run directory (kept on failure or with ``--keep``), the
    partial results written next to ``args.out`` on failure, the results and the wall time on success, and
    the printed table."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("kafka", "aiokafka"):
        logging.getLogger(noisy).setLevel(noisy_level)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM unwinds through the finally
    run = make_run(Path(tempfile.mkdtemp(prefix=f"streamcdp-{name}-")))
    out = Path(args.out)
    started = time.monotonic()
    failed = True
    try:
        results = run_benchmark(args, run)
        failed = False
    except BaseException as exc:
        run.results["error"] = f"{type(exc).__name__}: {exc}"[:4000]  # type: ignore[attr-defined]
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = json.dumps(_finite(run.results), indent=2, default=str)  # type: ignore[attr-defined]
        out.with_suffix(".partial.json").write_text(partial + "\n")
        raise
    finally:
        run.cleanup()  # type: ignore[attr-defined]
        if failed or args.keep:
            log.info("run dir kept: %s", run.run_dir)  # type: ignore[attr-defined]
        else:
            shutil.rmtree(run.run_dir, ignore_errors=True)  # type: ignore[attr-defined]
    results["finished_at"] = datetime.now(tz=UTC).isoformat(timespec="seconds")
    results["wall_seconds"] = time.monotonic() - started
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(_finite(results), indent=2, default=str) + "\n")
    sys.stdout.write(table(results) + f"\n\nwritten: {out}\n")
    return 0


@dataclass
class FleetRun:
    """What a fleet bench started (its broker, its fleets), so that ``cleanup`` stops exactly that, by pid.
    A bench that starts more (an output tail, a memory watch, another engine) subclasses it and stops
    those first in ``stop_extras``."""

    run_dir: Path
    broker: Settings | None = None
    fleets: list[Fleet] = field(default_factory=list)
    results: dict = field(default_factory=dict)

    def start(self, partitions: int, kafka_heap: str) -> Settings:
        """Record the machine and the source snapshot the workers run from, then start the run's broker
        (recorded with its pid); its settings."""
        self.results["machine"] = machine_info()
        self.results["source_snapshot"] = snapshot_sources(self.run_dir / "src")
        self.broker = start_broker(self.run_dir, partitions, kafka_heap)
        self.results["broker"] = {"pid": kafka_local.running_pid(self.broker), "heap": kafka_heap}
        return self.broker

    def stop_extras(self) -> None:
        """Stop what a subclass started besides the fleets and the broker (nothing here)."""

    def cleanup(self) -> None:
        self.stop_extras()
        for fleet in self.fleets:
            try:
                fleet.stop(timeout_s=90)
            except Exception:
                log.exception("stopping a fleet failed")
        if self.broker is not None:
            kafka_local.stop(self.broker)


def add_run_arguments(parser, results_name: str) -> None:
    """The options every fleet bench has: what ``FleetRun.start`` and ``bench_main`` read."""
    parser.add_argument("--partitions", type=int, default=4, help="partitions of every topic (default 4)")
    parser.add_argument("--kafka-heap", default="1g", help="JVM heap of the run's broker (default 1g)")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / f"{results_name}.json"))
    parser.add_argument("--keep", action="store_true", help="keep the temp run dir (logs)")
