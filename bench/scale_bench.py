"""Scale-out on one machine (issue 15, item 2): the same backlog drained by 1 worker process and by N
(``streamcdp worker --processes N``), in the same run, alternating, on one private broker::

    .venv/bin/python bench/scale_bench.py [--events 1000000] [--processes 2] [--rounds 1] \\
        [--out bench/results/scale.json]

Each drain gets its own deployment (topic prefix, app id, data dir) and the same backlog, loaded once
every process is ready: so every drain starts from the same state (empty stores, every process in the
group holding its partitions) and measures the processes' steady share of the work, not a first process
draining alone while a second joins (with the backlog loaded first, a 2-process drain was seen ready only
after 43 % of it was processed, out of its CPU window). Round r runs
1 then N processes when r is even, N then 1 when odd, so a slow spell of the shared machine does not
always hit the same side. Per drain: sustained events/s (10–90 %, summed over the children's
``/metrics``), CPU of the workers (supervisor + children) and of the broker (``/proc/<pid>/stat``) from
ready to drained, and events per worker CPU-second. Prints a table; writes the JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import sys
from dataclasses import dataclass

from fleet import Deployment, Fleet, FleetRun, add_run_arguments, bench_main, drain, make_deployment
from passthrough import steady_rate
from pipeline_bench import Message, build_workload, load_backlog

from schemas.topics import TopicNames
from streams import kafka_local

log = logging.getLogger("bench.scale")


@dataclass
class Run(FleetRun):
    """Everything the run started (``FleetRun``)."""


def retarget(messages: list[Message], topics: TopicNames) -> list[Message]:
    """The backlog (built for the empty prefix) addressed to ``topics``' prefix."""
    return [Message(topics.prefix + m.topic, m.key, m.value) for m in messages]


def measure(args: argparse.Namespace, run: Run, deployment: Deployment, processes: int, backlog: list[Message]) -> dict:
    broker_pid = kafka_local.running_pid(run.broker)
    fleet = Fleet(deployment, processes, run.run_dir / f"workers-{deployment.app_id}.log", cwd=run.run_dir / "src")
    run.fleets.append(fleet)
    events = len(backlog)

    def load() -> None:
        loaded = asyncio.run(
            load_backlog(run.broker.broker_bootstrap, retarget(backlog, deployment.topics), args.partitions)
        )
        log.info("loaded %d events (%.0f/s) for a %d-process drain", events, loaded["rate"], processes)

    result = drain(
        fleet, events, broker_pid, run.broker.broker_bootstrap, timeout_s=args.phase_timeout, after_ready=load
    )
    fleet.stop()
    window = max(result.drained_s - result.ready_s, 1e-9)
    first = next((t for t, count in result.samples if count > 0), result.drained_s)
    sustained = steady_rate(result.samples, events)
    figures = {
        "processes": processes,
        "app_id": deployment.app_id,
        "sustained_rate": sustained,
        "overall_rate": events / max(result.drained_s - first, 1e-9),
        "ready_s": result.ready_s,
        "first_event_s": first,
        "drained_s": result.drained_s,
        "processed": result.samples[-1][1],
        "workers_cpu_seconds": result.fleet_cpu_s,
        "broker_cpu_seconds": result.broker_cpu_s,
        "workers_cpu_share": result.fleet_cpu_s / window,
        "broker_cpu_share": result.broker_cpu_s / window,
        "other_cpu_share": max(0.0, result.machine_cpu_s - result.fleet_cpu_s - result.broker_cpu_s) / window,
        "events_per_worker_cpu_second": events / result.fleet_cpu_s if result.fleet_cpu_s else None,
        "events_per_worker_and_broker_cpu_second": events / (result.fleet_cpu_s + result.broker_cpu_s)
        if result.fleet_cpu_s
        else None,
        "samples": [(round(t, 3), int(count)) for t, count in result.samples],
    }
    log.info(
        "%d process(es): %.0f events/s sustained; workers %.0f %% CPU, broker %.0f %%",
        processes,
        sustained,
        figures["workers_cpu_share"] * 100,
        figures["broker_cpu_share"] * 100,
    )
    shutil.rmtree(deployment.values["data_dir"], ignore_errors=True)
    return figures


def run_benchmark(args: argparse.Namespace, run: Run) -> dict:
    results = run.results
    run.start(args.partitions, args.kafka_heap)
    triggers = None
    if args.no_triggers:
        triggers = run.run_dir / "no-triggers.yaml"
        triggers.write_text("version: 1\ntriggers: []\n")

    workload = build_workload(TopicNames(prefix=""), args.events, args.customers, args.seed)
    events = len(workload.messages)
    results["config"] = {
        "events": events,
        "customers": workload.customers,
        "partitions": args.partitions,
        "processes": args.processes,
        "rounds": args.rounds,
        "seed": args.seed,
        "generator": workload.source,
        "triggers_file": "none (empty file)" if triggers else "config/triggers.yaml (the default)",
    }
    order = []
    for round_number in range(args.rounds):
        pair = (1, args.processes) if round_number % 2 == 0 else (args.processes, 1)
        order.extend(pair)
    runs = []
    for processes in order:
        deployment = make_deployment(run.broker, run.run_dir, args.partitions, triggers)
        runs.append(measure(args, run, deployment, processes, workload.messages))
        results["runs"] = runs
    del workload

    def mean(values: list[float]) -> float:
        return sum(values) / len(values) if values else 0.0

    one = [r for r in runs if r["processes"] == 1]
    many = [r for r in runs if r["processes"] == args.processes]
    results["summary"] = {
        "one_process_rate": mean([r["sustained_rate"] for r in one]),
        "n_process_rate": mean([r["sustained_rate"] for r in many]),
        "ratio": mean([r["sustained_rate"] for r in many]) / mean([r["sustained_rate"] for r in one]),
        "broker_cpu_share_one": mean([r["broker_cpu_share"] for r in one]),
        "broker_cpu_share_n": mean([r["broker_cpu_share"] for r in many]),
        "events_per_worker_cpu_second_one": mean([r["events_per_worker_cpu_second"] or 0 for r in one]),
        "events_per_worker_cpu_second_n": mean([r["events_per_worker_cpu_second"] or 0 for r in many]),
    }
    return results


def table(results: dict) -> str:
    rows = [("processes", "events/s (10–90 %)", "workers CPU", "broker CPU", "other CPU", "events / worker CPU-s")]
    for r in results["runs"]:
        rows.append(
            (
                str(r["processes"]),
                f"{r['sustained_rate']:,.0f}",
                f"{r['workers_cpu_share'] * 100:.0f} %",
                f"{r['broker_cpu_share'] * 100:.0f} %",
                f"{r['other_cpu_share'] * 100:.0f} %",
                f"{r['events_per_worker_cpu_second'] or 0:,.0f}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)) for row in rows]
    summary, config = results["summary"], results["config"]
    lines.append(
        f"\n{config['events']:,} events, {config['partitions']} partitions: {config['processes']} processes / 1 "
        f"process = {summary['ratio']:.2f} (mean sustained {summary['n_process_rate']:,.0f} vs "
        f"{summary['one_process_rate']:,.0f} events/s); broker CPU {summary['broker_cpu_share_n'] * 100:.0f} % "
        f"vs {summary['broker_cpu_share_one'] * 100:.0f} % of one core"
    )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000, help="backlog size (default 1,000,000)")
    parser.add_argument("--customers", type=int, default=None, help="customers (default: events / ~85)")
    parser.add_argument("--processes", type=int, default=2, help="the N compared with 1 (default 2)")
    parser.add_argument("--rounds", type=int, default=1, help="pairs of drains, order alternating (default 1)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--no-triggers", action="store_true", help="an empty trigger file instead of config/triggers.yaml"
    )
    parser.add_argument("--phase-timeout", type=float, default=None, help="seconds per drain (300 + events / 200)")
    add_run_arguments(parser, "scale")
    args = parser.parse_args(argv)
    if args.phase_timeout is None:
        args.phase_timeout = 300.0 + args.events / 200.0
    return args


def main(argv: list[str] | None = None) -> int:
    return bench_main(
        parse_args(argv),
        "scale",
        lambda run_dir: Run(run_dir=run_dir),
        run_benchmark,
        table,
        noisy_level=logging.WARNING,
    )


if __name__ == "__main__":
    sys.exit(main())
