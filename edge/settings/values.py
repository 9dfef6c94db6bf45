"""A raw value, from the TOML file or the command line, into what its setting's type says.

Both sources convert through here, so ``threads = "many"`` in the file and ``--threads many`` on
the command line are refused with the same words. Secrets are never echoed.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import json
import math
from pathlib import Path
from typing import Any

from edge.errors import InvalidSetting
from edge.fields import MISSING, Spec
from edge.settings.entries import Entry, Kind, canon, nested_entries


class BadValue(Exception):
    """``message`` says what is wrong; ``subkey`` where inside the value (``[1].points``), if anywhere."""

    def __init__(self, message: str, subkey: str = ""):
        super().__init__(message)
        self.message = message
        self.subkey = subkey


def kind_word(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, (datetime.date, datetime.time)):
        return "a date or time"
    return type(value).__name__


def toml_literal(value: Any) -> str:
    """One TOML value; strings as basic strings (JSON escapes are valid TOML, DEL must be escaped too)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_literal(v) for v in value) + "]"
    if dataclasses.is_dataclass(value):
        return toml_table(value)
    return json.dumps(str(value), ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_table(section: Any) -> str:
    """An inline table of a nested section's settings (a zone), for printing settings back."""
    parts = [f"{entry.key} = {toml_literal(getattr(section, entry.name))}" for entry in nested_entries(type(section))
             if getattr(section, entry.name) is not None]
    return "{ " + ", ".join(parts) + " }"


def received(value: Any, spec: Spec) -> str:
    if spec.secret:
        return f"received {kind_word(value)} (value hidden)"
    if isinstance(value, (bool, int, float, str)) or (isinstance(value, list) and all(
            isinstance(v, (bool, int, float, str)) for v in value)):
        return f"received {toml_literal(value)}"
    return f"received {kind_word(value)}"


def from_toml(value: Any, kind: Kind, spec: Spec) -> Any:
    """A value as tomllib read it, converted to ``kind``; BadValue when it does not fit."""
    if kind.is_list:
        if not isinstance(value, list):
            example = toml_literal([value]) if not spec.secret and isinstance(value, (bool, int, float, str)) else "[...]"
            raise BadValue(f"expected an array, {received(value, spec)}; write {example}")
        if not value:
            raise BadValue("expected at least one value, received an empty array")
        converted = []
        for index, item in enumerate(value):
            try:
                converted.append(from_toml(item, kind.items, spec))
            except BadValue as exc:
                raise BadValue(exc.message, f"[{index}]{exc.subkey}") from None
        return tuple(converted)
    if kind.fixed is not None:
        if not isinstance(value, list) or len(value) != len(kind.fixed):
            raise BadValue(f"expected an array of {len(kind.fixed)} values, {received(value, spec)}")
        return tuple(from_toml(item, item_kind, spec) for item, item_kind in zip(value, kind.fixed))
    if dataclasses.is_dataclass(kind.base):
        return section_from_toml(value, kind.base)
    return _scalar(value, kind, spec, text=False)


def from_text(value: str | list[str] | bool, kind: Kind, spec: Spec) -> Any:
    """A command-line value (a string, the strings after a list option, or a switch's bool)."""
    if isinstance(value, bool):
        return value
    if kind.is_list:
        return tuple(_scalar(item, kind.items, spec, text=True) for item in value)
    return _scalar(value, kind, spec, text=True)


def _scalar(value: Any, kind: Kind, spec: Spec, text: bool) -> Any:
    base = kind.base
    shown = f"received {json.dumps(value)}" if text and not spec.secret else received(value, spec)
    if base is bool:
        if not isinstance(value, bool):
            raise BadValue(f"expected true or false, {shown}")
        return value
    if base is int:
        if text:
            try:
                return int(value)
            except ValueError:
                raise BadValue(f"expected an integer, {shown}") from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadValue(f"expected an integer, {shown}")
        return value
    if base is float:
        if text:
            try:
                return float(value)
            except ValueError:
                raise BadValue(f"expected a number, {shown}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BadValue(f"expected a number, {shown}")
        return float(value)
    # str and Path: an integer reads as its text (camera = 0, classes = [0, "car"])
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise BadValue(f"expected a string, {shown}")
    result: Any = str(value)
    if spec.parse is not None:
        try:
            result = spec.parse(result)
        except ValueError as exc:
            raise BadValue(str(exc) if not spec.secret else f"invalid value ({shown})") from None
    return Path(result) if base is Path else result


def section_from_toml(table: Any, owner: type) -> Any:
    """A nested section (one zone) from a TOML table; errors name the key inside it."""
    if not isinstance(table, dict):
        raise BadValue(f"expected a table, received {kind_word(table)}")
    entries = {canon(entry.key): entry for entry in nested_entries(owner)}
    values: dict[str, Any] = {}
    for key, raw in table.items():
        entry = entries.get(canon(key))
        if entry is None:
            raise BadValue("unknown setting" + suggestion(canon(key), sorted(entries)), f".{key}")
        try:
            values[entry.name] = from_toml(raw, entry.kind, entry.spec)
        except BadValue as exc:
            raise BadValue(exc.message, f".{key}{exc.subkey}") from None
    missing = [entry.key for entry in entries.values() if entry.default is MISSING and entry.name not in values]
    if missing:
        raise BadValue(f"missing key '{missing[0]}'")
    try:
        return owner(**values)
    except InvalidSetting as exc:
        where = next((e.key for e in entries.values() if e.name == exc.field), exc.field)
        raise BadValue(exc.message, f".{where}") from None


def suggestion(key: str, candidates: list[str], prefix: str = "") -> str:
    close = difflib.get_close_matches(key, candidates, n=3, cutoff=0.6)
    return "; did you mean " + " or ".join(f"'{prefix}{c}'" for c in close) + "?" if close else ""


def entry_value(entry: Entry, value: Any) -> Any:
    """What to write in a config file to reproduce ``value`` (None: not set)."""
    if value is None:
        return None
    if isinstance(value, (tuple, list)):
        return [v if isinstance(v, (bool, int, float, str)) or dataclasses.is_dataclass(v) else str(v) for v in value]
    return value if isinstance(value, (bool, int, float, str)) else str(value)
