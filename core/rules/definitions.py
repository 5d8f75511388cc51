"""Segment definitions: loading and validating the YAML file (default ``config/segments.yaml``).

The file (all keys but ``segments`` optional)::

    version: 1
    consumables:                      # replenishment cycles in days, for replenishment_due()
      categories: {dog food: 30}
      products: {sku-1: 28}
      product_categories: {sku-1: dog food}
    segments:                         # independent: a customer is in every one that matches
      - name: vip
        description: big spenders
        when: revenue >= 50000 and orders >= 3
    groups:                           # waterfalls: a customer is in the FIRST segment that matches
      - name: outdoor_persona
        segments:
          - {name: climbers, when: 'viewed_category("climbing", within=30d)'}
          - {name: campers,  when: 'viewed_category("camping", within=30d)'}

``when`` is a rule in the language of ``core.rules`` (grammar: ``core.rules.parser``). Loading checks
everything up front — structure, names, rule syntax, field names (against the real ``Profile``), types,
functions, windows — and raises one ``ConfigError`` listing every problem as ``file:line:column: problem``.
The YAML is read with ``yaml.compose`` so each node keeps its line; nothing in it is ever executed.

``affinity_half_life_s`` (``parse_definitions``, ``load_definitions``): how fast ``affinity(...)`` decays
when the rules read it; it is compiled into every rule's closures and breakpoints.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from core.replenishment import ConsumableCatalog, catalog_from_mapping
from core.rules.analysis import depends_on_time, referenced_fields, time_atoms
from core.rules.compiler import compile_breakpoints, compile_node
from core.rules.context import DEFAULT_AFFINITY_HALF_LIFE_S, Context
from core.rules.parser import compile_rule
from core.rules.tokens import RuleError
from core.segment_fields import FieldCatalog, build_catalog
from schemas.errors import ConfigError

DEFAULT_DEFINITIONS = Path(__file__).resolve().parents[2] / "config" / "segments.yaml"
MAX_FILE_BYTES = 1_000_000
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
SEGMENT_KEYS = frozenset({"name", "when", "description"})
GROUP_KEYS = frozenset({"name", "segments", "description"})
TOP_KEYS = frozenset({"version", "segments", "groups", "consumables"})


@dataclass(frozen=True)
class SegmentRule:
    """One segment: its name, the rule text and its compiled condition; ``group`` if in a waterfall.

    ``affinity_half_life_s``: how fast ``affinity(...)`` decays in this rule (compiled into ``evaluate``).
    """

    name: str
    rule: str
    condition: Any
    description: str = ""
    group: str | None = None
    line: int = 0
    affinity_half_life_s: float = DEFAULT_AFFINITY_HALF_LIFE_S
    # ``condition`` compiled to closures (``compile_node``), once: what evaluation calls.
    evaluate: Callable[[Context], bool] = field(init=False, repr=False, compare=False)
    # Whether time alone can change the answer: ``next_time_change`` re-evaluates only such rules.
    timed: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "evaluate", compile_node(self.condition, self.affinity_half_life_s))
        object.__setattr__(self, "timed", depends_on_time(self.condition))


@dataclass(frozen=True)
class WaterfallGroup:
    """Ordered segments; a customer belongs to the first that matches (at most one per group)."""

    name: str
    segments: tuple[SegmentRule, ...]
    description: str = ""


@dataclass(frozen=True)
class SegmentDefinitions:
    """Everything ``evaluate_segments`` needs: independent segments, waterfall groups, consumables.

    ``affinity_half_life_s``: how fast ``affinity(...)`` decays, the same in every rule (checked here) and
    in the compiled breakpoints.
    """

    independent: tuple[SegmentRule, ...] = ()
    groups: tuple[WaterfallGroup, ...] = ()
    consumables: ConsumableCatalog | None = None
    source: str = "<memory>"
    affinity_half_life_s: float = DEFAULT_AFFINITY_HALF_LIFE_S

    def __post_init__(self) -> None:
        other = {rule.affinity_half_life_s for rule in self.rules} - {self.affinity_half_life_s}
        if other:
            half_life = self.affinity_half_life_s
            message = f"{self.source}: rules compiled with affinity half-life {sorted(other)}, not {half_life}"
            raise ValueError(message)

    @cached_property
    def rules(self) -> tuple[SegmentRule, ...]:
        return (*self.independent, *(rule for group in self.groups for rule in group.segments))

    @cached_property
    def _rule_by_name(self) -> dict[str, SegmentRule]:
        by_name: dict[str, SegmentRule] = {}
        for rule in self.rules:
            by_name.setdefault(rule.name, rule)  # the first of a name, as a scan would find
        return by_name

    def rule(self, name: str) -> SegmentRule | None:
        return self._rule_by_name.get(name)

    @cached_property
    def breakpoints(self) -> tuple[Callable[[Context], Iterable[float]], ...]:
        """Per time-driven atom of any rule (each once): its compiled flip instants (``compile_breakpoints``)."""
        atoms = dict.fromkeys(atom for rule in self.rules for atom in time_atoms(rule.condition))
        return tuple(compile_breakpoints(atom, self.affinity_half_life_s) for atom in atoms)

    @cached_property
    def view_fields(self) -> frozenset[str] | None:
        """The profile-view keys the rules read (for ``profile_view(fields=...)``); None: not known."""
        names: set[str] = set()
        for rule in self.rules:
            fields = referenced_fields(rule.condition)
            if fields is None:
                return None
            names |= fields
        return frozenset(names)


class _Problems:
    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[str] = []

    def add(self, node: yaml.Node | None, message: str, column_offset: int | None = None) -> None:
        if node is None:
            self.items.append(f"{self.source}: {message}")
            return
        line, column = node.start_mark.line + 1, node.start_mark.column + 1
        if column_offset is not None and isinstance(node, yaml.ScalarNode):
            if node.style in ("|", ">"):
                column = 0
                line += 1
            elif node.style in ("'", '"'):
                column += 1 + column_offset
            else:
                column += column_offset
        where = f"{line}:{column}" if column else f"{line}"
        self.items.append(f"{self.source}:{where}: {message}")


def _pairs(node: yaml.Node, problems: _Problems, what: str, allowed: frozenset[str]) -> dict[str, tuple]:
    if not isinstance(node, yaml.MappingNode):
        problems.add(node, f"{what} must be a mapping")
        return {}
    pairs: dict[str, tuple] = {}
    for key, value in node.value:
        name = key.value if isinstance(key, yaml.ScalarNode) else str(key)
        if name not in allowed:
            problems.add(key, f"unknown key {name!r} in {what} (allowed: {', '.join(sorted(allowed))})")
        elif name in pairs:
            problems.add(key, f"duplicate key {name!r} in {what}")
        else:
            pairs[name] = (key, value)
    return pairs


def _text(node: yaml.Node, problems: _Problems, what: str) -> str | None:
    if not isinstance(node, yaml.ScalarNode):
        problems.add(node, f"{what} must be a single value (a string), not a list or mapping")
        return None
    return node.value


def _segment(
    node: yaml.Node,
    group: str | None,
    catalog: FieldCatalog,
    problems: _Problems,
    names: set[str],
    *,
    affinity_half_life_s: float,
) -> SegmentRule | None:
    what = f"segment in group {group!r}" if group else "segment"
    pairs = _pairs(node, problems, what, SEGMENT_KEYS)
    if not pairs and not isinstance(node, yaml.MappingNode):
        return None
    name = _name(pairs, node, problems, what, names)
    if "when" not in pairs:
        problems.add(node, f"{what} {name or '?'!r} has no 'when' rule")
        return None
    when_node = pairs["when"][1]
    rule = _text(when_node, problems, f"'when' of {name!r}")
    description = _text(pairs["description"][1], problems, "description") if "description" in pairs else ""
    if rule is None:
        return None
    try:
        condition = compile_rule(rule, catalog)
    except RuleError as exc:
        problems.add(when_node, f"segment {name or '?'!r}: {exc}", exc.column)
        return None
    if name is None:
        return None
    line = when_node.start_mark.line + 1
    return SegmentRule(name, rule.strip(), condition, description or "", group, line, affinity_half_life_s)


def _name(pairs: dict, node: yaml.Node, problems: _Problems, what: str, names: set[str]) -> str | None:
    if "name" not in pairs:
        problems.add(node, f"{what} has no 'name'")
        return None
    name_node = pairs["name"][1]
    name = _text(name_node, problems, "name")
    if name is None:
        return None
    if not NAME_RE.match(name):
        problems.add(name_node, f"bad name {name[:80]!r}: use lower case letters, digits and _ (max 64)")
        return None
    if name in names:
        problems.add(name_node, f"duplicate name {name!r} (segment and group names are unique per file)")
        return None
    names.add(name)
    return name


def _items(node: yaml.Node, problems: _Problems, what: str) -> list[yaml.Node]:
    if not isinstance(node, yaml.SequenceNode):
        problems.add(node, f"{what} must be a list")
        return []
    return list(node.value)


def parse_definitions(
    text: str,
    *,
    source: str = "<memory>",
    catalog: FieldCatalog | None = None,
    consumables: ConsumableCatalog | None = None,
    affinity_half_life_s: float = DEFAULT_AFFINITY_HALF_LIFE_S,
) -> SegmentDefinitions:
    """YAML text → checked ``SegmentDefinitions``; raises ``ConfigError`` listing every problem.

    ``affinity_half_life_s``: how fast the rules' ``affinity(...)`` decays (the profile policy's value).
    """
    problems = _Problems(source)
    catalog = catalog or build_catalog()
    root = compose_yaml(text, source, "a mapping with 'segments' and/or 'groups'")
    top = _pairs(root, problems, "the file", TOP_KEYS)
    if "version" in top and top["version"][1].value not in ("1",):
        problems.add(top["version"][1], f"unsupported version {top['version'][1].value!r} (this reader knows 1)")
    names: set[str] = set()
    segment_nodes = _items(top["segments"][1], problems, "segments") if "segments" in top else []
    independent = [
        _segment(node, None, catalog, problems, names, affinity_half_life_s=affinity_half_life_s)
        for node in segment_nodes
    ]
    group_nodes = _items(top["groups"][1], problems, "groups") if "groups" in top else []
    groups = [_group(node, catalog, problems, names, affinity_half_life_s) for node in group_nodes]
    if "segments" not in top and "groups" not in top and isinstance(root, yaml.MappingNode):
        problems.add(root, "no 'segments' and no 'groups': nothing to evaluate")
    if "consumables" in top:
        consumables = _consumables(top["consumables"][1], problems) or consumables
    if problems.items:
        count = len(problems.items)
        message = f"{source}: {count} problem{'s' if count > 1 else ''}\n" + "\n".join(problems.items)
        raise ConfigError(message)
    return SegmentDefinitions(
        tuple(rule for rule in independent if rule is not None),
        tuple(group for group in groups if group is not None),
        consumables,
        source,
        affinity_half_life_s,
    )


def compose_yaml(text: str, source: str, expected: str) -> yaml.Node:
    """The YAML document's root node (with lines and columns, for file:line errors); a ``ConfigError`` if it
    is not YAML or empty (``expected`` says what the file should hold). Shared by every definition file."""
    try:
        loader = yaml.SafeLoader(text)
        try:
            root = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        message = f"{source}{where}: not valid YAML: {getattr(exc, 'problem', None) or exc}"
        raise ConfigError(message) from None
    except RecursionError:
        message = f"{source}: YAML nested too deeply"
        raise ConfigError(message) from None
    if root is None:
        message = f"{source}: empty file (expected {expected})"
        raise ConfigError(message)
    return root


def _group(
    node: yaml.Node, catalog: FieldCatalog, problems: _Problems, names: set[str], affinity_half_life_s: float
) -> WaterfallGroup | None:
    pairs = _pairs(node, problems, "group", GROUP_KEYS)
    group_name = _name(pairs, node, problems, "group", names) if pairs else None
    if "segments" not in pairs:
        if pairs:
            problems.add(node, f"group {group_name or '?'!r} has no 'segments' list")
        return None
    segments_node = pairs["segments"][1]
    members = [
        _segment(member, group_name, catalog, problems, names, affinity_half_life_s=affinity_half_life_s)
        for member in _items(segments_node, problems, f"segments of group {group_name!r}")
    ]
    if not members and isinstance(segments_node, yaml.SequenceNode):
        problems.add(segments_node, f"group {group_name!r} has no segments")
    description = _text(pairs["description"][1], problems, "description") if "description" in pairs else ""
    if group_name is None:
        return None
    return WaterfallGroup(group_name, tuple(m for m in members if m is not None), description or "")


def _consumables(node: yaml.Node, problems: _Problems) -> ConsumableCatalog | None:
    loader = yaml.SafeLoader("")
    try:
        data = loader.construct_object(node, deep=True)
    except yaml.YAMLError as exc:
        problems.add(node, f"consumables: {exc}")
        return None
    finally:
        loader.dispose()
    try:
        return catalog_from_mapping(data, source="consumables")
    except ConfigError as exc:
        problems.add(node, str(exc))
        return None


def load_definitions(
    path: str | Path | None = None,
    *,
    catalog: FieldCatalog | None = None,
    consumables: ConsumableCatalog | None = None,
    affinity_half_life_s: float = DEFAULT_AFFINITY_HALF_LIFE_S,
) -> SegmentDefinitions:
    """Read and check a definitions file (default ``config/segments.yaml``).

    ``affinity_half_life_s``: how fast the rules' ``affinity(...)`` decays; the worker passes the profile
    policy's value (``streams.stage_config.load_audience_policy``).
    """
    path = Path(path) if path is not None else DEFAULT_DEFINITIONS
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            message = f"{path}: file larger than {MAX_FILE_BYTES} bytes"
            raise ConfigError(message)
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        message = f"{path}: cannot read: {exc}"
        raise ConfigError(message) from None
    return parse_definitions(
        text, source=str(path), catalog=catalog, consumables=consumables, affinity_half_life_s=affinity_half_life_s
    )
