"""``streamcdp generate``: a seeded synthetic omnichannel workload as JSONL, or straight into Kafka.

The events and the ground truth come from the pure ``offline.generator``; this module only picks the start
time (default: now − days, so every timestamp is recent enough for the skew checks), writes the lines
(``--out``) or sends them through ``streams.produce`` (``--produce``, lines routed by family, sent as-is
so corrupted lines reach the dead-letter path), paces them (``--rate``) and writes the truth (``--truth``).
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import IO

import orjson

from offline.generator import WorkloadConfig, generate_workload
from schemas.errors import InvalidEvent, StreamcdpError
from schemas.validation import parse_timestamp
from streams.produce import KafkaSender, Progress, Rejected, Routed, create_topics, produce_lines, report, route_line
from streams.settings import Settings
from streams.topics import topic_names


def parse_start(text: str | None, days: float, now: float) -> float:
    """``--start`` (ISO-8601 or epoch seconds) → epoch seconds; absent: ``now - days``."""
    if text is None:
        return now - days * 86400.0
    try:
        return parse_timestamp(float(text) if text.replace(".", "", 1).isdigit() else text)
    except InvalidEvent:
        message = f"--start {text!r} is neither ISO-8601 nor epoch seconds"
        raise StreamcdpError(message) from None


def write_truth(path: str, truth: dict, sent: int) -> None:
    document = {**truth, "lines_written": sent}
    Path(path).write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")


def _cmd_generate(args: argparse.Namespace, settings: Settings) -> int:
    if args.out is None and not args.produce:
        message = "give --out FILE (or - for stdout) and/or --produce"
        raise StreamcdpError(message)
    config = WorkloadConfig(
        start=parse_start(args.start, args.days, time.time()),
        customers=args.customers,
        days=args.days,
        seed=args.seed,
        corrupt_fraction=args.corrupt_fraction,
    )
    began = time.perf_counter()
    workload = generate_workload(config)
    generated_s = time.perf_counter() - began
    truth = workload.truth
    sys.stderr.write(
        f"generated {truth['events']} events + {truth['corrupted']} corrupted lines for {config.customers} customers "
        f"over {config.days:g} days in {generated_s:.2f} s "
        f"({len(workload.lines) / max(generated_s, 1e-9):.0f} events/s)\n"
    )
    topics = topic_names(settings)
    with ExitStack() as stack:
        sinks = []
        if args.out is not None:
            out: IO[bytes] = sys.stdout.buffer if args.out == "-" else stack.enter_context(Path(args.out).open("wb"))
            sinks.append(lambda routed: out.write(routed.value + b"\n"))
        sender = None
        if args.produce:
            create_topics(settings)
            sender = KafkaSender(settings)
            sinks.append(sender.send)

        def route(line: bytes) -> Routed | Rejected:
            return route_line(line, topics=topics, raw=True)

        def send(routed: Routed) -> None:
            for sink in sinks:
                sink(routed)

        progress = Progress(sys.stderr)
        numbered = (("<generated>", number, line) for number, line in enumerate(workload.lines, 1))
        try:
            summary = produce_lines(numbered, route, send, rate=args.rate, progress=progress)
        finally:
            summary_failed = sender.close() if sender is not None else 0
            progress.done()
    summary.failed = summary_failed
    if args.truth:
        write_truth(args.truth, truth, summary.sent)
    report(summary, sys.stderr)
    return 1 if summary.failed else 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="a seeded synthetic pet-shop and outdoor-retail workload (JSONL or Kafka)",
        description="Deterministic synthetic Segment Spec events for --customers shoppers over --days days, "
        "in timestamp order, with a ground-truth file (rules inside it).",
    )
    parser.add_argument("--customers", type=int, default=100, help="number of shoppers (default 100)")
    parser.add_argument("--days", type=float, default=30.0, help="length of the simulated window (default 30)")
    parser.add_argument("--seed", type=int, default=1, help="random seed: same seed and start, same bytes")
    parser.add_argument("--start", default=None, help="first moment, ISO-8601 or epoch s (default: now - days)")
    parser.add_argument("--rate", type=float, default=0.0, help="events per second when emitting (0: no limit)")
    parser.add_argument("--out", default=None, help="JSONL output file, - for stdout")
    parser.add_argument("--produce", action="store_true", help="send to the inbound topics (settings' broker)")
    parser.add_argument("--truth", default=None, help="write the ground truth (JSON) to this file")
    parser.add_argument(
        "--corrupt-fraction",
        type=float,
        default=0.0,
        help="extra corrupted lines, as a fraction of the valid events (counted in the truth)",
    )
    parser.set_defaults(handler=_cmd_generate)
