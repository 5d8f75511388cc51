"""The trigger engine's one door to the segment rule language (parser, compiler, YAML problem reporting).

Triggers reuse the segment language for ``entry.when`` and ``exit.when`` rather than growing a second one;
everything they need from it is imported here, so moving the language (``core/rules/``) changes this file
only. A ``Condition`` is a compiled rule with the view fields it reads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.segment_defs import _items as yaml_items
from core.segment_defs import _pairs as yaml_pairs
from core.segment_defs import _Problems as Problems
from core.segment_defs import _text as yaml_text
from core.segment_fields import FieldCatalog, build_catalog, profile_view
from core.segment_rules import Context, RuleError, compile_node, compile_rule, parse_window, referenced_fields

__all__ = [
    "Condition",
    "FieldCatalog",
    "Problems",
    "RuleError",
    "build_catalog",
    "compile_condition",
    "parse_window",
    "profile_view",
    "yaml_items",
    "yaml_pairs",
    "yaml_text",
]


@dataclass(frozen=True)
class Condition:
    """A compiled rule over the profile: ``holds(profile, now)`` evaluates it on the fields it reads."""

    text: str
    evaluate: Callable[[Context], bool]
    fields: frozenset[str] | None  # view keys the rule reads (None: unknown, render the whole view)

    def holds(self, profile: Any, now: float, consumables: Any = None) -> bool:
        view = profile_view(profile, now=now, fields=self.fields)
        return bool(self.evaluate(Context(view, now, consumables)))


def compile_condition(text: str, catalog: FieldCatalog) -> Condition:
    """Rule text → ``Condition``; raises ``RuleError`` (with a column) like ``compile_rule``."""
    node = compile_rule(text, catalog)
    return Condition(text.strip(), compile_node(node), referenced_fields(node))
