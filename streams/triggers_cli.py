"""``streamcdp triggers ...``: check a trigger definitions file; print the outcome table or the payload schema."""

from __future__ import annotations

import argparse
import sys

import orjson

from core.triggers.definitions import DEFAULT_TRIGGERS, load_triggers
from core.triggers.guards import describe_outcomes
from core.triggers.kinds import FACTS
from schemas.triggers import trigger_json_schema
from streams.settings import Settings


def _check(args: argparse.Namespace, settings: Settings) -> int:
    definitions = load_triggers(args.file)
    print(f"OK {args.file}: {len(definitions.definitions)} trigger(s)")
    for d in definitions.definitions:
        entry = ", ".join(sorted(d.entry_events)) or "rule only"
        print(f"  {d.name:<26} entry: {entry}; wait: {d.wait.describe()}; channels: {', '.join(d.channels)}")
    return 0


def _outcomes(args: argparse.Namespace, settings: Settings) -> int:
    print(describe_outcomes())
    return 0


def _schema(args: argparse.Namespace, settings: Settings) -> int:
    sys.stdout.write(orjson.dumps(trigger_json_schema(), option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``triggers check FILE`` and ``triggers outcomes``."""
    facts = "\n".join(f"  {name}: {f.doc}" for name, f in FACTS.items())
    parser = subparsers.add_parser(
        "triggers",
        help="check trigger definitions, list trigger outcomes",
        description="Trigger definitions (default config/triggers.yaml). Entry facts functions:\n" + facts,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="triggers_action", required=True)
    check = actions.add_parser("check", help="validate a definitions file: prints OK with a summary, or the errors")
    check.add_argument("file", nargs="?", default=str(DEFAULT_TRIGGERS))
    check.set_defaults(handler=_check)
    actions.add_parser("outcomes", help="the table of trigger outcomes (markdown)").set_defaults(handler=_outcomes)
    actions.add_parser("schema", help="the JSON Schema of the trigger payload").set_defaults(handler=_schema)
