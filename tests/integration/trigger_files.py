"""Trigger definition files for the integration tests: the shipped file with test-sized waits and rules."""

from __future__ import annotations

from pathlib import Path

import yaml

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "triggers.yaml"
# No definitions at all: for tests where a trigger would only add unrelated commands and messages.
NO_TRIGGERS = Path(__file__).resolve().parent / "no_triggers.yaml"


def fast_triggers(
    directory: Path, *, waits: dict[str, dict] | None = None, rules: dict[str, str] | None = None
) -> Path:
    """A copy of ``config/triggers.yaml`` in ``directory`` with ``waits`` (kind → wait mapping) and entry
    ``rules`` (kind → ``when``) replaced; checked like any definitions file when the worker starts."""
    document = yaml.safe_load(SHIPPED.read_text())
    for definition in document["triggers"]:
        name = definition["name"]
        if waits and name in waits:
            definition["wait"] = waits[name]
        if rules and name in rules:
            definition["entry"]["when"] = rules[name]
    path = directory / "triggers-fast.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path
