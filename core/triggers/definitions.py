"""Trigger definitions: loading and validating ``config/triggers.yaml`` (``STREAMCDP_TRIGGERS_FILE``).

The file::

    version: 1
    guardrails:                            # optional: overrides the STREAMCDP_TRIGGER_* settings
      customer_caps: 2/1d,5/7d             # (same names and formats: core.triggers.guardrails)
      quiet_hours: 21:00-08:00
    triggers:
      - name: cart_abandonment             # the kind: lower case, digits, _
        description: cart left with items
        entry:                             # what starts it: events and/or a rule (at least one)
          events: [Product Added, Product Removed]
          when: count(cart) > 0            # segment rule language, over the profile after the event
          facts: repeated_views            # optional: a function of core.triggers.kinds.FACTS
          params: {min_views: 3}           # its parameters
        wait: {after: 30m, expires: 3d}    # after: delay since the latest entry event
                                           # as_soon_as: true, or before: FACT with lead: 3d
                                           # expires: how long after due it may still be sent
        exit:                              # what cancels it while it waits
          events: [Checkout Started, Order Completed]
          when: count(cart) == 0
        channels: [email, apppush]         # allowed, in order of preference
        priority: 50                       # 0..100, higher first
        content:                           # what goes in the message
          template: cart-reminder          # any scalar keys are passed to the sender
          items: cart                      # cart | entry (the entry's product) | none
          recommendations: 4               # how many related product ids (0: none)
          offer: {code: "CART-{trigger}", percent_off: 10}
        re_entry: 1d                       # after a send, how long before the customer may enter again
        cap: 1/1d                          # optional: this kind's frequency caps (default: kind_caps)
        holdout: 0.1                       # optional: this kind's holdout share (default: holdout_shares)

Everything is checked at load; every problem is reported as ``file:line:column: problem`` in one
``ConfigError``: unknown keys, unknown event names, rules that do not compile, a wait that can never
end (``before`` a fact no facts function provides, no entry at all), unknown channels or facts.
Entries with only a rule (no events) are evaluated when the customer's segments and scores are refreshed.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import yaml

from core.triggers.guardrails import Cap, Guardrails, parse_caps, parse_share
from core.triggers.kinds import FACTS, EntryFacts
from core.triggers.rules import (
    DEFAULT_AFFINITY_HALF_LIFE_S,
    Condition,
    FieldCatalog,
    Problems,
    RuleError,
    build_catalog,
    compile_condition,
    compose_yaml,
    parse_window,
    yaml_items,
    yaml_pairs,
    yaml_text,
)
from schemas.catalog import CHANNELS, TRACK_FAMILIES
from schemas.errors import ConfigError
from schemas.triggers import Fact

DEFAULT_TRIGGERS = Path(__file__).resolve().parent.parent.parent / "config" / "triggers.yaml"
MAX_FILE_BYTES = 1_000_000
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
TOP_KEYS = frozenset({"version", "guardrails", "triggers"})
TRIGGER_KEYS = frozenset(
    {"name", "description", "entry", "wait", "exit", "channels", "priority", "content", "re_entry", "cap", "holdout"}
)
ENTRY_KEYS = frozenset({"events", "when", "facts", "params"})
EXIT_KEYS = frozenset({"events", "when"})
WAIT_KEYS = frozenset({"after", "as_soon_as", "before", "lead", "expires"})
ITEM_SOURCES = ("cart", "entry", "none")
DEFAULT_EXPIRES_S = 3 * 86400.0
MAX_RECOMMENDATIONS = 20


@dataclass(frozen=True)
class Wait:
    """When an entered trigger becomes due: ``after`` seconds after the latest entry event, or ``lead``
    seconds before the time fact ``before`` (never before the entry); ``expires``: how long after that it
    may still be sent (later it is stale)."""

    after: float = 0.0
    before: str = ""
    lead: float = 0.0
    expires: float = DEFAULT_EXPIRES_S

    def due_at(self, last_entry_at: float, facts: Mapping[str, Fact]) -> float:
        if self.before:
            return max(last_entry_at, float(facts.get(self.before, last_entry_at)) - self.lead)
        return last_entry_at + self.after

    def describe(self) -> str:
        if self.before:
            return f"{_human(self.lead)} before {self.before}"
        return f"{_human(self.after)} after the last entry" if self.after else "as soon as entered"


def _human(seconds: float) -> str:
    """``1800`` → ``30m``: the largest unit of the rule language's durations that divides it."""
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


@dataclass(frozen=True)
class Content:
    """What the message carries besides the customer: items, recommendations, an offer, sender keys."""

    items: str = "none"
    recommendations: int = 0
    offer: Mapping[str, Fact] = field(default_factory=dict)
    extra: Mapping[str, Fact] = field(default_factory=dict)


@dataclass(frozen=True)
class TriggerDefinition:
    """One trigger kind as the file defines it (see the module docstring)."""

    name: str
    description: str = ""
    entry_events: frozenset[str] = frozenset()
    entry_rule: Condition | None = None
    facts: str = ""
    params: Mapping[str, Fact] = field(default_factory=dict)
    wait: Wait = Wait()
    exit_events: frozenset[str] = frozenset()
    exit_rule: Condition | None = None
    channels: tuple[str, ...] = ("email",)
    priority: int = 50
    content: Content = Content()
    re_entry: float = 0.0
    caps: tuple[Cap, ...] | None = None  # None: the guardrails' kind caps
    holdout: float | None = None  # None: the guardrails' holdout share of the kind
    line: int = 0

    @property
    def entry_facts(self) -> EntryFacts | None:
        return FACTS.get(self.facts) if self.facts else None

    @cached_property
    def reason_head(self) -> str:
        """How a payload's ``reason`` starts (then the entry time): written once per definition."""
        return f"{self.description or self.name}: entered "

    @cached_property
    def wait_text(self) -> str:
        """``wait.describe()``, written once per definition (every payload's ``reason`` quotes it)."""
        return self.wait.describe()


@dataclass(frozen=True)
class TriggerDefinitions:
    """Every definition, indexed for the per-event path; ``version`` changes with the file's bytes."""

    definitions: tuple[TriggerDefinition, ...] = ()
    source: str = "<memory>"
    version: str = ""
    guardrails: Mapping[str, str] = field(default_factory=dict)  # the file's overrides of the settings

    @cached_property
    def by_kind(self) -> dict[str, TriggerDefinition]:
        return {definition.name: definition for definition in self.definitions}

    @cached_property
    def by_entry_event(self) -> dict[str, tuple[TriggerDefinition, ...]]:
        index: dict[str, list[TriggerDefinition]] = {}
        for definition in self.definitions:
            for name in definition.entry_events:
                index.setdefault(name, []).append(definition)
        return {name: tuple(found) for name, found in index.items()}

    @cached_property
    def rule_only(self) -> tuple[TriggerDefinition, ...]:
        """Definitions entered by a rule alone (evaluated at a refresh of segments and scores)."""
        return tuple(d for d in self.definitions if not d.entry_events)

    @cached_property
    def exit_events(self) -> frozenset[str]:
        return frozenset(name for d in self.definitions for name in d.exit_events)


class _Reader:
    """Reads one definition node by node, adding each problem with its line and column."""

    def __init__(self, problems: Problems, catalog: FieldCatalog, affinity_half_life_s: float) -> None:
        self.problems = problems
        self.catalog = catalog
        self.affinity_half_life_s = affinity_half_life_s

    def scalar(self, node: yaml.Node, what: str) -> str | None:
        return yaml_text(node, self.problems, what)

    def duration(self, node: yaml.Node, what: str) -> float | None:
        text = self.scalar(node, what)
        if text is None:
            return None
        try:
            return parse_window(text)
        except RuleError as exc:
            self.problems.add(node, f"{what}: {exc}")
            return None

    def number(self, node: yaml.Node, what: str, low: float, high: float) -> float | None:
        text = self.scalar(node, what)
        try:
            value = float(text) if text is not None else None
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            self.problems.add(node, f"{what} must be a number in [{low:g}, {high:g}], got {text!r}")
            return None
        return value

    def parsed(self, node: yaml.Node, what: str, parse):
        text = self.scalar(node, what)
        if text is None:
            return None
        try:
            return parse(text)
        except ValueError as exc:
            self.problems.add(node, f"{what}: {exc}")
            return None

    def guardrails(self, node: yaml.Node) -> dict[str, str]:
        texts = {str(k): str(v) for k, v in self.scalars(node, "guardrails").items()}
        try:
            Guardrails.from_texts(texts)
        except ConfigError as exc:
            self.problems.add(node, str(exc))
        return texts

    def scalars(self, node: yaml.Node, what: str) -> dict[str, Fact]:
        values: dict[str, Fact] = {}
        if not isinstance(node, yaml.MappingNode):
            self.problems.add(node, f"{what} must be a mapping of names to values")
            return values
        for key, value in node.value:
            if not isinstance(value, yaml.ScalarNode):
                self.problems.add(value, f"{what}.{key.value}: must be a single value")
                continue
            values[str(key.value)] = _scalar_value(value)
        return values

    def events(self, node: yaml.Node, what: str) -> frozenset[str]:
        names: set[str] = set()
        for item in yaml_items(node, self.problems, what):
            name = self.scalar(item, what)
            if name is None:
                continue
            if name not in TRACK_FAMILIES:
                self.problems.add(item, f"unknown event name {name[:80]!r} in {what}")
                continue
            names.add(name)
        return frozenset(names)

    def rule(self, node: yaml.Node, what: str) -> Condition | None:
        text = self.scalar(node, what)
        if text is None:
            return None
        try:
            return compile_condition(text, self.catalog, self.affinity_half_life_s)
        except RuleError as exc:
            self.problems.add(node, f"{what}: {exc}", exc.column)
            return None

    def definition(self, node: yaml.Node, names: set[str]) -> TriggerDefinition | None:
        pairs = yaml_pairs(node, self.problems, "trigger", TRIGGER_KEYS)
        if not isinstance(node, yaml.MappingNode):
            return None
        name = self._name(pairs, node, names)
        what = f"trigger {name or '?'!r}"
        values: dict = {"name": name or "", "line": node.start_mark.line + 1}
        if "description" in pairs:
            values["description"] = self.scalar(pairs["description"][1], "description") or ""
        if "entry" not in pairs:
            self.problems.add(node, f"{what} has no 'entry': it could never start")
        else:
            self._entry(pairs["entry"][1], what, values)
        if "wait" in pairs:
            values["wait"] = self._wait(pairs["wait"][1], what, values.get("facts", ""))
        else:
            self.problems.add(node, f"{what} has no 'wait' (use `wait: {{as_soon_as: true}}` for no delay)")
        if "exit" in pairs:
            self._exit(pairs["exit"][1], what, values)
        if "channels" in pairs:
            values["channels"] = self._channels(pairs["channels"][1], what)
        if "priority" in pairs:
            priority = self.number(pairs["priority"][1], f"priority of {what}", 0, 100)
            values["priority"] = int(priority) if priority is not None else 50
        if "content" in pairs:
            values["content"] = self._content(pairs["content"][1], what)
        if "re_entry" in pairs:
            values["re_entry"] = self.duration(pairs["re_entry"][1], f"re_entry of {what}") or 0.0
        self._own_guardrails(pairs, what, values)
        if name is None:
            return None
        return TriggerDefinition(**{k: v for k, v in values.items() if v is not None})

    def _name(self, pairs: dict, node: yaml.Node, names: set[str]) -> str | None:
        if "name" not in pairs:
            self.problems.add(node, "trigger has no 'name'")
            return None
        name_node = pairs["name"][1]
        name = self.scalar(name_node, "name")
        if name is None:
            return None
        if not NAME_RE.match(name):
            self.problems.add(name_node, f"bad name {name[:80]!r}: use lower case letters, digits and _ (max 64)")
            return None
        if name in names:
            self.problems.add(name_node, f"duplicate trigger name {name!r}")
            return None
        names.add(name)
        return name

    def _own_guardrails(self, pairs: dict, what: str, values: dict) -> None:
        """The definition's own ``cap`` and ``holdout`` (else the guardrails' kind caps and holdout share)."""
        if "cap" in pairs:
            values["caps"] = self.parsed(pairs["cap"][1], f"cap of {what}", parse_caps)
        if "holdout" in pairs:
            values["holdout"] = self.parsed(pairs["holdout"][1], f"holdout of {what}", parse_share)

    def _exit(self, node: yaml.Node, what: str, values: dict) -> None:
        pairs = yaml_pairs(node, self.problems, f"exit of {what}", EXIT_KEYS)
        if "events" in pairs:
            values["exit_events"] = self.events(pairs["events"][1], f"exit events of {what}")
        if "when" in pairs:
            values["exit_rule"] = self.rule(pairs["when"][1], f"exit rule of {what}")

    def _entry(self, node: yaml.Node, what: str, values: dict) -> None:
        pairs = yaml_pairs(node, self.problems, f"entry of {what}", ENTRY_KEYS)
        if "events" in pairs:
            values["entry_events"] = self.events(pairs["events"][1], f"entry events of {what}")
        if "when" in pairs:
            values["entry_rule"] = self.rule(pairs["when"][1], f"entry rule of {what}")
        if isinstance(node, yaml.MappingNode) and "events" not in pairs and "when" not in pairs:
            self.problems.add(node, f"entry of {what} has neither 'events' nor 'when': it could never start")
        facts: EntryFacts | None = None
        if "facts" in pairs:
            name = self.scalar(pairs["facts"][1], "facts") or ""
            facts = FACTS.get(name)
            if facts is None:
                known = ", ".join(sorted(FACTS))
                self.problems.add(pairs["facts"][1], f"unknown facts function {name[:80]!r} (known: {known})")
            else:
                values["facts"] = name
        params = dict(facts.params) if facts is not None else {}
        if "params" in pairs:
            given = self.scalars(pairs["params"][1], f"params of {what}")
            for key in given:
                if key not in params:
                    allowed = ", ".join(sorted(params)) or "none"
                    self.problems.add(pairs["params"][1], f"unknown param {key!r} of {what} (allowed: {allowed})")
            params.update({k: v for k, v in given.items() if k in params})
        values["params"] = params

    def _wait(self, node: yaml.Node, what: str, facts_name: str) -> Wait | None:
        if isinstance(node, yaml.ScalarNode) and node.value in ("as_soon_as", "now"):
            return Wait()
        pairs = yaml_pairs(node, self.problems, f"wait of {what}", WAIT_KEYS)
        if not isinstance(node, yaml.MappingNode):
            return None
        chosen = [key for key in ("after", "as_soon_as", "before") if key in pairs]
        if len(chosen) != 1:
            self.problems.add(node, f"wait of {what} needs exactly one of after, as_soon_as, before")
            return None
        wait = Wait()
        if "expires" in pairs:
            expires = self.duration(pairs["expires"][1], f"expires of {what}")
            if expires is not None and expires <= 0:
                self.problems.add(pairs["expires"][1], f"expires of {what} must be positive: it would never be sent")
            wait = Wait(expires=expires or DEFAULT_EXPIRES_S)
        if "after" in pairs:
            after = self.duration(pairs["after"][1], f"wait.after of {what}")
            return Wait(after=after or 0.0, expires=wait.expires)
        if "as_soon_as" in pairs:
            if self.scalar(pairs["as_soon_as"][1], "as_soon_as") not in ("true", "yes"):
                self.problems.add(pairs["as_soon_as"][1], f"wait.as_soon_as of {what} must be true")
            return wait
        fact = self.scalar(pairs["before"][1], "before") or ""
        provided = FACTS[facts_name].provides if facts_name in FACTS else frozenset()
        if fact not in provided:
            offer = (
                f"its facts function provides {', '.join(sorted(provided))}" if provided else "it has no entry facts"
            )
            self.problems.add(
                pairs["before"][1], f"wait of {what} counts back from {fact!r}, which is never known ({offer})"
            )
        lead = self.duration(pairs["lead"][1], f"wait.lead of {what}") if "lead" in pairs else 0.0
        return Wait(before=fact, lead=lead or 0.0, expires=wait.expires)

    def _channels(self, node: yaml.Node, what: str) -> tuple[str, ...] | None:
        channels: list[str] = []
        for item in yaml_items(node, self.problems, f"channels of {what}"):
            channel = self.scalar(item, "channel")
            if channel is None:
                continue
            if channel not in CHANNELS:
                self.problems.add(item, f"unknown channel {channel[:40]!r} (known: {', '.join(sorted(CHANNELS))})")
            elif channel not in channels:
                channels.append(channel)
        if not channels:
            self.problems.add(node, f"{what} allows no channel: it could never be sent")
            return None
        return tuple(channels)

    def _content(self, node: yaml.Node, what: str) -> Content | None:
        if not isinstance(node, yaml.MappingNode):
            self.problems.add(node, f"content of {what} must be a mapping")
            return None
        items, recommendations, offer, extra = "none", 0, {}, {}
        for key, value in node.value:
            name = str(key.value)
            if name == "items":
                items = self.scalar(value, "content.items") or "none"
                if items not in ITEM_SOURCES:
                    self.problems.add(value, f"content.items of {what} must be one of {', '.join(ITEM_SOURCES)}")
            elif name == "recommendations":
                count = self.number(value, f"content.recommendations of {what}", 0, MAX_RECOMMENDATIONS)
                recommendations = int(count or 0)
            elif name == "offer":
                offer = self.scalars(value, f"content.offer of {what}")
            elif isinstance(value, yaml.ScalarNode):
                extra[name] = _scalar_value(value)
            else:
                self.problems.add(value, f"content.{name} of {what} must be a single value")
        return Content(items=items, recommendations=recommendations, offer=offer, extra=extra)


def _scalar_value(node: yaml.ScalarNode) -> Fact:
    """A YAML scalar as the safe loader would type it (str, int, float or bool), never anything else."""
    loader = yaml.SafeLoader("")
    try:
        value = loader.construct_object(node)
    finally:
        loader.dispose()
    return value if isinstance(value, (str, int, float, bool)) else str(node.value)


def parse_triggers(
    text: str,
    *,
    source: str = "<memory>",
    catalog: FieldCatalog | None = None,
    affinity_half_life_s: float = DEFAULT_AFFINITY_HALF_LIFE_S,
) -> TriggerDefinitions:
    """YAML text → checked ``TriggerDefinitions``; raises ``ConfigError`` listing every problem.

    ``affinity_half_life_s``: how fast the rules' ``affinity(...)`` decays (the profile policy's value).
    """
    problems = Problems(source)
    root = compose_yaml(text, source, "a mapping with 'triggers'")
    top = yaml_pairs(root, problems, "the file", TOP_KEYS)
    if "version" in top and top["version"][1].value != "1":
        problems.add(top["version"][1], f"unsupported version {top['version'][1].value!r} (this reader knows 1)")
    if "triggers" not in top and isinstance(root, yaml.MappingNode):
        problems.add(root, "no 'triggers' list")
    reader = _Reader(problems, catalog or build_catalog(), affinity_half_life_s)
    names: set[str] = set()
    definitions = [
        reader.definition(item, names)
        for item in (yaml_items(top["triggers"][1], problems, "triggers") if "triggers" in top else [])
    ]
    guardrails = reader.guardrails(top["guardrails"][1]) if "guardrails" in top else {}
    if problems.items:
        count = len(problems.items)
        message = f"{source}: {count} problem{'s' if count > 1 else ''}\n" + "\n".join(problems.items)
        raise ConfigError(message)
    version = hashlib.sha256(text.encode()).hexdigest()[:16]
    return TriggerDefinitions(tuple(d for d in definitions if d is not None), source, version, guardrails)


def load_triggers(
    path: str | Path | None = None,
    *,
    catalog: FieldCatalog | None = None,
    affinity_half_life_s: float = DEFAULT_AFFINITY_HALF_LIFE_S,
) -> TriggerDefinitions:
    """Read and check a trigger definitions file (default ``config/triggers.yaml``).

    ``affinity_half_life_s``: as for ``parse_triggers``; the worker passes the profile policy's value
    (``streams.stage_config.load_trigger_policy``).
    """
    path = Path(path) if path is not None else DEFAULT_TRIGGERS
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            message = f"{path}: file larger than {MAX_FILE_BYTES} bytes"
            raise ConfigError(message)
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        message = f"{path}: cannot read: {exc}"
        raise ConfigError(message) from None
    return parse_triggers(text, source=str(path), catalog=catalog, affinity_half_life_s=affinity_half_life_s)
