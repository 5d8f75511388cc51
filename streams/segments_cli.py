"""``streamcdp segments ...``: check a segment definitions file, or evaluate it against one profile."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import orjson

from core.rules.definitions import DEFAULT_DEFINITIONS, load_definitions
from core.rules.functions import describe_functions
from core.segment_eval import evaluate_segments, explain_segments, next_time_change
from schemas.errors import ConfigError
from streams.settings import Settings


def _check(args: argparse.Namespace, settings: Settings) -> int:
    definitions = load_definitions(args.file)
    grouped = sum(len(group.segments) for group in definitions.groups)
    print(
        f"OK {args.file}: {len(definitions.independent)} independent segment(s), "
        f"{len(definitions.groups)} waterfall group(s) with {grouped} segment(s)"
    )
    return 0


def _eval(args: argparse.Namespace, settings: Settings) -> int:
    definitions = load_definitions(args.file)
    try:
        document = orjson.loads(Path(args.profile).read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        message = f"{args.profile}: cannot read profile JSON: {exc}"
        raise ConfigError(message) from None
    if not isinstance(document, dict):
        message = f"{args.profile}: a profile must be a JSON object"
        raise ConfigError(message)
    members = evaluate_segments(definitions, document, now=args.now)
    report = {
        "segments": sorted(members),
        "rules": explain_segments(definitions, document, now=args.now),
        "next_time_change": next_time_change(definitions, document, now=args.now),
    }
    sys.stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``segments check FILE`` and ``segments eval FILE --profile P --now T``."""
    parser = subparsers.add_parser(
        "segments",
        help="check or try segment definitions",
        description="Segment definitions (default config/segments.yaml). Rule functions:\n" + describe_functions(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="segments_action", required=True)
    check = actions.add_parser(
        "check", help="validate a definitions file: prints OK with counts, or the errors (exit 2)"
    )
    check.add_argument("file", nargs="?", default=str(DEFAULT_DEFINITIONS))
    check.set_defaults(handler=_check)
    evaluate = actions.add_parser("eval", help="evaluate the definitions against one profile (JSON view)")
    evaluate.add_argument("file", nargs="?", default=str(DEFAULT_DEFINITIONS))
    evaluate.add_argument("--profile", required=True, help="a JSON file: the profile's builtins or API document")
    evaluate.add_argument("--now", type=float, required=True, help="epoch seconds to evaluate at")
    evaluate.set_defaults(handler=_eval)
