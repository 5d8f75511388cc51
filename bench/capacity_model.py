"""The capacity model of ``bench/README.md`` (issue 15), computed from measured figures, not typed in::

    .venv/bin/python bench/capacity_model.py --state bench/results/state.json --scale bench/results/scale.json \\
        [--customers 1000000 10000000 100000000] [--events-per-customer-day 3.2] [--peak-factor 10]

Per profile (from ``state_bench.py``: the slope of the linear fit when it ran several sizes, else the
largest size divided by its profiles): bytes of state on disk, bytes of changelog in Kafka, bytes of RSS
beyond a fixed base, seconds of cold restore (join + restore, after the process is up). Per worker
process (from ``scale_bench.py``): events per CPU-second of the one-process drains, i.e. what one
worker sustains with a core to itself. Assumptions, all flags: events per customer per day (default: the
generator's 3.2), the peak hour's factor over the day's average (10), memory per worker (1 GiB), restore
target (60 s).

For each customer count: state and changelog in total; workers needed for memory, for a restore within
the target, and for the peak event rate — the largest of the three is the worker count; partitions the
next power of two ≥ 2 × workers (room to double the workers without repartitioning; at least 4); the
restore time when those workers restore their shares in parallel (the broker's read rate is not
modelled: at 100M customers it is the limit).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

GIB = 2**30


def per_profile(state: dict) -> dict[str, float]:
    """Per-profile figures and the fixed RSS base from a ``state_bench.py`` result."""
    if "extrapolation" in state:
        fit = state["extrapolation"]
        return {
            "disk": fit["state_bytes_on_disk"]["per_profile"],
            "changelog": fit["changelog_bytes_in_broker"]["per_profile"],
            "rss": fit["peak_rss_bytes"]["per_profile"],
            "rss_base": fit["peak_rss_bytes"]["intercept"],
            "restore_s": fit["cold_restore.join_and_restore_s"]["per_profile"],
            "source": f"linear fit over {[s['profiles'] for s in state['sizes']]} profiles",
        }
    largest = max(state["sizes"], key=lambda s: s["profiles"])
    count = largest["profiles"]
    return {
        "disk": largest["state_bytes_on_disk"] / count,
        "changelog": largest["changelog_bytes_in_broker"] / count,
        "rss": largest["peak_rss_bytes"] / count,
        "rss_base": 0.0,
        "restore_s": largest["cold_restore"]["join_and_restore_s"] / count,
        "source": f"{count} profiles, divided",
    }


def worker_rate(scale: dict) -> float:
    """Events per CPU-second of the one-process drains (mean)."""
    rates = [r["events_per_worker_cpu_second"] for r in scale["runs"] if r["processes"] == 1]
    return sum(rates) / len(rates)


def model(customers: int, figures: dict[str, float], rate: float, args: argparse.Namespace) -> dict:
    usable = args.memory_per_worker * GIB - figures["rss_base"]
    peak = customers * args.events_per_customer_day / 86400.0 * args.peak_factor
    for_memory = math.ceil(customers * figures["rss"] / usable) if usable > 0 else math.inf
    for_restore = math.ceil(customers * figures["restore_s"] / args.restore_target_s)
    for_rate = math.ceil(peak / rate)
    workers = max(1, for_memory, for_restore, for_rate)
    partitions = max(4, 2 ** math.ceil(math.log2(2 * workers)))
    return {
        "customers": customers,
        "state_bytes": customers * figures["disk"],
        "changelog_bytes": customers * figures["changelog"],
        "peak_events_per_s": peak,
        "workers_for_memory": for_memory,
        "workers_for_restore": for_restore,
        "workers_for_rate": for_rate,
        "workers": workers,
        "partitions": partitions,
        "restore_s_parallel": customers * figures["restore_s"] / workers,
    }


def size(value: float) -> str:
    for unit, factor in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20)):
        if value >= factor:
            return f"{value / factor:,.1f} {unit}"
    return f"{value:,.0f} B"


def markdown(rows: list[dict], figures: dict, rate: float, args: argparse.Namespace) -> str:
    lines = [
        f"Per profile ({figures['source']}): {figures['disk']:,.0f} B state on disk, {figures['changelog']:,.0f} B "
        f"changelog, {figures['rss']:,.0f} B RSS over a {size(figures['rss_base'])} base, "
        f"{figures['restore_s'] * 1e6:,.1f} µs cold restore; one worker: {rate:,.0f} events per CPU-second. "
        f"Assumed: {args.events_per_customer_day} events per customer per day, peak hour × {args.peak_factor}, "
        f"{args.memory_per_worker} GiB per worker, restore ≤ {args.restore_target_s:.0f} s.",
        "",
        "| customers | state on disk | changelog | peak events/s | workers (memory / restore / rate) "
        "| workers | partitions | restore, workers in parallel |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['customers']:,} | {size(r['state_bytes'])} | {size(r['changelog_bytes'])} | "
            f"{r['peak_events_per_s']:,.0f} | {r['workers_for_memory']} / {r['workers_for_restore']} / "
            f"{r['workers_for_rate']} | **{r['workers']}** | {r['partitions']} | {r['restore_s_parallel']:,.0f} s |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--state", required=True, help="a state_bench.py JSON")
    parser.add_argument("--scale", required=True, help="a scale_bench.py JSON")
    parser.add_argument("--customers", type=int, nargs="+", default=[1_000_000, 10_000_000, 100_000_000])
    parser.add_argument("--events-per-customer-day", type=float, default=3.2)
    parser.add_argument("--peak-factor", type=float, default=10.0)
    parser.add_argument("--memory-per-worker", type=float, default=1.0, help="GiB")
    parser.add_argument("--restore-target-s", type=float, default=60.0)
    parser.add_argument("--out", default=None, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    figures = per_profile(json.loads(Path(args.state).read_text()))
    rate = worker_rate(json.loads(Path(args.scale).read_text()))
    rows = [model(count, figures, rate, args) for count in args.customers]
    if args.out:
        Path(args.out).write_text(json.dumps({"per_profile": figures, "worker_rate": rate, "rows": rows}, indent=2))
    sys.stdout.write(markdown(rows, figures, rate, args) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
