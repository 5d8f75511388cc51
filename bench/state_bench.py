"""Memory, state and restore of many profiles in one worker (issue 15, item 3)::

    .venv/bin/python bench/state_bench.py [--profiles 1000000] [--out bench/results/state.json]
    .venv/bin/python bench/state_bench.py --profiles 100000 200000 --extrapolate-to 1000000

How the profiles are made: through the pipeline, by events, not written into the changelog by hand —
so the state holds exactly what the worker keeps (profile, identity links, applied-id dedup, pending
triggers and wake-ups, segment memberships) and the changelog is the one the worker wrote. Each
customer sends three events, in order, a minute apart within the last two days: an ``identify`` with
userId + anonymousId and traits (email, phone, first name, city, country), a ``Product Viewed`` and an
``Order Completed`` with two products. That is a light profile: a customer with months of history has
more (the pipeline bench's 30-day profiles), so bytes per profile here are a floor, not a typical value.

One worker (``streamcdp worker --processes 1``: the supervisor with one child, data dir
``DATA_DIR/process-0``), default settings (``config/triggers.yaml``, ``config/segments.yaml``). Per size:

1. drain: the backlog is processed; the child's peak RSS (``VmHWM``) is read at the end;
2. state on disk (``du`` of the data dir) and the changelog's size in the broker's log dir;
3. cold restore: stop (SIGTERM), delete the data dir, start; seconds until ``/readyz`` answers 200 — the
   runtime is ready once every assigned partition is restored from its changelog (``streams.recovery``);
   ``streamcdp_restored_records_total`` says how many records it read;
4. warm restart: stop, keep the data dir, start; seconds until ``/readyz`` answers 200.

With several ``--profiles`` sizes the figures are also fitted linearly (least squares) and extrapolated
to ``--extrapolate-to``, labelled as an extrapolation in the table and the JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
from fleet import Fleet, FleetRun, add_run_arguments, bench_main, drain, make_deployment
from passthrough import steady_rate
from pipeline_bench import (
    MemoryWatch,
    Message,
    _route,
    _status_kib,
    disk_usage,
    iso_now_ms,
    load_backlog,
)
from prometheus_client.parser import text_string_to_metric_families

from schemas.topics import TopicNames
from streams import kafka_local
from streams.http_probe import http_get

log = logging.getLogger("bench.state")

EVENTS_PER_PROFILE = 3
LOAD_CHUNK = 150_000  # messages built and loaded at a time (the bench's own memory stays small)


def customer_events(index: int, at: float) -> list[dict]:
    """The three events of customer ``index``, the first at ``at``, a minute apart."""
    user_id, anonymous_id = f"cust-{index:08d}", f"anon-{index:08d}"
    base = {"userId": user_id, "anonymousId": anonymous_id}
    product = {"product_id": f"sku-{index % 500}", "name": "Thing", "category": f"cat-{index % 40}", "price": 19.99}
    return [
        {
            **base,
            "type": "identify",
            "messageId": f"id-{index}",
            "timestamp": iso_now_ms(at),
            "traits": {
                "email": f"c{index}@example.com",
                "phone": f"+4930{index:08d}",
                "firstName": "Kim",
                "city": "Berlin",
                "country": "DE",
            },
        },
        {
            **base,
            "type": "track",
            "event": "Product Viewed",
            "messageId": f"pv-{index}",
            "timestamp": iso_now_ms(at + 60),
            "properties": {**product, "currency": "EUR"},
        },
        {
            **base,
            "type": "track",
            "event": "Order Completed",
            "messageId": f"oc-{index}",
            "timestamp": iso_now_ms(at + 120),
            "properties": {
                "order_id": f"ord-{index}",
                "total": 29.98,
                "currency": "EUR",
                "products": [
                    {
                        "product_id": product["product_id"],
                        "category": product["category"],
                        "price": 19.99,
                        "quantity": 1,
                    },
                    {"product_id": "sku-extra", "category": "cat-extra", "price": 9.99, "quantity": 1},
                ],
            },
        },
    ]


def backlog_chunks(topics: TopicNames, profiles: int, now: float) -> Iterator[list[Message]]:
    """Yield the backlog in chunks of about ``LOAD_CHUNK`` messages (customers spread over two days)."""
    span = 2 * 86400.0 - 300.0
    chunk: list[Message] = []
    for index in range(profiles):
        at = now - 2 * 86400.0 + span * index / max(profiles, 1)
        for payload in customer_events(index, at):
            chunk.append(_route(topics, payload, orjson.dumps(payload)))
        if len(chunk) >= LOAD_CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def topic_bytes(kafka_run_dir: Path, topic: str) -> int:
    """Bytes on disk of ``topic``'s partition directories in the broker's log dir."""
    total = 0
    for directory in kafka_run_dir.rglob(f"{topic}-*"):
        if directory.is_dir() and directory.name.rsplit("-", 1)[0] == topic:
            total += disk_usage(directory)["bytes_on_disk"]
    return total


@dataclass
class Run(FleetRun):
    memory: MemoryWatch | None = None

    def stop_extras(self) -> None:
        if self.memory is not None:
            self.memory.stop()


def restart(fleet: Fleet, timeout_s: float) -> dict:
    """Start ``fleet`` again; seconds to ``/readyz`` 200 and the changelog records its child read back."""
    fleet.start()
    ready_s = fleet.wait_ready(timeout_s)
    web_up_s = fleet.web_up_s if fleet.web_up_s is not None else ready_s
    return {
        "ready_s": ready_s,
        "web_up_s": web_up_s,
        "join_and_restore_s": ready_s - web_up_s,
        "restored_records": restored_records(fleet),
    }


def restored_records(fleet: Fleet) -> float:
    """``streamcdp_restored_records_total`` summed over the fleet's children."""
    total = 0.0
    for port in fleet.ports():
        status, body = http_get(f"http://127.0.0.1:{port}/metrics", timeout_s=5.0)
        if status == 200:
            for family in text_string_to_metric_families(body.decode()):
                total += sum(s.value for s in family.samples if s.name == "streamcdp_restored_records_total")
    return total


def measure_size(args: argparse.Namespace, run: Run, profiles: int) -> dict:
    deployment = make_deployment(run.broker, run.run_dir, args.partitions)
    bootstrap = run.broker.broker_bootstrap
    began = time.perf_counter()
    loaded = 0
    for chunk in backlog_chunks(deployment.topics, profiles, time.time()):
        asyncio.run(load_backlog(bootstrap, chunk, args.partitions))
        loaded += len(chunk)
    load_s = time.perf_counter() - began
    log.info("%d profiles: loaded %d events in %.0f s; draining with one worker", profiles, loaded, load_s)

    fleet = Fleet(deployment, 1, run.run_dir / f"worker-{profiles}.log", cwd=run.run_dir / "src")
    run.fleets.append(fleet)
    timeout_s = 300.0 + loaded / 200.0

    def watch_memory(started: Fleet) -> None:
        # The supervisor's process tree: the child's VmHWM is polled from its start.
        run.memory = MemoryWatch(started.proc.pid)
        run.memory.start()

    broker_pid = kafka_local.running_pid(run.broker)
    result = drain(fleet, loaded, broker_pid, bootstrap, timeout_s=timeout_s, on_start=watch_memory)
    final = fleet.metrics()[0]
    samples = [f"cust-{index:08d}" for index in range(0, profiles, max(1, profiles // 20))]
    # 0: no answer within the probe's 5 s (a worker busy right after the drain), not a missing profile (404)
    statuses = [fleet.profile_status(customer_id) for customer_id in samples]
    found = sum(status == 200 for status in statuses)
    run.memory.sample()
    child = fleet.children()[0]
    peak_rss = run.memory.hwm_kib.get(child, 0) * 1024
    run.memory.stop()
    run.memory = None
    data_dir = Path(deployment.values["data_dir"]) / "process-0"
    time.sleep(1.0)
    state = disk_usage(data_dir)
    changelog = deployment.topics.state_changelog(deployment.app_id)
    changelog_bytes = topic_bytes(run.run_dir / "kafka", changelog)
    drain_rate = steady_rate(result.samples, loaded)

    stop_s = fleet.stop()
    shutil.rmtree(data_dir)
    cold = restart(fleet, timeout_s)
    cold_rss = _child_rss(fleet)
    fleet.stop()
    warm = restart(fleet, timeout_s)
    fleet.stop()
    shutil.rmtree(deployment.values["data_dir"], ignore_errors=True)
    figures = {
        "profiles": profiles,
        "events": loaded,
        "load_seconds": load_s,
        "drain_sustained_rate": drain_rate,
        "drain_seconds": result.drained_s - result.ready_s,
        "deadlettered": final["deadlettered"],
        "sampled_profiles_found": f"{found} of {len(samples)}",
        "sampled_statuses": statuses,
        "peak_rss_bytes": peak_rss,
        "rss_after_cold_restore_bytes": cold_rss,
        "state_bytes_on_disk": state["bytes_on_disk"],
        "state_apparent_bytes": state["apparent_bytes"],
        "state_files": state["files"],
        "state_bytes_per_profile": state["bytes_on_disk"] / profiles,
        "changelog_bytes_in_broker": changelog_bytes,
        "changelog_bytes_per_profile": changelog_bytes / profiles,
        "stop_s": stop_s,
        "cold_restore": cold,
        "warm_restart": warm,
    }
    log.info(
        "%d profiles: peak RSS %.0f MiB, state %.0f MiB (%.0f B/profile), cold restore ready %.1f s, warm %.1f s",
        profiles,
        peak_rss / 2**20,
        state["bytes_on_disk"] / 2**20,
        state["bytes_on_disk"] / profiles,
        cold["ready_s"],
        warm["ready_s"],
    )
    return figures


def _child_rss(fleet: Fleet) -> int:
    return sum(_status_kib(pid, "VmRSS") for pid in fleet.children()) * 1024


FITTED = (
    "peak_rss_bytes",
    "state_bytes_on_disk",
    "changelog_bytes_in_broker",
    ("cold_restore", "ready_s"),
    ("cold_restore", "join_and_restore_s"),
    ("warm_restart", "ready_s"),
)


def linear_fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    """(intercept, slope) of the least-squares line through ``points``."""
    count = len(points)
    mean_x = sum(x for x, _ in points) / count
    mean_y = sum(y for _, y in points) / count
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / spread if spread else 0.0
    return mean_y - slope * mean_x, slope


def extrapolate(sizes: list[dict], target: int) -> dict:
    """Each fitted figure at ``target`` profiles, from a straight line through the measured sizes."""
    figures: dict[str, dict] = {}
    for name in FITTED:
        path = name if isinstance(name, tuple) else (name,)
        points = []
        for size in sizes:
            value = size
            for part in path:
                value = value[part]
            points.append((float(size["profiles"]), float(value)))
        intercept, slope = linear_fit(points)
        figures[".".join(path)] = {
            "intercept": intercept,
            "per_profile": slope,
            "at_target": intercept + slope * target,
        }
    return {"label": f"LINEAR EXTRAPOLATION to {target:,} profiles, not measured", "target": target, **figures}


def table(results: dict) -> str:
    def mib(value: float) -> str:
        return f"{value / 2**20:,.0f} MiB"

    rows = [
        (
            "profiles",
            "events",
            "peak RSS",
            "state on disk",
            "B/profile",
            "changelog",
            "cold: ready (join+restore)",
            "warm: ready (join+restore)",
        )
    ]
    for s in results["sizes"]:
        rows.append(
            (
                f"{s['profiles']:,}",
                f"{s['events']:,}",
                mib(s["peak_rss_bytes"]),
                mib(s["state_bytes_on_disk"]),
                f"{s['state_bytes_per_profile']:,.0f}",
                mib(s["changelog_bytes_in_broker"]),
                f"{s['cold_restore']['ready_s']:.1f} s ({s['cold_restore']['join_and_restore_s']:.1f} s)",
                f"{s['warm_restart']['ready_s']:.1f} s ({s['warm_restart']['join_and_restore_s']:.1f} s)",
            )
        )
    if "extrapolation" in results:
        e = results["extrapolation"]
        rows.append(
            (
                f"{e['target']:,} (extrapolated)",
                "-",
                mib(e["peak_rss_bytes"]["at_target"]),
                mib(e["state_bytes_on_disk"]["at_target"]),
                f"{e['state_bytes_on_disk']['per_profile']:,.0f}",
                mib(e["changelog_bytes_in_broker"]["at_target"]),
                f"{e['cold_restore.ready_s']['at_target']:.1f} s",
                f"{e['warm_restart.ready_s']['at_target']:.1f} s",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in rows)


def run_benchmark(args: argparse.Namespace, run: Run) -> dict:
    results = run.results
    run.start(args.partitions, args.kafka_heap)
    results["config"] = {
        "profiles": args.profiles,
        "events_per_profile": EVENTS_PER_PROFILE,
        "partitions": args.partitions,
        "workload": "per customer: identify (5 traits), Product Viewed, Order Completed (2 products)",
        "worker": "streamcdp worker --processes 1, default settings",
    }
    results["sizes"] = []
    for profiles in args.profiles:
        results["sizes"].append(measure_size(args, run, profiles))
    if len(args.profiles) > 1 and args.extrapolate_to:
        results["extrapolation"] = extrapolate(results["sizes"], args.extrapolate_to)
    return results


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", type=int, nargs="+", default=[1_000_000], help="sizes (default 1,000,000)")
    parser.add_argument("--extrapolate-to", type=int, default=1_000_000, help="with several sizes: fit and extend")
    add_run_arguments(parser, "state")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    return bench_main(parse_args(argv), "state", lambda run_dir: Run(run_dir=run_dir), run_benchmark, table)


if __name__ == "__main__":
    sys.exit(main())
