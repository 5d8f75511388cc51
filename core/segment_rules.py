"""The segment rule language: a small, safe expression language, parsed by hand, never ``eval``-ed.

Grammar (keywords are lower case; ``#`` is not a comment inside a rule)::

    rule       := or
    or         := and ("or" and)*
    and        := not ("and" not)*
    not        := "not" not | comparison
    comparison := value [ ("==" | "!=" | "<" | "<=" | ">" | ">=") value
                        | ["not"] "in" value | "contains" value ]
    value      := NUMBER | STRING | DURATION | "true" | "false" | "null" | list | "(" rule ")"
                | NAME "(" [arg ("," arg)*] ")"              -- a function from FUNCTIONS
                | NAME ("." NAME | "[" STRING "]")*          -- a profile field path
    arg        := [NAME "="] value
    list       := "[" [literal ("," literal)*] "]"

``DURATION`` is a number with a unit: ``90s``, ``30m``, ``12h``, ``7d``, ``2w``; windows also accept
the same as a string (``within="7d"``). Field paths are checked against the profile's ``FieldCatalog``
when a rule is compiled, as are types and function names; every problem raises ``RuleError`` with the
column, which the YAML loader turns into a ``ConfigError`` naming file and line.

Time-driven atoms (``days_since_*`` comparisons, ``within=`` windows, ``no_event``, ``replenishment_due``)
know the instants at which their answer flips; ``breakpoints`` lists them so the worker can schedule a
re-evaluation instead of scanning every profile.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from core.replenishment import ConsumableCatalog, Replenishment, predict_replenishment
from core.segment_fields import (
    AGE_FIELDS,
    ANY,
    BOOL,
    DAY_S,
    DERIVED_FIELDS,
    DERIVED_INPUTS,
    LIST,
    MAP,
    NULL,
    NUMBER,
    STRING,
    STRUCT,
    FieldCatalog,
    FieldType,
    read_path,
    read_time,
)

MAX_RULE_CHARS = 4000
MAX_STRING_CHARS = 200
MAX_LIST_ITEMS = 500
MAX_DEPTH = 24
MAX_WINDOW_S = 3650 * DAY_S

KEYWORDS = frozenset({"and", "or", "not", "in", "contains", "true", "false", "null"})
COMPARISONS = frozenset({"==", "!=", "<", "<=", ">", ">="})
DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": DAY_S, "w": 7 * DAY_S}


class RuleError(ValueError):
    """A rule is invalid; ``column`` is the 0-based offset in the rule text."""

    def __init__(self, message: str, column: int) -> None:
        self.column = column
        super().__init__(message)


# ---------------------------------------------------------------------------------------------- tokens


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # NUMBER DURATION STRING NAME KEYWORD OP END
    text: str
    value: Any
    column: int


_TOKEN_RE = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<duration>\d+(?:\.\d+)?[smhdw](?![A-Za-z0-9_]))
  | (?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?![A-Za-z_]))
  | (?P<badnumber>\d+[A-Za-z_]\w*)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|<|>|\(|\)|\[|\]|,|\.|=|-)
  | (?P<quote>["'])
    """,
    re.VERBOSE,
)
_ESCAPES = {'"': '"', "'": "'", "\\": "\\", "n": "\n", "t": "\t"}


def _read_string(text: str, start: int) -> tuple[str, int]:
    quote = text[start]
    chars: list[str] = []
    position = start + 1
    while position < len(text):
        char = text[position]
        if char == quote:
            return "".join(chars), position + 1
        if char == "\\":
            escaped = text[position + 1 : position + 2]
            if escaped not in _ESCAPES:
                msg = f"unknown escape \\{escaped} in string"
                raise RuleError(msg, position)
            chars.append(_ESCAPES[escaped])
            position += 2
        else:
            chars.append(char)
            position += 1
        if len(chars) > MAX_STRING_CHARS:
            msg = f"string longer than {MAX_STRING_CHARS} characters"
            raise RuleError(msg, start)
    msg = "unterminated string"
    raise RuleError(msg, start)


def tokenize(text: str) -> list[Token]:
    """Rule text → tokens; anything outside the grammar's alphabet is an error, never code."""
    if len(text) > MAX_RULE_CHARS:
        msg = f"rule longer than {MAX_RULE_CHARS} characters"
        raise RuleError(msg, 0)
    tokens: list[Token] = []
    position = 0
    while position < len(text):
        match = _TOKEN_RE.match(text, position)
        if match is None:
            msg = f"unexpected character {text[position]!r}"
            raise RuleError(msg, position)
        kind = match.lastgroup
        chunk = match.group()
        if kind == "quote":
            value, position = _read_string(text, position)
            tokens.append(Token("STRING", text[match.start() : position], value, match.start()))
            continue
        position = match.end()
        if kind == "space":
            continue
        if kind == "badnumber":
            msg = f"bad number or duration {chunk[:40]!r} (durations: 90s 30m 12h 7d 2w)"
            raise RuleError(msg, match.start())
        if kind == "duration":
            tokens.append(Token("DURATION", chunk, float(chunk[:-1]) * DURATION_UNITS[chunk[-1]], match.start()))
        elif kind == "number":
            tokens.append(
                Token(
                    "NUMBER", chunk, float(chunk) if "." in chunk or "e" in chunk.lower() else int(chunk), match.start()
                )
            )
        elif kind == "name":
            if chunk.startswith("_"):
                msg = f"names may not start with '_': {chunk!r}"
                raise RuleError(msg, match.start())
            tokens.append(Token("KEYWORD" if chunk in KEYWORDS else "NAME", chunk, chunk, match.start()))
        else:
            tokens.append(Token("OP", chunk, chunk, match.start()))
    tokens.append(Token("END", "", None, len(text)))
    return tokens


# ---------------------------------------------------------------------------------------------- nodes


@dataclass(frozen=True, slots=True)
class Literal:
    value: Any


@dataclass(frozen=True, slots=True)
class ListLiteral:
    values: tuple


@dataclass(frozen=True, slots=True)
class FieldRef:
    path: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class EventCount:
    event: str


@dataclass(frozen=True, slots=True)
class Affinity:
    category: str


@dataclass(frozen=True, slots=True)
class Count:
    path: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Compare:
    op: str
    left: Any
    right: Any


@dataclass(frozen=True, slots=True)
class AgeCompare:
    """``days_since(<timestamp at path>) <op> days``: false while the timestamp is missing."""

    path: tuple[str, ...]
    op: str
    days: float


@dataclass(frozen=True, slots=True)
class AffinityCompare:
    """``affinity(category) <op> threshold``: the decayed value crosses the threshold at a known instant."""

    category: str
    op: str
    threshold: float


@dataclass(frozen=True, slots=True)
class Within:
    """The latest time of ``source``/``key`` lies less than ``window_s`` before now."""

    source: str
    key: str
    window_s: float


@dataclass(frozen=True, slots=True)
class ReplenishmentDue:
    """Some consumable's expected next purchase is less than ``within_s`` ahead (or past)."""

    within_s: float
    category: str | None
    product: str | None


@dataclass(frozen=True, slots=True)
class In:
    left: Any
    right: Any
    negate: bool


@dataclass(frozen=True, slots=True)
class Contains:
    left: Any
    right: Any


@dataclass(frozen=True, slots=True)
class Exists:
    path: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class And:
    items: tuple


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple


@dataclass(frozen=True, slots=True)
class Not:
    item: Any


@dataclass(frozen=True, slots=True)
class Typed:
    """A parsed value with its static type; ``age_path`` marks ``days_since(...)`` (comparisons only)."""

    node: Any
    ftype: FieldType
    column: int
    text: str
    age_path: tuple[str, ...] | None = None


# ---------------------------------------------------------------------------------------- time sources

# Where each windowed function finds "the last time", per the profile's fields: a map key → time, → list of
# times, → record holding a time (``category_affinity``: [value, at]), or a list of [key, time] pairs
# (``recently_viewed``). The newest time found wins. ``viewed_category`` reads the category's affinity
# time: the last view, list view, add to cart or purchase in that category (the profile keeps no other).
TIME_KEYS = ("last_at", "last_viewed_at", "viewed_at", "at", "timestamp", "last")
TIME_SOURCES: Mapping[str, tuple[str, ...]] = {
    "event": ("event_last_at",),
    "category_view": ("category_affinity", "category_last_viewed_at"),
    "product_view": ("recently_viewed", "product_last_viewed_at"),
    "product_purchase": ("product_purchases",),
}
try:
    from core.profile.policy import DEFAULT_POLICY as _TRAITS

    AFFINITY_HALF_LIFE_S = float(_TRAITS.affinity_half_life_s)
except (ImportError, AttributeError):
    AFFINITY_HALF_LIFE_S = 14 * DAY_S


def _time_of(value: Any) -> float | None:
    if value.__class__ is float:  # the common cases first: a stored time, or nothing recorded
        return value if value > 1e8 else None
    if value is None:
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if value > 1e8 else None  # counts are not times
    if isinstance(value, (list, tuple)):
        newest = _newest_float(value)
        if newest is not None:
            return newest
        times = [t for t in (_time_of(item) for item in value) if t is not None]
        return max(times) if times else None
    if isinstance(value, dict):
        for key in TIME_KEYS:
            if key in value:
                return _time_of(value[key])
    return None


def _newest_float(values: list | tuple) -> float | None:
    """``max(values)`` if that is a float time (None otherwise), for lists of plain times (most of them).

    It then equals what ``_time_of`` finds item by item: every item compared with a float, so each is a
    number, and a larger int, a NaN first or a nested list would have made ``max`` return a non-float.
    """
    try:
        newest = max(values)
    except (TypeError, ValueError):  # not comparable, or empty
        return None
    return newest if newest.__class__ is float and newest > 1e8 else None


def _time_in(container: Any, key: str) -> float | None:
    """The newest time of ``key`` in one container of a ``TIME_SOURCES`` entry."""
    if isinstance(container, dict):
        return _time_of(container.get(key))
    if isinstance(container, list):
        return _time_of([item[1:] for item in container if isinstance(item, (list, tuple)) and item and item[0] == key])
    return None


def last_time(view: Mapping[str, Any], source: str, key: str) -> float | None:
    """The newest time the profile records for ``key`` in ``source`` (see ``TIME_SOURCES``)."""
    best: float | None = None
    for name in TIME_SOURCES[source]:
        found = _time_in(view.get(name), key)
        if found is not None and (best is None or found > best):
            best = found
    return best


def affinity_at(view: Mapping[str, Any], category: str, now: float) -> tuple[float, float] | None:
    """``(value, at)`` of the stored (undecayed) affinity for ``category``, or None."""
    table = view.get("category_affinity")
    entry = table.get(category) if isinstance(table, dict) else None
    if isinstance(entry, (list, tuple)) and len(entry) == 2:
        return float(entry[0]), float(entry[1])
    if isinstance(entry, dict) and "value" in entry and "at" in entry:
        return float(entry["value"]), float(entry["at"])
    return None


def decayed_affinity(view: Mapping[str, Any], category: str, now: float) -> float:
    """The category's affinity as of ``now`` (halving every ``AFFINITY_HALF_LIFE_S``), 0 if none."""
    stored = affinity_at(view, category, now)
    if stored is None:
        return 0.0
    value, at = stored
    return value if now <= at else value * math.pow(0.5, (now - at) / AFFINITY_HALF_LIFE_S)


# ------------------------------------------------------------------------------------------- functions


@dataclass(frozen=True)
class Function:
    """A callable of the rule language: its parameters and how it builds a node from checked arguments."""

    params: tuple[str, ...]  # positional order; "name?" marks an optional parameter
    kinds: Mapping[str, str]  # param → "string" | "window" | "path"
    result: FieldType
    build: Callable[..., Any]
    doc: str


_NUMBER_T = FieldType(NUMBER)
_BOOL_T = FieldType(BOOL)


def _within(source: str) -> Callable[..., Any]:
    def build(key: str, window: float) -> Within:
        return Within(source, key, window)

    return build


FUNCTIONS: Mapping[str, Function] = {
    "days_since": Function(
        ("field",), {"field": "path"}, _NUMBER_T, None, "days since the timestamp field (compare with a number)"
    ),
    "days_since_event": Function(
        ("event",),
        {"event": "string"},
        _NUMBER_T,
        None,
        "days since the last event of that name (compare with a number)",
    ),
    "event_within": Function(
        ("event", "within"),
        {"event": "string", "within": "window"},
        _BOOL_T,
        _within("event"),
        "an event of that name happened within the window",
    ),
    "no_event": Function(
        ("event", "for"),
        {"event": "string", "for": "window"},
        _BOOL_T,
        lambda key, window: Not(Within("event", key, window)),
        "no event of that name within the window (true if never)",
    ),
    "viewed_category": Function(
        ("category", "within"),
        {"category": "string", "within": "window"},
        _BOOL_T,
        _within("category_view"),
        "viewed a product of the category within the window",
    ),
    "viewed_product": Function(
        ("product", "within"),
        {"product": "string", "within": "window"},
        _BOOL_T,
        _within("product_view"),
        "viewed the product within the window",
    ),
    "purchased_product": Function(
        ("product", "within"),
        {"product": "string", "within": "window"},
        _BOOL_T,
        _within("product_purchase"),
        "bought the product within the window",
    ),
    "replenishment_due": Function(
        ("within", "category?", "product?"),
        {"within": "window", "category": "string", "product": "string"},
        _BOOL_T,
        lambda window, category=None, product=None: ReplenishmentDue(window, category, product),
        "a consumable's predicted next purchase is at most the window ahead (or overdue)",
    ),
    "event_count": Function(
        ("event",), {"event": "string"}, _NUMBER_T, EventCount, "how many events of that name the profile counted"
    ),
    "affinity": Function(
        ("category",),
        {"category": "string"},
        _NUMBER_T,
        Affinity,
        "the category's time-decayed affinity (views 1, adds 3, purchases 5; halves in 14d)",
    ),
    "score": Function(
        ("name",),
        {"name": "string"},
        _NUMBER_T,
        lambda name: FieldRef(("scores", name)),
        "a propensity score, same as scores.<name>",
    ),
    "count": Function(("field",), {"field": "path"}, _NUMBER_T, Count, "number of items of a list or map field"),
    "exists": Function(
        ("field",), {"field": "path"}, _BOOL_T, Exists, "the field is present, not null, not empty and not 0"
    ),
}


# ---------------------------------------------------------------------------------------------- parser


class Parser:
    """Recursive descent over the tokens; checks names and types against the catalog as it goes."""

    def __init__(self, text: str, catalog: FieldCatalog) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.position = 0
        self.depth = 0
        self.catalog = catalog

    # -- helpers
    @property
    def token(self) -> Token:
        return self.tokens[self.position]

    def advance(self) -> Token:
        token = self.tokens[self.position]
        self.position += 1
        return token

    def accept(self, kind: str, text: str | None = None) -> Token | None:
        token = self.token
        if token.kind == kind and (text is None or token.text == text):
            return self.advance()
        return None

    def expect(self, kind: str, text: str, what: str) -> Token:
        token = self.accept(kind, text)
        if token is None:
            found = self.token.text or "end of rule"
            msg = f"expected {what}, found {found!r}"
            raise RuleError(msg, self.token.column)
        return token

    def enter(self, column: int) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            msg = f"rule nested deeper than {MAX_DEPTH} levels"
            raise RuleError(msg, column)

    def span(self, start: int) -> str:
        return self.text[start : self.token.column].strip()

    # -- grammar
    def parse(self) -> Any:
        if self.token.kind == "END":
            msg = "empty rule"
            raise RuleError(msg, 0)
        result = self.condition(self.disjunction())
        if self.token.kind != "END":
            msg = f"unexpected {self.token.text!r} after a complete rule"
            raise RuleError(msg, self.token.column)
        return result

    def condition(self, typed: Typed) -> Any:
        if typed.age_path is not None:
            msg = f"{typed.text} must be compared with a number of days, e.g. '{typed.text} >= 30'"
            raise RuleError(msg, typed.column)
        if typed.ftype.kind not in (BOOL, ANY):
            msg = f"{typed.text!r} is a {typed.ftype.describe()}, not a condition"
            raise RuleError(msg, typed.column)
        node = typed.node
        if isinstance(node, FieldRef):
            return Compare("==", node, Literal(True))
        return node

    def disjunction(self) -> Typed:
        first = self.conjunction()
        items = [first]
        while self.accept("KEYWORD", "or"):
            items.append(self.conjunction())
        if len(items) == 1:
            return first
        return Typed(Or(tuple(self.condition(item) for item in items)), _BOOL_T, first.column, "or")

    def conjunction(self) -> Typed:
        first = self.negation()
        items = [first]
        while self.accept("KEYWORD", "and"):
            items.append(self.negation())
        if len(items) == 1:
            return first
        return Typed(And(tuple(self.condition(item) for item in items)), _BOOL_T, first.column, "and")

    def negation(self) -> Typed:
        token = self.accept("KEYWORD", "not")
        if token is None:
            return self.comparison()
        self.enter(token.column)
        inner = self.negation()
        self.depth -= 1
        return Typed(Not(self.condition(inner)), _BOOL_T, token.column, "not")

    def comparison(self) -> Typed:
        start = self.token.column
        left = self.value()
        token = self.token
        if token.kind == "OP" and token.text in COMPARISONS:
            self.advance()
            right = self.value()
            return Typed(self.compare(token, left, right), _BOOL_T, start, self.span(start))
        if token.kind == "KEYWORD" and (
            token.text == "in" or (token.text == "not" and self.tokens[self.position + 1].text == "in")
        ):
            negate = self.accept("KEYWORD", "not") is not None
            self.expect("KEYWORD", "in", "'in'")
            right = self.value()
            return Typed(self.membership(left, right, negate), _BOOL_T, start, self.span(start))
        if self.accept("KEYWORD", "contains"):
            right = self.value()
            return Typed(self.contains(left, right), _BOOL_T, start, self.span(start))
        return left

    def value(self) -> Typed:
        token = self.token
        self.enter(token.column)
        try:
            return self._value(token)
        finally:
            self.depth -= 1

    def _value(self, token: Token) -> Typed:
        if token.kind in ("NUMBER", "STRING"):
            self.advance()
            return Typed(
                Literal(token.value), FieldType(NUMBER if token.kind == "NUMBER" else STRING), token.column, token.text
            )
        if token.kind == "DURATION":
            msg = (
                f"a duration ({token.text}) is only allowed as a window argument; "
                "compare days_since(...) with a number of days"
            )
            raise RuleError(msg, token.column)
        if token.kind == "OP" and token.text == "-":
            self.advance()
            number = self.token
            if number.kind != "NUMBER":
                msg = "expected a number after '-'"
                raise RuleError(msg, number.column)
            self.advance()
            return Typed(Literal(-number.value), FieldType(NUMBER), token.column, f"-{number.text}")
        if token.kind == "KEYWORD" and token.text in ("true", "false", "null"):
            self.advance()
            value = {"true": True, "false": False, "null": None}[token.text]
            return Typed(Literal(value), FieldType(BOOL if value is not None else NULL), token.column, token.text)
        if token.kind == "OP" and token.text == "(":
            self.advance()
            inner = self.disjunction()
            self.expect("OP", ")", "')'")
            return inner
        if token.kind == "OP" and token.text == "[":
            return self.list_literal()
        if token.kind == "NAME":
            if self.tokens[self.position + 1].text == "(":
                return self.call()
            return self.field()
        found = token.text or "end of rule"
        msg = f"expected a value, found {found!r}"
        raise RuleError(msg, token.column)

    def list_literal(self) -> Typed:
        start = self.advance()
        values: list[Any] = []
        kinds: set[str] = set()
        if not self.accept("OP", "]"):
            while True:
                item = self.token
                if item.kind not in ("NUMBER", "STRING"):
                    msg = "list items must be numbers or quoted strings"
                    raise RuleError(msg, item.column)
                self.advance()
                values.append(item.value)
                kinds.add(NUMBER if item.kind == "NUMBER" else STRING)
                if len(values) > MAX_LIST_ITEMS:
                    msg = f"list longer than {MAX_LIST_ITEMS} items"
                    raise RuleError(msg, start.column)
                if self.accept("OP", "]"):
                    break
                self.expect("OP", ",", "',' or ']'")
        item_type = FieldType(kinds.pop()) if len(kinds) == 1 else FieldType(ANY)
        return Typed(ListLiteral(tuple(values)), FieldType(LIST, item_type), start.column, self.span(start.column))

    def path(self) -> tuple[tuple[str, ...], int]:
        first = self.expect("NAME", self.token.text if self.token.kind == "NAME" else "\0", "a field name")
        parts = [first.text]
        while True:
            if self.accept("OP", "."):
                part = self.token
                if part.kind not in ("NAME", "KEYWORD"):
                    msg = "expected a field name after '.'"
                    raise RuleError(msg, part.column)
                self.advance()
                parts.append(part.text)
            elif self.accept("OP", "["):
                key = self.token
                if key.kind != "STRING":
                    msg = "expected a quoted key inside [...]"
                    raise RuleError(msg, key.column)
                self.advance()
                self.expect("OP", "]", "']'")
                parts.append(key.value)
            else:
                return tuple(parts), first.column
            if len(parts) > MAX_DEPTH:
                msg = "field path too long"
                raise RuleError(msg, first.column)

    def field(self) -> Typed:
        path, column = self.path()
        text = ".".join(path)
        if len(path) == 1 and path[0] in AGE_FIELDS:
            base = (AGE_FIELDS[path[0]],)
            self.resolve(base, column)
            return Typed(FieldRef(path), FieldType(NUMBER), column, text, age_path=base)
        path = self.catalog.expand(path)
        ftype = self.resolve(path, column)
        return Typed(FieldRef(path), ftype, column, text)

    def resolve(self, path: tuple[str, ...], column: int) -> FieldType:
        try:
            return self.catalog.resolve(path)
        except LookupError as exc:
            raise RuleError(str(exc.args[0]), column) from None

    def call(self) -> Typed:
        name_token = self.advance()
        name = name_token.text
        function = FUNCTIONS.get(name)
        if function is None:
            msg = f"unknown function {name!r} (known: {', '.join(sorted(FUNCTIONS))})"
            raise RuleError(msg, name_token.column)
        self.expect("OP", "(", "'('")
        params = [param.rstrip("?") for param in function.params]
        required = [param for param in function.params if not param.endswith("?")]
        args: dict[str, Any] = {}
        positional = 0
        seen_keyword = False
        if not self.accept("OP", ")"):
            while True:
                token = self.token
                keyword = None
                if token.kind in ("NAME", "KEYWORD") and self.tokens[self.position + 1].text == "=":
                    keyword = token.text
                    self.advance()
                    self.advance()
                    seen_keyword = True
                    if keyword not in params:
                        msg = f"{name}() has no parameter {keyword!r} (parameters: {', '.join(params)})"
                        raise RuleError(msg, token.column)
                elif seen_keyword:
                    msg = "positional argument after a keyword argument"
                    raise RuleError(msg, token.column)
                else:
                    if positional >= len(params):
                        msg = f"{name}() takes at most {len(params)} argument(s)"
                        raise RuleError(msg, token.column)
                    keyword = params[positional]
                    positional += 1
                if keyword in args:
                    msg = f"{name}() got {keyword!r} twice"
                    raise RuleError(msg, token.column)
                args[keyword] = self.argument(name, keyword, function.kinds[keyword])
                if self.accept("OP", ")"):
                    break
                self.expect("OP", ",", "',' or ')'")
        missing = [param for param in required if param not in args]
        if missing:
            msg = f"{name}() needs {', '.join(missing)}"
            raise RuleError(msg, name_token.column)
        text = self.span(name_token.column)
        return self.build_call(name, function, args, name_token.column, text)

    def argument(self, function: str, param: str, kind: str) -> Any:
        token = self.token
        if kind == "path":
            if token.kind != "NAME":
                msg = f"{function}({param}=...) expects a field name"
                raise RuleError(msg, token.column)
            path, column = self.path()
            if len(path) == 1 and path[0] in AGE_FIELDS:
                msg = f"{path[0]} is already a number of days"
                raise RuleError(msg, column)
            path = self.catalog.expand(path)
            return path, self.resolve(path, column), column
        if kind == "window":
            if token.kind == "DURATION":
                seconds = token.value
            elif token.kind == "STRING":
                seconds = parse_window(token.value, token.column)
            else:
                msg = f'{function}({param}=...) expects a window such as 7d or "12h"'
                raise RuleError(msg, token.column)
            self.advance()
            if not 0 < seconds <= MAX_WINDOW_S:
                msg = f"bad window {token.text}: must be more than 0 and at most 3650d"
                raise RuleError(msg, token.column)
            return seconds
        if token.kind != "STRING":
            msg = f"{function}({param}=...) expects a quoted string"
            raise RuleError(msg, token.column)
        self.advance()
        return token.value

    def build_call(self, name: str, function: Function, args: dict[str, Any], column: int, text: str) -> Typed:
        if name == "days_since":
            path, ftype, path_column = args["field"]
            if ftype.kind not in (NUMBER, ANY):
                msg = f"days_since() needs a timestamp field; {'.'.join(path)!r} is a {ftype.describe()}"
                raise RuleError(msg, path_column)
            return Typed(FieldRef(path), function.result, column, text, age_path=path)
        if name == "days_since_event":
            self.resolve(("event_last_at", args["event"]), column)
            path = ("event_last_at", args["event"])
            return Typed(FieldRef(path), function.result, column, text, age_path=path)
        if name in ("exists", "count"):
            path, ftype, path_column = args["field"]
            if name == "count" and ftype.kind not in (LIST, MAP, STRUCT, ANY):
                msg = f"count() needs a list or map; {'.'.join(path)!r} is a {ftype.describe()}"
                raise RuleError(msg, path_column)
            return Typed(function.build(path), function.result, column, text)
        required = [args[param] for param in function.params if not param.endswith("?")]
        optional = {
            param[:-1]: args[param[:-1]] for param in function.params if param.endswith("?") and param[:-1] in args
        }
        return Typed(function.build(*required, **optional), function.result, column, text)

    # -- type checks
    def compare(self, op_token: Token, left: Typed, right: Typed) -> Any:
        op = op_token.text
        if left.age_path is None and right.age_path is not None:
            left, right, op = right, left, _FLIPPED[op]
        if left.age_path is not None:
            if not isinstance(right.node, Literal) or right.ftype.kind != NUMBER:
                msg = f"{left.text} must be compared with a number of days"
                raise RuleError(msg, right.column)
            return AgeCompare(left.age_path, op, float(right.node.value))
        if isinstance(right.node, Affinity) and isinstance(left.node, Literal):
            left, right, op = right, left, _FLIPPED[op]
        if isinstance(left.node, Affinity) and isinstance(right.node, Literal) and right.ftype.kind == NUMBER:
            return AffinityCompare(left.node.category, op, float(right.node.value))
        lk, rk = left.ftype.kind, right.ftype.kind
        if ANY not in (lk, rk) and NULL not in (lk, rk):
            if op in ("==", "!=") and lk != rk:
                msg = (
                    f"type mismatch: {left.text!r} is a {left.ftype.describe()}, "
                    f"{right.text!r} is a {right.ftype.describe()}"
                )
                raise RuleError(msg, op_token.column)
            if op not in ("==", "!=") and not (lk == rk and lk in (NUMBER, STRING)):
                msg = (
                    f"type mismatch: cannot order {left.ftype.describe()} {left.text!r} "
                    f"and {right.ftype.describe()} {right.text!r}"
                )
                raise RuleError(msg, op_token.column)
        elif NULL in (lk, rk) and op not in ("==", "!="):
            msg = "null can only be compared with == or !="
            raise RuleError(msg, op_token.column)
        return Compare(op, left.node, right.node)

    def membership(self, left: Typed, right: Typed, negate: bool) -> In:
        if right.ftype.kind not in (LIST, MAP, ANY):
            msg = f"'in' needs a list on the right; {right.text!r} is a {right.ftype.describe()}"
            raise RuleError(msg, right.column)
        self._check_item(left, right, right.column)
        return In(left.node, right.node, negate)

    def contains(self, left: Typed, right: Typed) -> Contains:
        if left.ftype.kind not in (LIST, MAP, STRING, STRUCT, ANY):
            msg = f"'contains' needs a list, map or string on the left; {left.text!r} is a {left.ftype.describe()}"
            raise RuleError(msg, left.column)
        if left.ftype.kind == STRING and right.ftype.kind not in (STRING, ANY):
            msg = f"a string can only contain a string, not {right.text!r}"
            raise RuleError(msg, right.column)
        if left.ftype.kind == LIST:
            self._check_item(right, left, right.column)
        return Contains(left.node, right.node)

    def _check_item(self, item: Typed, container: Typed, column: int) -> None:
        if item.age_path is not None:
            msg = f"{item.text} can only be compared with a number"
            raise RuleError(msg, item.column)
        element = container.ftype.item
        if container.ftype.kind == MAP:
            element = FieldType(STRING)  # membership in a map tests its keys
        kinds = {item.ftype.kind, element.kind if element else ANY}
        if item.ftype.kind == LIST:
            kinds = {item.ftype.item.kind if item.ftype.item else ANY, element.kind if element else ANY}
        if ANY not in kinds and len(kinds) > 1:
            msg = (
                f"type mismatch: {item.text!r} ({item.ftype.describe()}) vs items of "
                f"{container.text!r} ({container.ftype.describe()})"
            )
            raise RuleError(msg, column)


_FLIPPED = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_WINDOW_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


def parse_window(text: str, column: int = 0) -> float:
    """``"7d"`` → seconds; anything else is a ``RuleError``."""
    match = _WINDOW_RE.match(text)
    if match is None:
        msg = f"bad window {text[:40]!r}: use a number and a unit s, m, h, d or w (e.g. 7d)"
        raise RuleError(msg, column)
    return float(match.group(1)) * DURATION_UNITS[match.group(2)]


def compile_rule(text: str, catalog: FieldCatalog) -> Any:
    """Rule text → a checked node tree; raises ``RuleError`` (with a column) for any problem."""
    if not isinstance(text, str):
        msg = "a rule must be a string"
        raise RuleError(msg, 0)
    try:
        return Parser(text, catalog).parse()
    except RecursionError:  # a last guard: MAX_DEPTH should always trip first
        msg = "rule nested too deeply"
        raise RuleError(msg, 0) from None


# ------------------------------------------------------------------------------------------ evaluation


@dataclass(frozen=True, slots=True)
class Context:
    """What evaluation reads: the profile view, the time, and the consumables catalog.

    ``memo`` holds what is derived from the view alone (replenishment predictions), so contexts of the
    same view at other instants (``at``) derive it once; it never changes an answer.
    """

    view: Mapping[str, Any]
    now: float
    consumables: ConsumableCatalog | None = None
    memo: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def at(self, now: float) -> Context:
        """The same view (and memo) at another instant."""
        return Context(self.view, now, self.consumables, self.memo)


def _value(node: Any, ctx: Context) -> Any:
    if isinstance(node, Literal):
        return node.value
    if isinstance(node, ListLiteral):
        return node.values
    if isinstance(node, FieldRef):
        return read_path(ctx.view, node.path)
    if isinstance(node, EventCount):
        counts = ctx.view.get("event_counts")
        return counts.get(node.event, 0) if isinstance(counts, dict) else 0
    if isinstance(node, Affinity):
        return decayed_affinity(ctx.view, node.category, ctx.now)
    if isinstance(node, Count):
        value = read_path(ctx.view, node.path)
        return len(value) if isinstance(value, (list, dict, str)) else 0
    return evaluate_node(node, ctx)


def _ordered(op: str, left: Any, right: Any) -> bool:
    if op == "==":
        return left == right
    if op == "!=":
        return left != right
    numeric = (int, float)
    comparable = (
        isinstance(left, numeric)
        and isinstance(right, numeric)
        and not isinstance(left, bool)
        and not isinstance(right, bool)
    ) or (isinstance(left, str) and isinstance(right, str))
    if not comparable:
        return False
    if op == "<":
        return left < right
    if op == "<=":
        return left <= right
    if op == ">":
        return left > right
    return left >= right


def _age_boundary(node: AgeCompare, view: Mapping[str, Any]) -> float | None:
    start = read_time(view, node.path)
    return None if start is None else start + node.days * DAY_S


def _predictions(ctx: Context) -> Mapping[str, Replenishment]:
    """``predict_replenishment`` of the view's purchases, once per view (see ``Context.memo``)."""
    predictions = ctx.memo.get("replenishment")
    if predictions is None:
        predictions = predict_replenishment(ctx.view["product_purchases"], ctx.consumables)
        ctx.memo["replenishment"] = predictions
    return predictions


def _replenishment_times(node: ReplenishmentDue, ctx: Context) -> list[float]:
    if ctx.consumables is None:
        return []
    purchases = ctx.view.get("product_purchases")
    if not isinstance(purchases, dict):
        return []
    predictions = _predictions(ctx)
    return [
        prediction.expected_at - node.within_s
        for prediction in predictions.values()
        if (node.product is None or prediction.product_id == node.product)
        and (node.category is None or prediction.category == node.category)
    ]


def evaluate_node(node: Any, ctx: Context) -> bool:
    """Evaluate a compiled condition against a profile view at ``ctx.now``."""
    if isinstance(node, And):
        return all(evaluate_node(item, ctx) for item in node.items)
    if isinstance(node, Or):
        return any(evaluate_node(item, ctx) for item in node.items)
    if isinstance(node, Not):
        return not evaluate_node(node.item, ctx)
    if isinstance(node, Compare):
        return _ordered(node.op, _value(node.left, ctx), _value(node.right, ctx))
    if isinstance(node, AgeCompare):
        boundary = _age_boundary(node, ctx.view)
        return boundary is not None and _ordered(node.op, ctx.now, boundary)
    if isinstance(node, Within):
        last = last_time(ctx.view, node.source, node.key)
        return last is not None and ctx.now < last + node.window_s
    if isinstance(node, AffinityCompare):
        return _ordered(node.op, decayed_affinity(ctx.view, node.category, ctx.now), node.threshold)
    if isinstance(node, ReplenishmentDue):
        return any(ctx.now >= due for due in _replenishment_times(node, ctx))
    if isinstance(node, In):
        left, right = _value(node.left, ctx), _value(node.right, ctx)
        if isinstance(right, (list, tuple, dict)):
            found = (
                any(item in right for item in left)
                if isinstance(left, list)
                else (left is not None and _hashable(left) and left in right)
            )
        else:
            found = False
        return found != node.negate
    if isinstance(node, Contains):
        left, right = _value(node.left, ctx), _value(node.right, ctx)
        if isinstance(left, str):
            return isinstance(right, str) and right in left
        if isinstance(left, (list, tuple)):
            return right in left
        if isinstance(left, dict):
            return _hashable(right) and right in left
        return False
    if isinstance(node, Exists):
        value = read_path(ctx.view, node.path)
        return value not in (None, "", 0, 0.0, [], {}) and value is not False
    if isinstance(node, Literal):
        return bool(node.value)
    message = f"not a condition: {type(node).__name__}"
    raise TypeError(message)


def _hashable(value: Any) -> bool:
    return not isinstance(value, (list, dict))


def breakpoints(node: Any, ctx: Context) -> Iterator[float]:
    """Instants (any order, maybe in the past) at which a time-driven atom of ``node`` flips."""
    if isinstance(node, (And, Or)):
        for item in node.items:
            yield from breakpoints(item, ctx)
    elif isinstance(node, Not):
        yield from breakpoints(node.item, ctx)
    elif isinstance(node, AgeCompare):
        boundary = _age_boundary(node, ctx.view)
        if boundary is not None:
            # ">=" and "<" flip at the boundary itself; ">" and "<=" at the first instant after it.
            if node.op in (">=", "<", "==", "!="):
                yield boundary
            if node.op in (">", "<=", "==", "!="):
                yield math.nextafter(boundary, math.inf)
    elif isinstance(node, Within):
        last = last_time(ctx.view, node.source, node.key)
        if last is not None:
            yield last + node.window_s
    elif isinstance(node, ReplenishmentDue):
        yield from _replenishment_times(node, ctx)
    elif isinstance(node, AffinityCompare):
        stored = affinity_at(ctx.view, node.category, ctx.now)
        if stored is not None and node.threshold > 0 and stored[0] > node.threshold:
            value, at = stored
            crossing = at + AFFINITY_HALF_LIFE_S * math.log2(value / node.threshold)
            # Rounding may put the exact crossing a hair late; the caller re-evaluates at each candidate.
            yield from (crossing, math.nextafter(crossing, math.inf), crossing + 1e-3)


_TIMED_ATOMS = (AgeCompare, Within, ReplenishmentDue, AffinityCompare)  # what ``breakpoints`` lists


def time_atoms(node: Any) -> tuple[Any, ...]:
    """The atoms of ``node`` that ``breakpoints`` reads: ``breakpoints(node)`` is the union of theirs."""
    if isinstance(node, (And, Or)):
        return tuple(atom for item in node.items for atom in time_atoms(item))
    if isinstance(node, Not):
        return time_atoms(node.item)
    return (node,) if isinstance(node, _TIMED_ATOMS) else ()


_TIMELESS_LEAVES = (Literal, ListLiteral, FieldRef, EventCount, Count, Exists)


def depends_on_time(node: Any) -> bool:
    """Whether the answer for ``node`` can change with ``ctx.now`` alone (True when not known)."""
    if isinstance(node, (And, Or)):
        return any(depends_on_time(item) for item in node.items)
    if isinstance(node, Not):
        return depends_on_time(node.item)
    if isinstance(node, (Compare, In, Contains)):
        return depends_on_time(node.left) or depends_on_time(node.right)
    return not isinstance(node, _TIMELESS_LEAVES)


# ------------------------------------------------------------------------------------------ compilation

# ``compile_node`` turns a checked node tree into nested closures, once, when the definitions are loaded:
# evaluation then makes no isinstance dispatch on nodes and no generator per ``and``/``or``. Only closures
# over the node's own constants — no Python source is generated, so a rule still cannot run code.
# ``evaluate_node`` above stays the reference: the tests check that both give the same answers.

Evaluator = Callable[[Context], Any]
_NUMERIC = (int, float)
_CONTAINERS = (list, tuple, dict)
_EMPTY = (None, "", 0, 0.0, [], {})
_ORDER_OPS: Mapping[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _ordered_function(op: str) -> Callable[[Any, Any], bool]:
    """``lambda left, right: _ordered(op, left, right)``, with the operator chosen once."""
    if op == "==":
        return operator.eq
    if op == "!=":
        return operator.ne
    compare = _ORDER_OPS[op]

    def ordered(left: Any, right: Any) -> bool:
        if isinstance(left, str):
            return isinstance(right, str) and compare(left, right)
        return (
            isinstance(left, _NUMERIC)
            and isinstance(right, _NUMERIC)
            and left.__class__ is not bool
            and right.__class__ is not bool
            and compare(left, right)
        )

    return ordered


def _compile_path(path: tuple[str, ...]) -> Evaluator:
    """``read_path(ctx.view, path)``, with a fast lane for plain dicts one or two levels deep."""
    if len(path) == 1 and path[0] not in DERIVED_FIELDS:
        name = path[0]

        def read_top(ctx: Context) -> Any:
            view = ctx.view
            return view.get(name) if view.__class__ is dict else read_path(view, path)

        return read_top
    if len(path) == 2:
        outer, inner = path

        def read_nested(ctx: Context) -> Any:
            view = ctx.view
            if view.__class__ is dict:
                section = view.get(outer)
                if section.__class__ is dict:
                    return section.get(inner)
            return read_path(view, path)

        return read_nested
    return lambda ctx: read_path(ctx.view, path)


def _compile_value(node: Any) -> Evaluator:
    """The closure of ``_value(node, ctx)``."""
    if isinstance(node, Literal):
        value = node.value
        return lambda ctx: value
    if isinstance(node, ListLiteral):
        values = node.values
        return lambda ctx: values
    if isinstance(node, FieldRef):
        return _compile_path(node.path)
    if isinstance(node, EventCount):
        event = node.event

        def event_count(ctx: Context) -> Any:
            counts = ctx.view.get("event_counts")
            return counts.get(event, 0) if isinstance(counts, dict) else 0

        return event_count
    if isinstance(node, Affinity):
        category = node.category
        return lambda ctx: decayed_affinity(ctx.view, category, ctx.now)
    if isinstance(node, Count):
        read = _compile_path(node.path)

        def count(ctx: Context) -> int:
            value = read(ctx)
            return len(value) if isinstance(value, (list, dict, str)) else 0

        return count
    return compile_node(node)


def _compile_compare(node: Compare) -> Evaluator:
    left = _compile_value(node.left)
    if isinstance(node.right, Literal):
        constant = node.right.value
        if node.op == "==":
            return lambda ctx: left(ctx) == constant
        if node.op == "!=":
            return lambda ctx: left(ctx) != constant
        compare = _ORDER_OPS[node.op]
        if isinstance(constant, _NUMERIC) and constant.__class__ is not bool:

            def against_number(ctx: Context) -> bool:
                value = left(ctx)
                kind = value.__class__
                if kind is int or kind is float:
                    return compare(value, constant)
                return isinstance(value, _NUMERIC) and kind is not bool and compare(value, constant)

            return against_number
        if isinstance(constant, str):

            def against_string(ctx: Context) -> bool:
                value = left(ctx)
                return isinstance(value, str) and compare(value, constant)

            return against_string
    right = _compile_value(node.right)
    ordered = _ordered_function(node.op)
    return lambda ctx: ordered(left(ctx), right(ctx))


def _compile_age(node: AgeCompare) -> Evaluator:
    read = _compile_path(node.path)
    span = node.days * DAY_S
    ordered = _ordered_function(node.op)

    def age(ctx: Context) -> bool:
        start = read(ctx)  # read_time, inlined: 0, missing or not a number mean "never"
        if start.__class__ is bool or not isinstance(start, _NUMERIC) or start <= 0:
            return False
        return ordered(ctx.now, float(start) + span)

    return age


def _last_time_reader(source: str, key: str) -> Callable[[Mapping[str, Any]], float | None]:
    """``last_time(view, source, key)`` with the source's containers looked up once."""
    names = TIME_SOURCES[source]
    if len(names) == 1:
        name = names[0]
        return lambda view: _time_in(view.get(name), key)

    def newest(view: Mapping[str, Any]) -> float | None:
        best: float | None = None
        for name in names:
            container = view.get(name)
            if container is not None:  # most sources' second container is absent
                found = _time_in(container, key)
                if found is not None and (best is None or found > best):
                    best = found
        return best

    return newest


def _compile_within(node: Within) -> Evaluator:
    last_of = _last_time_reader(node.source, node.key)
    window = node.window_s

    def within(ctx: Context) -> bool:
        last = last_of(ctx.view)
        return last is not None and ctx.now < last + window

    return within


def _compile_affinity(node: AffinityCompare) -> Evaluator:
    category, threshold = node.category, node.threshold
    ordered = _ordered_function(node.op)
    absent = ordered(0.0, threshold)  # most profiles never touched most categories

    def affinity(ctx: Context) -> bool:
        view = ctx.view
        table = view.get("category_affinity")
        if table.__class__ is dict:
            entry = table.get(category)
            if entry is None:
                return absent
            if entry.__class__ is list and len(entry) == 2:  # decayed_affinity, inlined for the view's shape
                value, at, now = float(entry[0]), float(entry[1]), ctx.now
                decayed = value if now <= at else value * math.pow(0.5, (now - at) / AFFINITY_HALF_LIFE_S)
                return ordered(decayed, threshold)
        return ordered(decayed_affinity(view, category, ctx.now), threshold)

    return affinity


def _compile_replenishment(node: ReplenishmentDue) -> Evaluator:
    def due(ctx: Context) -> bool:
        purchases = ctx.view.get("product_purchases")
        if not purchases and isinstance(purchases, dict):  # nothing bought: no prediction to make
            return False
        now = ctx.now
        return any(now >= at for at in _replenishment_times(node, ctx))

    return due


def _compile_in(node: In) -> Evaluator:
    left, right, negate = _compile_value(node.left), _compile_value(node.right), node.negate

    def member(ctx: Context) -> bool:
        item, container = left(ctx), right(ctx)
        if isinstance(container, _CONTAINERS):
            if isinstance(item, list):
                found = any(one in container for one in item)
            else:
                found = item is not None and _hashable(item) and item in container
        else:
            found = False
        return found != negate

    return member


def _compile_contains(node: Contains) -> Evaluator:
    left, right = _compile_value(node.left), _compile_value(node.right)

    def contains(ctx: Context) -> bool:
        container, item = left(ctx), right(ctx)
        if isinstance(container, str):
            return isinstance(item, str) and item in container
        if isinstance(container, (list, tuple)):
            return item in container
        if isinstance(container, dict):
            return _hashable(item) and item in container
        return False

    return contains


def _compile_all(items: tuple[Evaluator, ...]) -> Evaluator:
    if len(items) == 2:
        first, second = items
        return lambda ctx: first(ctx) and second(ctx)

    def all_of(ctx: Context) -> bool:
        for item in items:
            if not item(ctx):
                return False
        return True

    return all_of


def _compile_any(items: tuple[Evaluator, ...]) -> Evaluator:
    if len(items) == 2:
        first, second = items
        return lambda ctx: first(ctx) or second(ctx)

    def any_of(ctx: Context) -> bool:
        for item in items:
            if item(ctx):
                return True
        return False

    return any_of


def compile_node(node: Any) -> Evaluator:
    """A checked node tree → a closure ``ctx -> bool`` giving the same answer as ``evaluate_node``."""
    if isinstance(node, And):
        return _compile_all(tuple(compile_node(item) for item in node.items))
    if isinstance(node, Or):
        return _compile_any(tuple(compile_node(item) for item in node.items))
    if isinstance(node, Not):
        inner = compile_node(node.item)
        return lambda ctx: not inner(ctx)
    if isinstance(node, Compare):
        return _compile_compare(node)
    if isinstance(node, AgeCompare):
        return _compile_age(node)
    if isinstance(node, Within):
        return _compile_within(node)
    if isinstance(node, AffinityCompare):
        return _compile_affinity(node)
    if isinstance(node, ReplenishmentDue):
        return _compile_replenishment(node)
    if isinstance(node, In):
        return _compile_in(node)
    if isinstance(node, Contains):
        return _compile_contains(node)
    if isinstance(node, Exists):
        read = _compile_path(node.path)

        def exists(ctx: Context) -> bool:
            value = read(ctx)
            return value not in _EMPTY and value is not False

        return exists
    if isinstance(node, Literal):
        answer = bool(node.value)
        return lambda ctx: answer
    message = f"not a condition: {type(node).__name__}"
    raise TypeError(message)


Instants = Callable[[Context], Iterable[float]]


def _compile_age_breakpoints(node: AgeCompare) -> Instants:
    read = _compile_path(node.path)
    span = node.days * DAY_S
    # ">=" and "<" flip at the boundary itself; ">" and "<=" at the first instant after it.
    at_boundary = node.op in (">=", "<", "==", "!=")
    after_boundary = node.op in (">", "<=", "==", "!=")

    def age(ctx: Context) -> tuple[float, ...]:
        start = read(ctx)  # read_time, inlined
        if start.__class__ is bool or not isinstance(start, _NUMERIC) or start <= 0:
            return ()
        boundary = float(start) + span
        if at_boundary and after_boundary:
            return boundary, math.nextafter(boundary, math.inf)
        return (boundary,) if at_boundary else (math.nextafter(boundary, math.inf),)

    return age


def _compile_within_breakpoints(node: Within) -> Instants:
    last_of = _last_time_reader(node.source, node.key)
    window = node.window_s

    def within(ctx: Context) -> tuple[float, ...]:
        last = last_of(ctx.view)
        return () if last is None else (last + window,)

    return within


def _compile_affinity_breakpoints(node: AffinityCompare) -> Instants:
    category, threshold = node.category, node.threshold
    if not threshold > 0:
        return lambda ctx: ()

    def affinity(ctx: Context) -> tuple[float, ...]:
        stored = affinity_at(ctx.view, category, ctx.now)
        if stored is None or not stored[0] > threshold:
            return ()
        value, at = stored
        crossing = at + AFFINITY_HALF_LIFE_S * math.log2(value / threshold)
        return crossing, math.nextafter(crossing, math.inf), crossing + 1e-3

    return affinity


def compile_breakpoints(atom: Any) -> Instants:
    """The closure of ``breakpoints(atom, ctx)`` for an atom of ``time_atoms`` (the same instants)."""
    if isinstance(atom, AgeCompare):
        return _compile_age_breakpoints(atom)
    if isinstance(atom, Within):
        return _compile_within_breakpoints(atom)
    if isinstance(atom, ReplenishmentDue):
        return lambda ctx: _replenishment_times(atom, ctx)
    if isinstance(atom, AffinityCompare):
        return _compile_affinity_breakpoints(atom)
    return lambda ctx: breakpoints(atom, ctx)


def referenced_fields(node: Any) -> frozenset[str] | None:
    """The top-level profile-view keys evaluating ``node`` may read; None if that is not known."""
    names: set[str] = set()
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, (And, Or)):
            stack.extend(current.items)
        elif isinstance(current, Not):
            stack.append(current.item)
        elif isinstance(current, (Compare, In, Contains)):
            stack.extend((current.left, current.right))
        elif isinstance(current, (FieldRef, Count, Exists, AgeCompare)):
            head = current.path[0]
            names.add(head)
            if len(current.path) == 1:
                names.update(DERIVED_INPUTS.get(head, ()))
        elif isinstance(current, EventCount):
            names.add("event_counts")
        elif isinstance(current, (Affinity, AffinityCompare)):
            names.add("category_affinity")
        elif isinstance(current, Within):
            names.update(TIME_SOURCES[current.source])
        elif isinstance(current, ReplenishmentDue):
            names.add("product_purchases")
        elif not isinstance(current, (Literal, ListLiteral)):
            return None
    return frozenset(names)


def describe_functions() -> str:
    """One line per function, for ``segments check --help`` and the docs."""
    return "\n".join(f"  {name}({', '.join(fn.params)}): {fn.doc}" for name, fn in sorted(FUNCTIONS.items()))


__all__ = [
    "FUNCTIONS",
    "Context",
    "RuleError",
    "compile_rule",
    "compile_node",
    "evaluate_node",
    "breakpoints",
    "referenced_fields",
    "tokenize",
    "parse_window",
    "last_time",
    "time_atoms",
    "depends_on_time",
    "compile_breakpoints",
]
