"""streamcdp's worker and a Quix Streams application running the project's own ``apply_event``, on the
same topics and backlog, in the same run (issue 15, item 5)::

    .venv/bin/python bench/quix_side_by_side.py --quix-python PATH [--events 1000000] [--rounds 1] \\
        [--out bench/results/quix-side-by-side.json]

``--quix-python`` is an interpreter with ``quixstreams==3.28.1`` (and msgspec, orjson, pyyaml at the
project's pins): Quix Streams cannot be installed next to the project (it requires pydantic-settings
< 2.16, the project pins 2.16.3), so it gets its own environment, e.g.::

    python3.11 -m venv .cache/venv-quix && .cache/venv-quix/bin/pip install -r bench/quix-requirements.txt

One private broker; the backlog (``bench/pipeline_bench.py``'s generator workload) is loaded once into
the inbound topics; then, one after the other (never at the same time: they would share the 2 cores),
each reads all of it from the beginning with its own consumer group and state: the streamcdp worker
(``streamcdp worker --processes 1``, default settings: validation, identity, profile, segments, scores,
triggers, changelog) and the Quix app (``bench/quix_profile_app.py``: validation + ``apply_event`` per
key in Quix's RocksDB state with its changelog, nothing else). Both use the same processing guarantee
(streamcdp's default) and a 0.5 s commit interval. Round r runs streamcdp first when r is even. Per run:
sustained events/s (10–90 %), CPU seconds of the process and of the broker, events per CPU-second.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass

from fleet import REPO, Deployment, Fleet, FleetRun, add_run_arguments, bench_main, drain, make_deployment
from passthrough import steady_rate
from pipeline_bench import build_workload, cpu_seconds, load_backlog

from streams import kafka_local

log = logging.getLogger("bench.quix")

QUIX_APP = REPO / "bench" / "quix_profile_app.py"
COMMIT_INTERVAL_S = 0.5  # streamcdp's default STREAMCDP_COMMIT_INTERVAL_S, given to Quix too


@dataclass
class Run(FleetRun):
    quix: subprocess.Popen | None = None

    def stop_extras(self) -> None:
        if self.quix is not None and self.quix.poll() is None:
            self.quix.send_signal(signal.SIGTERM)
            try:
                self.quix.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.quix.kill()
                self.quix.wait(timeout=10)


def run_streamcdp(args: argparse.Namespace, run: Run, deployment: Deployment, events: int) -> dict:
    """A fresh app id (group, changelog, data dir) on the deployment's topics; one worker drains them."""
    tag = uuid.uuid4().hex[:6]
    values = dict(deployment.values, app_id=f"{deployment.app_id}-s{tag}", data_dir=run.run_dir / f"data-s{tag}")
    fresh = Deployment(values, deployment.topics)
    from streams.topics import ensure_topics

    ensure_topics(fresh.settings)  # the new app id's changelog
    fleet = Fleet(fresh, 1, run.run_dir / f"streamcdp-{tag}.log", cwd=run.run_dir / "src")
    run.fleets.append(fleet)
    broker_pid = kafka_local.running_pid(run.broker)
    result = drain(fleet, events, broker_pid, run.broker.broker_bootstrap, timeout_s=args.phase_timeout)
    fleet.stop()
    shutil.rmtree(values["data_dir"], ignore_errors=True)
    return {
        "engine": "streamcdp",
        "sustained_rate": steady_rate(result.samples, events),
        "cpu_seconds": result.fleet_cpu_s,
        "broker_cpu_seconds": result.broker_cpu_s,
        "events_per_cpu_second": events / result.fleet_cpu_s if result.fleet_cpu_s else None,
        "wall_seconds": result.drained_s - result.ready_s,
    }


def run_quix(args: argparse.Namespace, run: Run, deployment: Deployment, events: int, guarantee: str) -> dict:
    """The Quix app on the same inbound topics with its own group and state dir, until it read ``events``."""
    tag = uuid.uuid4().hex[:6]
    progress = run.run_dir / f"quix-{tag}.progress"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMCDP_", "PYTHON"))}
    env.update(
        {
            "PYTHONPATH": str(run.run_dir / "src"),
            "PYTHONUNBUFFERED": "1",
            "QUIX_BOOTSTRAP": run.broker.broker_bootstrap,
            "QUIX_TOPICS": ",".join(deployment.topics.all_inbound),
            "QUIX_GROUP": f"quix-bench-{tag}",
            "QUIX_STATE_DIR": str(run.run_dir / f"quix-state-{tag}"),
            "QUIX_EXPECTED": str(events),
            "QUIX_PROGRESS": str(progress),
            "QUIX_GUARANTEE": guarantee.replace("_", "-"),
            "QUIX_PII_HASH_KEY": deployment.settings.pii_hash_key,
            "QUIX_COMMIT_INTERVAL_S": str(COMMIT_INTERVAL_S),
        }
    )
    broker_pid = kafka_local.running_pid(run.broker)
    with (run.run_dir / f"quix-{tag}.log").open("ab") as out:
        run.quix = subprocess.Popen(
            [args.quix_python, str(QUIX_APP)],
            cwd=run.run_dir,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    started = time.monotonic()
    broker_cpu_start = cpu_seconds(broker_pid)
    cpu = 0.0
    cpu_at_first: float | None = None  # like streamcdp's (counted from ready), leave start-up out
    deadline = started + args.phase_timeout
    while run.quix.poll() is None:
        cpu = max(cpu, cpu_seconds(run.quix.pid))  # the last reading before it exits
        if cpu_at_first is None and progress.exists() and progress.stat().st_size > 0:
            cpu_at_first = cpu
        if time.monotonic() > deadline:
            message = f"the Quix app did not read {events} records within {args.phase_timeout:.0f} s"
            raise TimeoutError(message)
        time.sleep(0.5)
    broker_cpu = cpu_seconds(broker_pid) - broker_cpu_start
    if run.quix.returncode != 0:
        tail = (run.run_dir / f"quix-{tag}.log").read_text(errors="replace")[-3000:]
        message = f"the Quix app exited with {run.quix.returncode}:\n{tail}"
        raise RuntimeError(message)
    run.quix = None
    samples, rejected = [], 0
    for line in progress.read_text().splitlines():
        parts = line.split()
        samples.append((float(parts[0]), int(parts[1])))
        rejected = int(parts[2])
    cpu -= cpu_at_first or 0.0
    return {
        "engine": "quixstreams",
        "sustained_rate": steady_rate(samples, events),
        "cpu_seconds": cpu,  # from its first progress line (≤ 0.5 s after the first record) to the last reading
        "broker_cpu_seconds": broker_cpu,
        "events_per_cpu_second": events / cpu if cpu else None,
        "wall_seconds": samples[-1][0] - samples[0][0] if samples else None,
        "rejected_by_validation": rejected,
    }


def run_benchmark(args: argparse.Namespace, run: Run) -> dict:
    results = run.results
    run.start(args.partitions, args.kafka_heap)
    version = subprocess.run(
        [args.quix_python, "-c", "import quixstreams; print(quixstreams.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    deployment = make_deployment(run.broker, run.run_dir, args.partitions)
    guarantee = deployment.settings.processing_guarantee
    workload = build_workload(deployment.topics, args.events, None, args.seed)
    events = len(workload.messages)
    asyncio.run(load_backlog(run.broker.broker_bootstrap, workload.messages, args.partitions))
    del workload
    results["config"] = {
        "events": events,
        "partitions": args.partitions,
        "processing_guarantee": guarantee,
        "commit_interval_s": COMMIT_INTERVAL_S,
        "quixstreams": version,
        "rounds": args.rounds,
    }
    runs = []
    for round_number in range(args.rounds):
        order = ("streamcdp", "quix") if round_number % 2 == 0 else ("quix", "streamcdp")
        for engine in order:
            if engine == "streamcdp":
                figures = run_streamcdp(args, run, deployment, events)
            else:
                figures = run_quix(args, run, deployment, events, guarantee)
            log.info("%s: %.0f events/s sustained", engine, figures["sustained_rate"])
            runs.append(figures)
            results["runs"] = runs
    return results


def table(results: dict) -> str:
    lines = [
        f"{results['config']['events']:,} events, {results['config']['partitions']} partitions, "
        f"{results['config']['processing_guarantee']}, quixstreams {results['config']['quixstreams']}",
        f"{'engine':<12} {'events/s':>9} {'CPU s':>7} {'events/CPU-s':>13} {'broker CPU s':>13}",
    ]
    for r in results["runs"]:
        lines.append(
            f"{r['engine']:<12} {r['sustained_rate']:>9,.0f} {r['cpu_seconds']:>7.1f} "
            f"{r['events_per_cpu_second'] or 0:>13,.0f} {r['broker_cpu_seconds']:>13.1f}"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quix-python", required=True, help="interpreter with quixstreams (see above)")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--phase-timeout", type=float, default=None)
    add_run_arguments(parser, "quix-side-by-side")
    args = parser.parse_args(argv)
    if args.phase_timeout is None:
        args.phase_timeout = 300.0 + args.events / 200.0
    return args


def main(argv: list[str] | None = None) -> int:
    return bench_main(parse_args(argv), "quix", lambda run_dir: Run(run_dir=run_dir), run_benchmark, table)


if __name__ == "__main__":
    sys.exit(main())
