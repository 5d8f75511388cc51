"""Which profile fields segment rules may name, their types, and how a rule reads them from a profile.

The catalog follows the profile as it grows: it is derived from the real ``core.profile.Profile`` type
(``msgspec.inspect.type_info``) plus the keys ``profile_document`` adds (discovered by rendering an empty
profile) plus the derived fields declared here. Rules read a *view* of the profile: the dict from
``profile_document(profile, now=...)`` when that exists, else ``msgspec.to_builtins(profile)``.

Paths are tuples of names and keys: ``("traits", "country")``, ``("scores", "purchase_7d")``,
``("cart", "category")`` (a field of every item of a list of records: projects to a list).
"""

from __future__ import annotations

import difflib
import functools
import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

NUMBER = "number"
STRING = "string"
BOOL = "bool"
LIST = "list"
MAP = "map"
STRUCT = "struct"
ANY = "any"
NULL = "null"

DAY_S = 86400.0


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


# Fields computed from the profile that a rule may name even if ``profile_document`` does not add them.
# Age fields are time-driven: their value grows with ``now``; rules compile them to ``days_since(<field>)``.
AGE_FIELDS: Mapping[str, str] = {
    "days_since_last_order": "last_order_at",
    "days_since_last_seen": "last_seen",
    "days_since_first_seen": "first_seen",
    "days_since_cart_update": "cart_updated_at",
    "days_since_last_checkout": "last_checkout_at",
}


def _cart_items(view: Mapping[str, Any]) -> list:
    cart = view.get("cart")
    return cart if isinstance(cart, list) else []


def _aov(view: Mapping[str, Any]) -> float | None:
    orders = view.get("orders") or 0
    return (view.get("revenue") or 0) / orders if orders else None


DERIVED_FIELDS: Mapping[str, tuple[FieldType, Callable[[Mapping[str, Any]], Any]]] = {
    "aov": (NUMBER_TYPE, _aov),
    "cart_size": (NUMBER_TYPE, lambda view: sum(int(i.get("quantity") or 0) for i in _cart_items(view))),
    "cart_value": (
        NUMBER_TYPE,
        lambda view: sum(int(i.get("quantity") or 0) * int(i.get("price") or 0) for i in _cart_items(view)),
    ),
}
# The view keys each derived field reads, so a view built for a set of rules includes them.
DERIVED_INPUTS: Mapping[str, tuple[str, ...]] = {
    "aov": ("orders", "revenue"),
    "cart_size": ("cart",),
    "cart_value": ("cart",),
}


def type_of(info: msgspec.inspect.Type) -> FieldType:
    """A msgspec type description → the rule language's ``FieldType``."""
    mi = msgspec.inspect
    if isinstance(info, (mi.IntType, mi.FloatType, mi.DecimalType)):
        return NUMBER_TYPE
    if isinstance(info, (mi.StrType, mi.DateTimeType, mi.DateType)):
        return STRING_TYPE
    if isinstance(info, mi.BoolType):
        return BOOL_TYPE
    if isinstance(info, mi.LiteralType):
        kinds = {type(value) for value in info.values}
        return STRING_TYPE if kinds == {str} else NUMBER_TYPE if kinds <= {int, float} else ANY_TYPE
    if isinstance(info, mi.UnionType):
        members = [member for member in info.types if not isinstance(member, mi.NoneType)]
        return type_of(members[0]) if len(members) == 1 else ANY_TYPE
    if isinstance(info, (mi.ListType, mi.VarTupleType, mi.SetType, mi.FrozenSetType)):
        return FieldType(LIST, type_of(info.item_type))
    if isinstance(info, mi.TupleType):
        items = [type_of(item) for item in info.item_types]
        same = bool(items) and all(item == items[0] for item in items)
        return FieldType(LIST, items[0] if same else ANY_TYPE)
    if isinstance(info, mi.DictType):
        return FieldType(MAP, type_of(info.value_type))
    if isinstance(info, (mi.StructType, mi.DataclassType, mi.TypedDictType)):
        return FieldType(STRUCT, fields={f.encode_name: type_of(f.type) for f in info.fields})
    return ANY_TYPE


def _type_of_value(value: Any) -> FieldType:
    if isinstance(value, bool):
        return BOOL_TYPE
    if isinstance(value, (int, float)):
        return NUMBER_TYPE
    if isinstance(value, str):
        return STRING_TYPE
    if isinstance(value, list):
        return FieldType(LIST, ANY_TYPE)
    if isinstance(value, dict):
        return FieldType(MAP, ANY_TYPE)
    return ANY_TYPE


@dataclass(frozen=True)
class FieldCatalog:
    """The fields a rule may name: top-level record fields, plus bare-name aliases of nested record fields."""

    root: FieldType
    aliases: Mapping[str, str] = field(default_factory=dict)  # "country" → "traits"

    def expand(self, path: tuple[str, ...]) -> tuple[str, ...]:
        """Apply bare-name aliases: ``country`` → ``traits.country`` when unambiguous."""
        head = path[0]
        if head not in self.root.fields and head in self.aliases:
            return (self.aliases[head], *path)
        return path

    def resolve(self, path: tuple[str, ...]) -> FieldType:
        """The type at ``path`` (already expanded); raises ``LookupError`` with a readable message."""
        current = self.root
        for depth, name in enumerate(path):
            if current.kind == STRUCT:
                if name not in current.fields:
                    where = ".".join(path[:depth]) or "profile"
                    known = sorted(current.fields) if depth else sorted({*current.fields, *self.aliases})
                    close = difflib.get_close_matches(name, known, n=1)
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                    message = f"unknown field {'.'.join(path[: depth + 1])!r} in {where}{hint}"
                    raise LookupError(message)
                current = current.fields[name]
            elif current.kind == MAP:
                current = current.item or ANY_TYPE
            elif current.kind == LIST and current.item is not None and current.item.kind == STRUCT:
                inner = FieldCatalog(current.item).resolve((name,))
                current = FieldType(LIST, inner)
            elif current.kind == ANY:
                return ANY_TYPE
            else:
                message = f"{'.'.join(path[:depth])!r} is a {current.describe()}; it has no field {name!r}"
                raise LookupError(message)
        return current


# ``profile_document`` keys that hold the same data as a record field in another shape are not added to
# the view (the record's shape wins); these are added under another name instead.
DOCUMENT_RENAMES: Mapping[str, str] = {"category_affinity": "affinity"}
DOCUMENT_CONTAINERS = ("computed",)  # nested sections of the document whose keys are lifted to the top


def document_extras(document: Mapping[str, Any], record_fields: Iterable[str]) -> dict[str, Any]:
    """What the document adds to the record: derived traits (lifted from ``computed``) and new sections."""
    record = set(record_fields)
    extras: dict[str, Any] = {}
    sections = [document, *(document.get(name) for name in DOCUMENT_CONTAINERS)]
    for section in sections:
        if not isinstance(section, dict):
            continue
        for key, value in section.items():
            name = DOCUMENT_RENAMES.get(key, key)
            if name not in record and name not in DOCUMENT_CONTAINERS:
                extras.setdefault(name, value)
    return extras


def build_catalog(profile_type: type | None = None) -> FieldCatalog:
    """The catalog of the real ``Profile`` (or ``profile_type``), its document's extras and derived fields."""
    if profile_type is None:
        from core.profile import Profile

        profile_type = Profile
    root = type_of(msgspec.inspect.type_info(profile_type))
    fields = dict(root.fields)
    for name, value in document_extras(_document_sample(profile_type), root.fields).items():
        fields.setdefault(name, _type_of_value(value))
    for name, (ftype, _) in DERIVED_FIELDS.items():
        fields.setdefault(name, ftype)
    for name in AGE_FIELDS:
        fields[name] = NUMBER_TYPE
    aliases: dict[str, str] = {}
    ambiguous: set[str] = set()
    for parent, ftype in fields.items():
        if ftype.kind != STRUCT:
            continue
        for name in ftype.fields:
            if name in fields:
                continue
            if name in aliases:
                ambiguous.add(name)
            aliases[name] = parent
    for name in ambiguous:
        del aliases[name]
    return FieldCatalog(FieldType(STRUCT, fields=fields), aliases)


def _document_sample(profile_type: type) -> dict[str, Any]:
    """The document of an empty profile, to learn which keys ``profile_document`` adds."""
    try:
        from core import profile as profile_module

        render = getattr(profile_module, "profile_document", None)
        if render is None or profile_type is not getattr(profile_module, "Profile", None):
            return {}
        sample = render(profile_module.new_profile("catalog-sample"), now=0.0)
    except Exception:  # noqa: BLE001 - a broken renderer must not hide the record's own fields
        return {}
    return sample if isinstance(sample, dict) else {}


_json_encoder = msgspec.json.Encoder()
_json_decoder = msgspec.json.Decoder()


@functools.cache
def _document_extra_names(profile_type: type) -> frozenset[str]:
    """The view keys only ``profile_document`` provides (its keys are fixed, so an empty profile shows them)."""
    return frozenset(document_extras(_document_sample(profile_type), profile_type.__struct_encode_fields__))


def profile_view(profile: Any, *, now: float, fields: Iterable[str] | None = None) -> dict[str, Any]:
    """The dict rules read: the record's fields (``msgspec.to_builtins``) plus ``profile_document``'s extras.

    ``fields``: the top-level keys the reader needs (``SegmentDefinitions.view_fields``); the view then
    holds at least those, with the same values as the full view, and the document is rendered only if one
    of them comes from it. None: every key. A dict passes through unchanged (already a view, e.g. in tests
    or from the API).
    """
    if isinstance(profile, dict):
        return profile
    if fields is not None and isinstance(profile, msgspec.Struct) and not type(profile).__struct_config__.omit_defaults:
        return _partial_view(profile, frozenset(fields), now)
    # The JSON round trip (C speed) gives the form rules are written against: record tuples as lists.
    view = _json_decoder.decode(_json_encoder.encode(profile))
    _add_document_extras(profile, view, now)
    return view


@functools.lru_cache(maxsize=64)
def _view_plan(cls: type, fields: frozenset[str]) -> tuple[tuple[str, ...], Callable[[Any], Any], bool]:
    """For a record type and wanted keys: the encoded names, a getter of their values, whether to render."""
    pairs = [
        (name, encoded)
        for name, encoded in zip(cls.__struct_fields__, cls.__struct_encode_fields__)
        if encoded in fields
    ]
    names = tuple(name for name, _ in pairs)
    if len(names) == 1:
        only = names[0]
        getter: Callable[[Any], Any] = lambda record: (getattr(record, only),)  # noqa: E731
    else:
        getter = operator.attrgetter(*names) if names else (lambda record: ())
    return tuple(encoded for _, encoded in pairs), getter, not fields.isdisjoint(_document_extra_names(cls))


def _partial_view(profile: msgspec.Struct, fields: frozenset[str], now: float) -> dict[str, Any]:
    encoded, values_of, render = _view_plan(type(profile), fields)
    # The same JSON round trip as the full view, over the wanted fields only (under their encoded names).
    view = _json_decoder.decode(_json_encoder.encode(dict(zip(encoded, values_of(profile)))))
    if render:
        _add_document_extras(profile, view, now)
    return view


def _add_document_extras(profile: Any, view: dict[str, Any], now: float) -> None:
    from core import profile as profile_module

    render = getattr(profile_module, "profile_document", None)
    if render is not None and isinstance(profile, profile_module.Profile):
        document = render(profile, now=now)
        if isinstance(document, dict):
            record = set(view) | set(type(profile).__struct_encode_fields__)
            for key, value in document_extras(document, record).items():
                view.setdefault(key, value)


_MISSING = object()


def read_path(view: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    """The value at ``path`` in a profile view, or None; projects over lists of records."""
    if len(path) == 1 and path[0] not in view and path[0] in DERIVED_FIELDS:
        return DERIVED_FIELDS[path[0]][1](view)
    current: Any = view
    for name in path:
        if isinstance(current, dict):
            current = current.get(name, _MISSING)
            if current is _MISSING:
                return None
        elif isinstance(current, list):
            current = [item.get(name) for item in current if isinstance(item, dict)]
        else:
            return None
    return current


def read_time(view: Mapping[str, Any], path: tuple[str, ...]) -> float | None:
    """A timestamp at ``path``; 0 and missing mean "never" (the profile's defaults)."""
    value = read_path(view, path)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        return None
    return float(value)
