"""Throughput of the in-process contract check: ``decode_event`` over a generated workload, in events/s.

Run: ``.venv/bin/python bench/validation_bench.py [customers] [repeats]``. Prints the rate of bare
``orjson.loads`` on the same lines as the floor the validator is compared with. Thread CPU time, best of
``repeats`` passes over all lines.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson

from offline.generator import WorkloadConfig, generate_workload
from schemas.validation import decode_event


def best_rate(lines: list[bytes], decode, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        began = time.thread_time()
        for line in lines:
            decode(line)
        best = min(best, time.thread_time() - began)
    return len(lines) / best


def main() -> None:
    customers = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    start = 1_760_000_000.0
    lines = generate_workload(WorkloadConfig(start=start, customers=customers, days=30, seed=1)).lines
    now = start + 31 * 86400
    average = sum(map(len, lines)) / len(lines)
    validate = best_rate(lines, lambda line: decode_event(line, now=now), repeats)
    parse = best_rate(lines, orjson.loads, repeats)
    print(f"{len(lines)} events, {average:.0f} bytes on average")
    print(f"decode_event: {validate:,.0f} events/s ({1e6 / validate:.1f} us/event)")
    print(f"orjson.loads only: {parse:,.0f} events/s")


if __name__ == "__main__":
    main()
