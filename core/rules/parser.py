"""The rule language's parser: tokens → a checked node tree, by hand-written recursive descent, never ``eval``.

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
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.rules.functions import BOOL_TYPE, FUNCTIONS, Function
from core.rules.nodes import (
    Affinity,
    AffinityCompare,
    AgeCompare,
    And,
    Compare,
    Contains,
    FieldRef,
    In,
    ListLiteral,
    Literal,
    Not,
    Or,
)
from core.rules.tokens import RuleError, Token, parse_window, tokenize
from core.segment_fields import (
    AGE_FIELDS,
    ANY,
    BOOL,
    DAY_S,
    LIST,
    MAP,
    NULL,
    NUMBER,
    STRING,
    STRUCT,
    FieldCatalog,
    FieldType,
)

MAX_LIST_ITEMS = 500
MAX_DEPTH = 24
MAX_WINDOW_S = 3650 * DAY_S

COMPARISONS = frozenset({"==", "!=", "<", "<=", ">", ">="})
_FLIPPED = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


@dataclass(frozen=True, slots=True)
class Typed:
    """A parsed value with its static type; ``age_path`` marks ``days_since(...)`` (comparisons only)."""

    node: Any
    ftype: FieldType
    column: int
    text: str
    age_path: tuple[str, ...] | None = None


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
        return Typed(Or(tuple(self.condition(item) for item in items)), BOOL_TYPE, first.column, "or")

    def conjunction(self) -> Typed:
        first = self.negation()
        items = [first]
        while self.accept("KEYWORD", "and"):
            items.append(self.negation())
        if len(items) == 1:
            return first
        return Typed(And(tuple(self.condition(item) for item in items)), BOOL_TYPE, first.column, "and")

    def negation(self) -> Typed:
        token = self.accept("KEYWORD", "not")
        if token is None:
            return self.comparison()
        self.enter(token.column)
        inner = self.negation()
        self.depth -= 1
        return Typed(Not(self.condition(inner)), BOOL_TYPE, token.column, "not")

    def comparison(self) -> Typed:
        start = self.token.column
        left = self.value()
        token = self.token
        if token.kind == "OP" and token.text in COMPARISONS:
            self.advance()
            right = self.value()
            return Typed(self.compare(token, left, right), BOOL_TYPE, start, self.span(start))
        if token.kind == "KEYWORD" and (
            token.text == "in" or (token.text == "not" and self.tokens[self.position + 1].text == "in")
        ):
            negate = self.accept("KEYWORD", "not") is not None
            self.expect("KEYWORD", "in", "'in'")
            right = self.value()
            return Typed(self.membership(left, right, negate), BOOL_TYPE, start, self.span(start))
        if self.accept("KEYWORD", "contains"):
            right = self.value()
            return Typed(self.contains(left, right), BOOL_TYPE, start, self.span(start))
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
            return Typed(_builder(function)(path), function.result, column, text)
        required = [args[param] for param in function.params if not param.endswith("?")]
        optional = {
            param[:-1]: args[param[:-1]] for param in function.params if param.endswith("?") and param[:-1] in args
        }
        return Typed(_builder(function)(*required, **optional), function.result, column, text)

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


def _builder(function: Function) -> Callable[..., Any]:
    """The node builder of a function the parser does not build itself (all but the time reads)."""
    if function.build is None:
        msg = "a time-read function has no node builder"
        raise AssertionError(msg)
    return function.build


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
