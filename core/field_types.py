"""The static types of the segment rule language: a kind, and for lists and maps an item type, for
records their fields.

Its own small module because both sides of the field catalog need it: ``core.traits`` declares each
computed trait's type, and ``core.segment_fields`` builds the catalog the rule compiler checks against.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

NUMBER = "number"
STRING = "string"
BOOL = "bool"
LIST = "list"
MAP = "map"
STRUCT = "struct"
ANY = "any"
NULL = "null"


@dataclass(frozen=True)
class FieldType:
    """The static type of a field: a kind, the item type of a list or map, the fields of a record."""

    kind: str
    item: FieldType | None = None
    fields: Mapping[str, FieldType] = field(default_factory=dict)

    def describe(self) -> str:
        if self.kind in (LIST, MAP) and self.item is not None and self.item.kind != ANY:
            return f"{self.kind} of {self.item.describe()}"
        return self.kind


ANY_TYPE = FieldType(ANY)
NUMBER_TYPE = FieldType(NUMBER)
STRING_TYPE = FieldType(STRING)
BOOL_TYPE = FieldType(BOOL)
