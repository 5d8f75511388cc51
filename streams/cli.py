"""The ``streamcdp`` command: local Kafka, topics, worker, and the tools that feed the pipeline."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from schemas.errors import StreamcdpError
from streams.settings import Settings

log = logging.getLogger("streamcdp")


def _cmd_kafka(args: argparse.Namespace, settings: Settings) -> int:
    from streams import kafka_local

    if args.action == "start":
        pid = kafka_local.start(settings)
        print(
            f"Kafka running, pid {pid}, bootstrap 127.0.0.1:{settings.kafka_port}, "
            f"log {kafka_local.broker_paths(settings).run_dir / 'server.log'}"
        )
    elif args.action == "stop":
        stopped = kafka_local.stop(settings)
        print("Kafka stopped" if stopped else "Kafka was not running")
    elif args.action == "status":
        print(kafka_local.status(settings))
        return 0 if kafka_local.running_pid(settings) else 3
    elif args.action == "fetch":
        print(f"Kafka jars in {kafka_local.ensure_jars(settings)}")
    return 0


def _cmd_topics(args: argparse.Namespace, settings: Settings) -> int:
    from streams.topics import ensure_topics

    created = ensure_topics(settings)
    print(f"created {len(created)} topic(s)" + (f": {', '.join(created)}" if created else ""))
    return 0


def _cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    if args.processes is not None:
        from streams.supervisor import run_supervisor

        return run_supervisor(
            args.processes,
            max_restarts=args.max_restarts,
            restart_window_s=args.restart_window_s,
            stop_timeout_s=args.stop_timeout_s,
            settings=settings,
        )
    from streams.worker import run_worker

    run_worker()
    return 0


def _add_worker_parser(sub: argparse._SubParsersAction) -> None:
    worker = sub.add_parser("worker", help="run a worker process (or N of them: --processes)")
    worker.add_argument(
        "--processes",
        type=int,
        default=None,
        metavar="N",
        help="run N worker processes of this app id under a supervisor (streams/supervisor.py): child i uses "
        "DATA_DIR/process-i and web (and metrics) port WEB_PORT+i; default: this process is the one worker",
    )
    worker.add_argument(
        "--max-restarts",
        type=int,
        default=5,
        help="with --processes: restarts of one child within --restart-window-s before giving up (default 5)",
    )
    worker.add_argument(
        "--restart-window-s", type=float, default=300.0, help="with --processes: the restart window (default 300)"
    )
    worker.add_argument(
        "--stop-timeout-s",
        type=float,
        default=60.0,
        help="with --processes: seconds the children get to flush and leave the group before SIGKILL (default 60)",
    )
    worker.set_defaults(handler=_cmd_worker)


def _cmd_settings(args: argparse.Namespace, settings: Settings) -> int:
    print("| variable | default | meaning |\n|---|---|---|")
    for name, field in Settings.model_fields.items():
        print(f"| `STREAMCDP_{name.upper()}` | `{field.default}` | {field.description} |")
    return 0


def _cmd_traits(args: argparse.Namespace, settings: Settings) -> int:
    from core.traits import traits_table

    print(traits_table(), end="")
    return 0


# Modules that add their own subcommands: each has ``register(subparsers)`` setting ``handler(args, settings)``.
COMMAND_MODULES: tuple[str, ...] = (
    "streams.produce",
    "streams.generate",
    "streams.demo",
    "streams.segments_cli",
    "streams.triggers_cli",
    "streams.train_cli",
    "streams.lag_exporter",
    "streams.collector",
    "streams.report_cli",
    "streams.senders",
)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser of every subcommand; for ``argv`` naming one declared here (e.g. ``worker``), of those
    only: the command modules import what their commands need (the generator, the
    collector's web app, the models), which would cost each worker process, and its supervisor, about a
    second of CPU at every start."""
    parser = argparse.ArgumentParser(prog="streamcdp", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    kafka = sub.add_parser("kafka", help="the project's local single-node Kafka broker")
    kafka.add_argument("action", choices=["start", "stop", "status", "fetch"])
    kafka.set_defaults(handler=_cmd_kafka)
    sub.add_parser("topics", help="create the project's topics (idempotent)").set_defaults(handler=_cmd_topics)
    _add_worker_parser(sub)
    sub.add_parser("settings", help="print the settings table (markdown)").set_defaults(handler=_cmd_settings)
    sub.add_parser("traits", help="print the computed traits table (markdown)").set_defaults(handler=_cmd_traits)
    if argv and argv[0] in sub.choices:  # a built-in subcommand: the command modules are not needed
        return parser
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    settings = Settings()
    try:
        return args.handler(args, settings)
    except StreamcdpError as exc:
        print(f"streamcdp: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
