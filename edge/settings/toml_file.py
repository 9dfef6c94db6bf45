"""The ``--config`` TOML file: every key matched to a setting, every value converted, or one line why not.

The file holds the settings under their keys (``deploy/config.example.toml`` shows every one):
top-level keys for the model, detection, input, run and output; a table per integration
(``[mqtt] url = ...``); underscores may stand for dashes. Errors read
``config <path>: key '<key>': <what is wrong>``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from edge.errors import EdgeError
from edge.settings.entries import Entry, canon
from edge.settings.values import BadValue, from_toml, suggestion

NOT_SETTINGS = ("config", "check-config", "help")


def load_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise EdgeError(f"config {path}: file not found") from None
    except IsADirectoryError:
        raise EdgeError(f"config {path}: is a folder, not a TOML file") from None
    except OSError as exc:
        raise EdgeError(f"config {path}: cannot read it: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise EdgeError(f"config {path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise EdgeError(f"config {path}: not valid TOML: {exc}") from None


class FileReader:
    """Matches the keys of one file against the entries of one command."""

    def __init__(self, entries: list[Entry], path: Path, prog: str):
        self.path = path
        self.prog = prog
        self.by_place = {(entry.table, canon(entry.key)): entry for entry in entries}
        self.tables = sorted({entry.table for entry in entries if entry.table})

    def fail(self, key: str, message: str) -> EdgeError:
        return EdgeError(f"config {self.path}: key '{key}': {message}")

    def read(self) -> dict[Entry, tuple[Any, str]]:
        """{entry: (value, key as written)} for every setting in the file."""
        found: dict[Entry, tuple[Any, str]] = {}
        for key, value in load_toml(self.path).items():
            if isinstance(value, dict) and (canon(key) in self.tables or (None, canon(key)) not in self.by_place):
                for inner_key, inner_value in self.table(key, value):
                    self.add(found, canon(key), inner_key, inner_value, f"{key}.{inner_key}")
            else:
                self.add(found, None, key, value, key)
        return found

    def table(self, key: str, body: dict[str, Any]) -> list[tuple[str, Any]]:
        if canon(key) not in self.tables:
            raise self.fail(key, "unknown table" + (suggestion(canon(key), self.tables)
                                                    or f"; the tables are {', '.join(self.tables) or 'none'}"))
        for inner_key, value in body.items():
            if isinstance(value, dict):
                raise self.fail(f"{key}.{inner_key}", "tables hold settings, not other tables")
        return list(body.items())

    def add(self, found: dict, table: str | None, key: str, value: Any, shown: str) -> None:
        entry = self.by_place.get((table, canon(key)))
        if entry is None:
            raise self.fail(shown, self.unknown(table, key))
        earlier = found.get(entry)
        if earlier is not None:
            raise self.fail(shown, f"sets {entry.option} again (already set by '{earlier[1]}')")
        try:
            found[entry] = (from_toml(value, entry.kind, entry.spec), shown)
        except BadValue as exc:
            if exc.subkey:
                raise self.fail(shown + exc.subkey, exc.message) from None
            raise self.fail(shown, exc.message) from None

    def unknown(self, table: str | None, key: str) -> str:
        name = canon(key)
        if table is None and name in NOT_SETTINGS:
            return "is not a setting; give it on the command line"
        if table is not None and (None, name) in self.by_place:
            # TOML puts every key after a [table] line into that table
            return f"unknown setting in [{table}]; '{key}' goes at the top, before any [table] line"
        homes = [t for t in self.tables if (t, name) in self.by_place]
        if table is None and homes:
            return f"belongs in [{homes[0]}]: write it after the [{homes[0]}] line"
        keys = sorted(k for t, k in self.by_place if t == table)
        return "unknown setting" + (suggestion(name, keys, f"{table}." if table else "")
                                    or f"; the settings are the long options of `{self.prog} --help`")
