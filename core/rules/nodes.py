"""The rule language's syntax tree: what the parser builds and the compiler turns into closures.

Every node is a frozen, hashable value, so equal atoms of different rules are found once (their time
breakpoints are compiled once per definitions). ``And``/``Or``/``Not`` combine conditions; the rest are
values (``Literal`` … ``Count``) or atoms that answer true or false.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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
