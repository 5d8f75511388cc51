"""The trigger engine's one door to the segment rule language (parser, compiler, YAML problem reporting).

Triggers reuse the segment language for ``entry.when`` and ``exit.when`` rather than growing a second one;
everything they need from it (``core.rules``, ``core.segment_fields``) is imported here, so moving the
language changes this file only. A ``Condition`` is a compiled rule with the view fields it reads.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import msgspec

from core.profile.policy import DEFAULT_POLICY, ProfilePolicy
from core.rules.analysis import depends_on_time, referenced_fields
from core.rules.compiler import _EMPTY, _NUMERIC, _ORDER_OPS, compile_node
from core.rules.context import DEFAULT_AFFINITY_HALF_LIFE_S, Context
from core.rules.definitions import _items as yaml_items
from core.rules.definitions import _pairs as yaml_pairs
from core.rules.definitions import _Problems as Problems
from core.rules.definitions import _text as yaml_text
from core.rules.definitions import compose_yaml
from core.rules.nodes import (
    Affinity,
    AffinityCompare,
    AgeCompare,
    And,
    Compare,
    Contains,
    Count,
    EventCount,
    Exists,
    FieldRef,
    In,
    ListLiteral,
    Literal,
    Not,
    Or,
)
from core.rules.parser import compile_rule
from core.rules.tokens import RuleError, parse_window
from core.segment_fields import DERIVED_FIELDS, FieldCatalog, build_catalog, profile_view, stored_as_viewed

__all__ = [
    "DEFAULT_AFFINITY_HALF_LIFE_S",
    "Condition",
    "FieldCatalog",
    "Problems",
    "RuleError",
    "build_catalog",
    "compile_condition",
    "compose_yaml",
    "parse_window",
    "profile_view",
    "yaml_items",
    "yaml_pairs",
    "yaml_text",
]


def _record_fields(record_type: Hashable) -> tuple[msgspec.inspect.Field, ...]:
    info = msgspec.inspect.type_info(record_type)
    return info.fields if isinstance(info, msgspec.inspect.StructType) else ()


@cache
def plain_fields(record_type: Hashable) -> frozenset[str]:
    """Fields of ``record_type`` whose values already are what the rule view holds (scalars, and dicts
    of scalars by string key): a rule reading only these (and ``record_lists``) needs no rendered view."""
    return frozenset(
        record_field.encode_name for record_field in _record_fields(record_type) if stored_as_viewed(record_field.type)
    )


@cache
def record_lists(record_type: Hashable) -> frozenset[str]:
    """Fields holding a tuple of records (the cart): in the view, a list of their dicts (``to_builtins``)."""
    return frozenset(
        record_field.encode_name
        for record_field in _record_fields(record_type)
        if isinstance(record_field.type, msgspec.inspect.VarTupleType)
        and isinstance(record_field.type.item_type, msgspec.inspect.StructType)
    )


@cache
def _direct_plan(
    record_type: Hashable, fields: frozenset[str], counted: frozenset[str] = frozenset()
) -> tuple[tuple[str, bool], ...] | None:
    """For a record type and the fields a rule reads: ``(name, is a record list to render)`` each, or None
    when some field needs the rendered view (derived traits, nested tuples). A record list the rule only
    counts (``counted``) is not rendered: ``count`` reads its length alone."""
    plain, lists = plain_fields(record_type), record_lists(record_type)
    if not fields <= plain | lists:
        return None
    return tuple((name, name in lists and name not in counted) for name in sorted(fields))


def _direct_view(profile: Any, fields: frozenset[str], counted: frozenset[str] = frozenset()) -> dict[str, Any] | None:
    """The view of ``fields`` read straight from the record (None: some field needs the rendered view)."""
    read = _direct_reader(type(profile), fields, counted)
    return None if read is None else read(profile)


def _direct_reader(
    record_type: Any, fields: frozenset[str], counted: frozenset[str] = frozenset()
) -> Callable[[Any], dict[str, Any]] | None:
    """``record → view of fields`` per ``_direct_plan`` (None: the rendered view is needed); one field, the
    usual case, without a loop. A counted-only record list is a list of the records themselves (as long
    as the rendered one)."""
    counted = counted & record_lists(record_type)
    plan = _direct_plan(record_type, fields, counted)
    if plan is None:
        return None
    if len(plan) == 1:
        name, render = plan[0]
        if not render and name in counted:
            return lambda record: {name: list(getattr(record, name))}
        if not render:
            return lambda record: {name: getattr(record, name)}
    return lambda record: {
        name: list(msgspec.to_builtins(getattr(record, name)))
        if render
        else (list(getattr(record, name)) if name in counted else getattr(record, name))
        for name, render in plan
    }


def counted_only(node: Any) -> frozenset[str]:
    """Top-level fields a rule reads only as ``count(field)``, never their content (none if not known)."""
    counted: set[str] = set()
    read: set[str] = set()
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, (And, Or)):
            stack.extend(current.items)
        elif isinstance(current, Not):
            stack.append(current.item)
        elif isinstance(current, (Compare, In, Contains)):
            stack.extend((current.left, current.right))
        elif isinstance(current, Count) and len(current.path) == 1:
            counted.add(current.path[0])
        elif isinstance(current, (FieldRef, Count, Exists, AgeCompare)):
            read.add(current.path[0])
        elif not isinstance(current, (Literal, ListLiteral, EventCount, Affinity, AffinityCompare)):
            return frozenset()  # a node this walk does not know: render everything
    return frozenset(counted - read)


RecordTest = Callable[[Any], bool]


def record_test(node: Any, record_type: Any, counted: frozenset[str]) -> RecordTest | None:
    """``record -> answer`` for the simplest rules, straight from the record's fields (no view, no
    ``Context``): ``count(LIST) OP number`` of a counted-only record list, ``FIELD OP number`` /
    ``SECTION.KEY OP number`` of scalar fields and dicts of scalars, ``exists(FIELD)``, and ``and`` /
    ``or`` / ``not`` of those; None for any other rule (``Condition.holds`` then renders its view).

    Each answer is the compiled closure's (``core.rules.compiler``: ``against_number``, ``read_nested``,
    ``exists``) on the view the record's direct reader would give; the unit tests compare the two."""
    plain, lists = plain_fields(record_type), record_lists(record_type)
    if isinstance(node, (And, Or)):
        items = [record_test(item, record_type, counted) for item in node.items]
        if any(item is None for item in items):
            return None
        tests = tuple(item for item in items if item is not None)
        return _all_of(tests) if isinstance(node, And) else _any_of(tests)
    if isinstance(node, Not):
        inner = record_test(node.item, record_type, counted)
        return None if inner is None else (lambda record: not inner(record))
    if (
        isinstance(node, Exists)
        and len(node.path) == 1
        and node.path[0] in plain
        and node.path[0] not in DERIVED_FIELDS
    ):
        name = node.path[0]

        def exists(record: Any) -> bool:
            value = getattr(record, name)
            return value not in _EMPTY and value is not False

        return exists
    if not (isinstance(node, Compare) and isinstance(node.right, Literal)):
        return None
    constant = node.right.value
    if node.op in ("==", "!="):  # the compiler's ``left(ctx) == constant``, for a length or a top field
        value_of = _record_number(node.left, plain, lists & counted)
        if value_of is None or (isinstance(node.left, FieldRef) and len(node.left.path) != 1):
            return None
        if node.op == "==":
            return lambda record: value_of(record) == constant
        return lambda record: value_of(record) != constant
    compare = _ORDER_OPS.get(node.op)
    if compare is None or not isinstance(constant, _NUMERIC) or constant.__class__ is bool:
        return None
    read = _record_number(node.left, plain, lists & counted)
    if read is None:
        return None

    def against_number(record: Any) -> bool:
        value = read(record)
        kind = value.__class__
        if kind is int or kind is float:
            return compare(value, constant)
        return isinstance(value, _NUMERIC) and kind is not bool and compare(value, constant)

    return against_number


def _all_of(tests: tuple[RecordTest, ...]) -> RecordTest:
    """``and`` of record tests, in order, stopping at the first false one. Two tests (the usual ``and``) as
    one expression: no generator per call (an entry rule runs for most events)."""
    if len(tests) == 2:
        first, second = tests
        return lambda record: bool(first(record) and second(record))

    def all_hold(record: Any) -> bool:
        for test in tests:  # noqa: SIM110 - a loop, not ``all`` over a generator (see the docstring)
            if not test(record):
                return False
        return True

    return all_hold


def _any_of(tests: tuple[RecordTest, ...]) -> RecordTest:
    """``or`` of record tests, in order, stopping at the first true one (as ``_all_of``)."""
    if len(tests) == 2:
        first, second = tests
        return lambda record: bool(first(record) or second(record))

    def any_holds(record: Any) -> bool:
        for test in tests:  # noqa: SIM110 - see _all_of
            if test(record):
                return True
        return False

    return any_holds


def _record_number(node: Any, plain: frozenset[str], counted_lists: frozenset[str]) -> Callable[[Any], Any] | None:
    """The reader of a compared value: a counted record list's length, a scalar field, a dict's key."""
    if (
        isinstance(node, Count)
        and len(node.path) == 1
        and node.path[0] in counted_lists
        and node.path[0] not in DERIVED_FIELDS
    ):
        name = node.path[0]
        return lambda record: len(getattr(record, name))
    if not isinstance(node, FieldRef) or node.path[0] not in plain or node.path[0] in DERIVED_FIELDS:
        return None
    if len(node.path) == 1:
        name = node.path[0]
        return lambda record: getattr(record, name)
    if len(node.path) != 2:  # a section and its key, or deeper: the view
        return None
    outer, inner = node.path
    missing = object()

    def read_nested(record: Any) -> Any:
        section = getattr(record, outer)
        if section.__class__ is dict:
            return section.get(inner)
        return missing  # not a dict (None): no number, as the view's read_path finds none

    return read_nested


@dataclass(frozen=True)
class Condition:
    """A compiled rule over the profile: ``holds(profile, now)`` evaluates it on the fields it reads.

    ``affinity(...)`` decays with the half-life it was compiled with; ``holds``' ``policy`` is the profile
    policy the view's traits decide by (the stage's, as for segments).

    ``unchanged(before, after)``: the answer cannot differ between the two profiles (the rule reads known
    fields, none changed — changes always build new values — and time alone cannot change it), so an
    event that touched nothing it reads need not evaluate it again.
    """

    text: str
    evaluate: Callable[[Context], bool]
    fields: frozenset[str] | None  # view keys the rule reads (None: unknown, render the whole view)
    timed: bool = True
    counted: frozenset[str] = frozenset()  # of ``fields``, those read only as ``count(field)``
    node: Any = field(default=None, compare=False, repr=False)  # the syntax tree (for ``record_test``)
    # record type → its ``_direct_reader`` for ``fields``, found once per type: ``holds`` runs for several
    # kinds on most events, and hashing the type and the field set on each call was a good part of it.
    readers: dict[type, Callable[[Any], dict[str, Any]] | None] = field(default_factory=dict, compare=False, repr=False)
    # record type → its ``record_test`` (None: the view is needed), found once per type, as ``readers``.
    tests: dict[type, RecordTest | None] = field(default_factory=dict, compare=False, repr=False)

    def holds(self, profile: Any, now: float, consumables: Any = None, policy: ProfilePolicy = DEFAULT_POLICY) -> bool:
        cls = profile.__class__
        tests = self.tests
        if cls in tests:
            test = tests[cls]
        else:
            test = tests[cls] = self._record_test(cls)
        if test is not None:
            return test(profile)
        fields = self.fields
        read = None
        if fields is not None:
            readers = self.readers
            if cls in readers:
                read = readers[cls]
            else:
                read = readers[cls] = (
                    _direct_reader(cls, fields, self.counted) if issubclass(cls, msgspec.Struct) else None
                )
        view = profile_view(profile, now=now, fields=fields, policy=policy) if read is None else read(profile)
        return bool(self.evaluate(Context(view, now, consumables)))

    def _record_test(self, cls: type) -> RecordTest | None:
        """``record_test`` of this rule for records of ``cls`` (None: evaluate on the view)."""
        if self.node is None or self.fields is None or not issubclass(cls, msgspec.Struct):
            return None
        if _direct_plan(cls, self.fields, self.counted & record_lists(cls)) is None:
            return None
        return record_test(self.node, cls, self.counted)

    def unchanged(self, before: Any, after: Any) -> bool:
        fields = self.fields
        if before is None or fields is None or self.timed:
            return False
        # A loop, not ``all`` over a generator: this runs for most events with a trigger waiting.
        for name in fields:  # noqa: SIM110
            if getattr(before, name, None) is not getattr(after, name, None):
                return False
        return True


def compile_condition(
    text: str, catalog: FieldCatalog, affinity_half_life_s: float = DEFAULT_AFFINITY_HALF_LIFE_S
) -> Condition:
    """Rule text → ``Condition``; raises ``RuleError`` (with a column) like ``compile_rule``.

    ``affinity_half_life_s``: how fast the rule's ``affinity(...)`` decays (the profile policy's value, as
    ``core.rules.definitions.load_definitions`` takes it for segments).
    """
    node = compile_rule(text, catalog)
    evaluate = compile_node(node, affinity_half_life_s)
    fields = referenced_fields(node)
    counted = counted_only(node) & fields if fields is not None else frozenset()
    return Condition(text.strip(), evaluate, fields, depends_on_time(node), counted, node)
