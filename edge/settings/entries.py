"""Every setting of a command, read off its sections' dataclasses: name, type, TOML place and flag.

An :class:`Entry` is the one record the parser, the file reader, the builder and the docs share;
none of them looks at a dataclass field directly.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from edge.fields import MISSING, Spec, setting_fields

SCALARS = (bool, int, float, str, Path)


@dataclass(frozen=True)
class Kind:
    """The shape of a setting's type: a scalar, a fixed tuple, a tuple of items, or a nested section."""

    base: Any  # one of SCALARS, a dataclass type, or tuple (with items / fixed)
    optional: bool = False
    items: Kind | None = None  # tuple[X, ...]
    fixed: tuple[Kind, ...] | None = None  # tuple[X, Y]
    accepts_int: bool = False  # str | int: a TOML integer is taken as its text

    @property
    def is_list(self) -> bool:
        return self.items is not None


def kind_of(hint: Any) -> Kind:
    """The Kind of an annotation such as ``float | None`` or ``tuple[ZoneSettings, ...]``."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(args) < len(typing.get_args(hint))
        if set(args) == {str, int}:
            return Kind(str, optional=optional, accepts_int=True)
        if len(args) != 1:
            raise TypeError(f"unsupported setting type {hint}")
        return dataclasses.replace(kind_of(args[0]), optional=optional)
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return Kind(tuple, items=kind_of(args[0]))
        return Kind(tuple, fixed=tuple(kind_of(a) for a in args))
    if hint in SCALARS or dataclasses.is_dataclass(hint):
        return Kind(hint)
    raise TypeError(f"unsupported setting type {hint}")


def canon(key: str) -> str:
    """TOML keys may use ``_`` or ``-``: one spelling to compare."""
    return key.replace("_", "-").lower()


@dataclass(frozen=True)
class Entry:
    section: str  # attribute of the built Settings
    owner: type  # the section's dataclass
    name: str  # the dataclass field
    spec: Spec
    kind: Kind
    table: str | None  # TOML table; None is the top level
    key: str  # TOML key inside the table
    flag: str | None  # long option without dashes; None when not on the command line
    default: Any  # MISSING when required

    @property
    def shown_key(self) -> str:
        return f"{self.table}.{self.key}" if self.table else self.key

    @property
    def option(self) -> str:
        return f"--{self.flag}" if self.flag else f"[{self.table}] {self.key}" if self.table else self.key

    @property
    def required(self) -> bool:
        return self.default is MISSING


def field_default(field: dataclasses.Field) -> Any:
    if field.default is not MISSING:
        return field.default
    if field.default_factory is not MISSING:
        return field.default_factory()
    return MISSING


def section_entries(section: str, owner: type) -> list[Entry]:
    hints = typing.get_type_hints(owner)
    table = getattr(owner, "TABLE", None)
    prefix = getattr(owner, "FLAG_PREFIX", "")
    found = []
    for field, spec in setting_fields(owner):
        key = spec.key or field.name.replace("_", "-")
        flag = None
        if spec.cli and not spec.secret:
            flag = spec.flag or f"{prefix}{key}"
        found.append(Entry(section, owner, field.name, spec, kind_of(hints[field.name]), table, key, flag,
                           field_default(field)))
    return found


def entries_of(sections: Mapping[str, type]) -> list[Entry]:
    """Every setting of ``sections`` ({attribute: dataclass}), checked for clashing keys and flags."""
    found = [entry for section, owner in sections.items() for entry in section_entries(section, owner)]
    keys: dict[tuple[str | None, str], Entry] = {}
    flags: dict[str, Entry] = {}
    for entry in found:
        for index, name in ((keys, (entry.table, canon(entry.key))), (flags, entry.flag)):
            if name is None:
                continue
            other = index.setdefault(name, entry)
            if other is not entry:
                raise TypeError(f"{entry.owner.__name__}.{entry.name} and {other.owner.__name__}.{other.name} share {name}")
    return found


def nested_entries(owner: type) -> list[Entry]:
    """The fields of a section nested in another one (a zone in a list of zones): only TOML keys."""
    return [dataclasses.replace(entry, table=None, flag=None) for entry in section_entries("", owner)]
