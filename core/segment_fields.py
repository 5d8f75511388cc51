"""Which profile fields segment rules may name, their types, and how a rule reads them from a profile.

The catalog follows the profile as it grows: it is derived from the stored ``schemas.profile.Profile``
type (``msgspec.inspect.type_info``) plus the computed traits of ``core.traits`` (``TRAITS``: each
trait's type, the stored fields it reads, and whether it is an age field). Rules read a *view* of the
profile: the record's fields (its JSON form) plus the traits, computed at the view's ``now``.

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

from core.field_types import (
    ANY,
    ANY_TYPE,
    BOOL,
    BOOL_TYPE,
    LIST,
    MAP,
    NULL,
    NUMBER,
    NUMBER_TYPE,
    STRING,
    STRING_TYPE,
    STRUCT,
    FieldType,
)
from core.profile.policy import DAY_S, DEFAULT_POLICY, ProfilePolicy
from core.traits import DEPRECATED_NAMES, TRAITS, Trait
from schemas.profile import Profile

# Age fields are time-driven: their value grows with ``now``; rules compile them to ``days_since(<field>)``,
# the field (stored or a trait) holding the time they count from.
AGE_FIELDS: Mapping[str, str] = {trait.name: trait.age_of for trait in TRAITS.values() if trait.age_of is not None}


def _read_from_view(trait: Trait) -> Callable[[Mapping[str, Any]], Any]:
    return lambda view: trait.fn(view, 0.0, DEFAULT_POLICY)  # ``now`` and the policy are unused: not uses_now


# Traits a rule may read from any view, even one built without them (a dict view, in tests or from the API):
# those that need no ``now``. Name (or deprecated name) → (type, function of the view).
DERIVED_FIELDS: Mapping[str, tuple[FieldType, Callable[[Mapping[str, Any]], Any]]] = {
    name: (trait.type, _read_from_view(trait))
    for name, trait in {**TRAITS, **{old: TRAITS[new] for old, new in DEPRECATED_NAMES.items()}}.items()
    if not trait.uses_now
}
# The stored fields each trait reads, so a view built for a set of rules includes them.
DERIVED_INPUTS: Mapping[str, tuple[str, ...]] = {
    **{name: trait.inputs for name, trait in TRAITS.items()},
    **{old: TRAITS[new].inputs for old, new in DEPRECATED_NAMES.items()},
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


@dataclass(frozen=True)
class FieldCatalog:
    """The fields a rule may name: top-level record fields, plus bare-name aliases of nested record fields."""

    root: FieldType
    aliases: Mapping[str, str] = field(default_factory=dict)  # "country" → "traits"
    renames: Mapping[str, str] = field(default_factory=dict)  # deprecated name → its field

    def expand(self, path: tuple[str, ...]) -> tuple[str, ...]:
        """Apply deprecated names (``aov`` → ``average_order_value``) and bare-name aliases (``country`` →
        ``traits.country`` when unambiguous)."""
        head = path[0]
        if head not in self.root.fields:
            if head in self.renames:
                return (self.renames[head], *path[1:])
            if head in self.aliases:
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


def build_catalog(profile_type: type = Profile) -> FieldCatalog:
    """The catalog of the stored ``Profile`` (or ``profile_type``) and the computed traits of ``core.traits``.

    A stored field keeps its name and shape; a trait of the same name is not added (so ``category_affinity``
    is the stored ``{category: [value, at]}``, ``affinity`` the trait's decayed values).
    """
    root = type_of(msgspec.inspect.type_info(profile_type))
    fields = dict(root.fields)
    for name, trait in TRAITS.items():
        fields.setdefault(name, trait.type)
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
    renames = {old: new for old, new in DEPRECATED_NAMES.items() if old not in fields}
    return FieldCatalog(FieldType(STRUCT, fields=fields), aliases, renames)


# The traits a view holds: all but the age fields (rules read the time they count from, see ``AGE_FIELDS``)
# and those a stored field of the same name hides.
VIEW_TRAITS: tuple[Trait, ...] = tuple(
    trait for trait in TRAITS.values() if trait.age_of is None and trait.name not in Profile.__struct_encode_fields__
)

_json_encoder = msgspec.json.Encoder()
_json_decoder = msgspec.json.Decoder()


def profile_view(
    profile: Any, *, now: float, fields: Iterable[str] | None = None, policy: ProfilePolicy = DEFAULT_POLICY
) -> dict[str, Any]:
    """The dict rules read: the record's fields (its JSON form) plus the traits (``VIEW_TRAITS``) at ``now``.

    ``fields``: the top-level keys the reader needs (``SegmentDefinitions.view_fields``); the view then
    holds at least those, with the same values as the full view, and computes only the traits among them.
    None: every key. ``policy``: the profile policy the traits decide by (the affinity half-life, the RFM
    thresholds). A dict passes through unchanged (already a view, e.g. in tests or from the API).
    """
    if isinstance(profile, dict):
        return profile
    if fields is not None and isinstance(profile, msgspec.Struct) and not type(profile).__struct_config__.omit_defaults:
        return _partial_view(profile, frozenset(fields), now, policy)
    # The JSON round trip (C speed) gives the form rules are written against: record tuples as lists.
    view = _json_decoder.decode(_json_encoder.encode(profile))
    if isinstance(profile, Profile):
        _add_traits(profile, view, VIEW_TRAITS, now, policy)
    return view


_SCALAR_TYPES = (msgspec.inspect.StrType, msgspec.inspect.IntType, msgspec.inspect.FloatType, msgspec.inspect.BoolType)


def stored_as_viewed(info: msgspec.inspect.Type) -> bool:
    """Whether a field of this type is, in the view, its stored value: scalars and dicts of scalars by
    string key, which the JSON round trip gives back equal (``_partial_view`` checks each value). The one
    definition the partial view and the trigger rules' direct reads (``core.triggers.rules.plain_fields``) use."""
    kinds = info.types if isinstance(info, msgspec.inspect.UnionType) else (info,)
    return all(
        isinstance(kind, (msgspec.inspect.NoneType, *_SCALAR_TYPES))
        or (
            isinstance(kind, msgspec.inspect.DictType)
            and isinstance(kind.key_type, msgspec.inspect.StrType)
            and isinstance(kind.value_type, _SCALAR_TYPES)
        )
        for kind in kinds
    )


def _finite_numbers(values: dict[str, Any]) -> bool:
    """Whether a dict's values are all numbers, none a NaN or an infinity."""
    try:
        total = sum(values.values(), 0.0)  # a NaN or an infinity makes the sum one (so may an overflow)
    except TypeError:  # not all numbers
        return False
    return total - total == 0.0


def _getter(names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    """``record -> (its values of names)``, always a tuple."""
    if len(names) == 1:
        only = names[0]
        return lambda record: (getattr(record, only),)
    return operator.attrgetter(*names) if names else (lambda record: ())


@dataclass(frozen=True)
class _ViewPlan:
    """How to build a partial view of one record type: fields taken as stored, fields rendered, traits."""

    stored: tuple[str, ...]  # encoded names of the fields whose stored value may be their view value
    read_stored: Callable[[Any], tuple[Any, ...]]
    rendered: tuple[str, ...]  # encoded names of the fields the JSON round trip renders (tuples, records)
    read_rendered: Callable[[Any], tuple[Any, ...]]
    traits: tuple[Trait, ...]


@functools.lru_cache(maxsize=64)
def _view_plan(cls: Any, fields: frozenset[str]) -> _ViewPlan:
    """For a record type and wanted keys: which fields may be taken as stored, which rendered, the traits."""
    info = msgspec.inspect.type_info(cls)
    types = {field.name: field.type for field in info.fields} if isinstance(info, msgspec.inspect.StructType) else {}
    wanted = [
        (name, encoded)
        for name, encoded in zip(cls.__struct_fields__, cls.__struct_encode_fields__, strict=True)
        if encoded in fields
    ]
    stored = [(name, encoded) for name, encoded in wanted if name in types and stored_as_viewed(types[name])]
    rendered = [pair for pair in wanted if pair not in stored]
    traits = tuple(trait for trait in VIEW_TRAITS if trait.name in fields) if issubclass(cls, Profile) else ()
    return _ViewPlan(
        stored=tuple(encoded for _, encoded in stored),
        read_stored=_getter(tuple(name for name, _ in stored)),
        rendered=tuple(encoded for _, encoded in rendered),
        read_rendered=_getter(tuple(name for name, _ in rendered)),
        traits=traits,
    )


def _partial_view(profile: msgspec.Struct, fields: frozenset[str], now: float, policy: ProfilePolicy) -> dict[str, Any]:
    plan = _view_plan(type(profile), fields)
    # The same JSON round trip as the full view (under the encoded names), over the fields whose stored value
    # is not what it gives back: rendering every wanted field was most of the view's cost.
    rendered = dict(zip(plan.rendered, plan.read_rendered(profile), strict=True))
    view = {}
    for name, value in zip(plan.stored, plan.read_stored(profile), strict=True):
        # Whether the JSON round trip gives the value back equal: a string, an int, a bool, None, a finite
        # float (JSON has no NaN or infinity: they come back None), a dict of such numbers. A record built
        # without the decoder's checks may hold anything else: rendered then.
        cls = value.__class__
        if (
            cls is str
            or cls is int
            or (cls is float and value - value == 0.0)
            or value is None
            or cls is bool
            or (cls is dict and _finite_numbers(value))
        ):
            view[name] = value
        else:
            rendered[name] = value
    if rendered:
        view.update(_json_decoder.decode(_json_encoder.encode(rendered)))
    if plan.traits:
        _add_traits(profile, view, plan.traits, now, policy)
    return view


def _add_traits(
    profile: Any, view: dict[str, Any], traits: tuple[Trait, ...], now: float, policy: ProfilePolicy
) -> None:
    for trait in traits:
        view[trait.name] = trait.fn(profile, now, policy)


_MISSING = object()


def read_path(view: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    """The value at ``path`` in a profile view, or None; projects over lists of records."""
    if len(path) == 1 and view.__class__ is dict:  # a top-level key (a trait's time, for one): most reads
        value = view.get(path[0], _MISSING)
        if value is not _MISSING:
            return value
        derived = DERIVED_FIELDS.get(path[0])
        return None if derived is None else derived[1](view)
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


# The rule language (``core.rules``) imports the field types and kinds from here.
__all__ = [
    "AGE_FIELDS",
    "ANY",
    "ANY_TYPE",
    "BOOL",
    "BOOL_TYPE",
    "DAY_S",
    "DERIVED_FIELDS",
    "DERIVED_INPUTS",
    "LIST",
    "MAP",
    "NULL",
    "NUMBER",
    "NUMBER_TYPE",
    "STRING",
    "STRING_TYPE",
    "STRUCT",
    "VIEW_TRAITS",
    "FieldCatalog",
    "FieldType",
    "build_catalog",
    "profile_view",
    "read_path",
    "read_time",
    "type_of",
]
