"""The ``streamcdp`` parser: a built-in subcommand (``worker``: every worker process and its supervisor)
is parsed without importing the command modules; any other command line gets every subcommand."""

from __future__ import annotations

import json
import subprocess
import sys

from streams.cli import COMMAND_MODULES, build_parser

IMPORTED_AFTER = """
import json, sys
from streams.cli import COMMAND_MODULES, build_parser
args = build_parser({argv!r}).parse_args({argv!r})
print(json.dumps({{"command": args.command, "imported": [m for m in COMMAND_MODULES if m in sys.modules]}}))
"""


def parse_in_a_fresh_interpreter(argv: list[str]) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", IMPORTED_AFTER.format(argv=argv)], check=True, capture_output=True, text=True
    )
    return json.loads(done.stdout)


def test_a_worker_command_line_imports_none_of_the_command_modules():
    parsed = parse_in_a_fresh_interpreter(["worker", "--processes", "2"])
    assert parsed == {"command": "worker", "imported": []}


def test_another_command_line_gets_every_subcommand():
    parsed = parse_in_a_fresh_interpreter(["segments", "check"])
    assert parsed["command"] == "segments"
    assert parsed["imported"] == list(COMMAND_MODULES)


def test_the_full_parser_lists_the_built_in_and_the_registered_subcommands():
    sub = next(action for action in build_parser()._actions if action.dest == "command")
    assert {"kafka", "topics", "worker", "settings", "traits", "produce", "segments", "senders"} <= set(sub.choices)
