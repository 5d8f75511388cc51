"""The rule language's tokenizer: rule text → tokens, and window strings → seconds.

Anything outside the grammar's alphabet is a ``RuleError`` carrying the column, never code. ``RuleError``
lives here, at the bottom of the package, because every later step (parser, loader) raises or reports it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from core.segment_fields import DAY_S

MAX_RULE_CHARS = 4000
MAX_STRING_CHARS = 200

KEYWORDS = frozenset({"and", "or", "not", "in", "contains", "true", "false", "null"})
DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": DAY_S, "w": 7 * DAY_S}


class RuleError(ValueError):
    """A rule is invalid; ``column`` is the 0-based offset in the rule text."""

    def __init__(self, message: str, column: int) -> None:
        self.column = column
        super().__init__(message)


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


_WINDOW_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


def parse_window(text: str, column: int = 0) -> float:
    """``"7d"`` → seconds; anything else is a ``RuleError``."""
    match = _WINDOW_RE.match(text)
    if match is None:
        msg = f"bad window {text[:40]!r}: use a number and a unit s, m, h, d or w (e.g. 7d)"
        raise RuleError(msg, column)
    return float(match.group(1)) * DURATION_UNITS[match.group(2)]
