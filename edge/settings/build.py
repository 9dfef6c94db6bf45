"""The settings of one run, built once: defaults, then the TOML file, then the command line.

Every section is constructed here, so its own checks run here; a problem becomes one line naming
where the value came from: ``config <path>: key 'mqtt.url': ...`` for the file, ``argument
--mqtt: ...`` for the command line. ``--check-config`` is this build plus the checks that need the
model's names (see ``edge.cli``), so nothing a run would refuse passes it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Mapping, Sequence

from edge.errors import EdgeError, InvalidSetting
from edge.redact import redact_url
from edge.settings.entries import Entry, entries_of
from edge.settings.parser import make_parser, parse_command_line
from edge.settings.toml_file import FileReader
from edge.settings.values import entry_value, toml_literal

MASK = "********"
FROM_FILE, FROM_COMMAND_LINE, FROM_DEFAULT = "file", "command line", "default"
CrossCheck = Callable[["Settings"], None]  # raises InvalidSetting("<section>.<field>", message)


class Settings(SimpleNamespace):
    """One attribute per section (``settings.model``, ``settings.mqtt``; None for a section left off)."""

    def __init__(self, sections: Mapping[str, Any], entries: list[Entry], origins: Mapping[Entry, tuple[str, str]],
                 config: Path | None, check: bool):
        super().__init__(**sections)
        self._entries = entries
        self._origins = origins
        self.config_path = config
        self.check_only = check

    def blame(self, section: str, field: str, message: str) -> EdgeError:
        """One line for a problem with ``section.field``, naming the key or flag the value came from.

        ``field`` may point inside a list of tables, ``zones[1].labels``: the key then reads
        ``track.zones[1].labels``.
        """
        name, bracket, inside = field.partition("[")
        entry = next((e for e in self._entries if e.section == section and e.name == name), None)
        if entry is None:
            return EdgeError(f"{section} {field}: {message}")
        origin, shown = self._origins.get(entry, (FROM_DEFAULT, entry.shown_key))
        if origin == FROM_FILE:
            return EdgeError(f"config {self.config_path}: key '{shown}{bracket}{inside}': {message}")
        if origin == FROM_COMMAND_LINE:
            return EdgeError(f"argument {entry.option}: {message}")
        return EdgeError(f"{entry.option} (default): {message}")

    def entries(self) -> list[Entry]:
        return list(self._entries)


def build_settings(sections: Mapping[str, type], argv: Sequence[str], *, prog: str, description: str = "",
                   with_config: bool = True, checks: Sequence[CrossCheck] = ()) -> Settings:
    entries = entries_of(sections)
    parser = make_parser(prog, description, entries, with_config)
    cli_values, namespace = parse_command_line(parser, entries, argv)
    path = Path(namespace.config) if with_config and namespace.config else None
    file_values = FileReader(entries, path, prog).read() if path else {}
    return _Builder(sections, entries, cli_values, file_values, path, bool(getattr(namespace, "check_config", False)),
                    parser).build(checks)


def help_text(sections: Mapping[str, type], *, prog: str, description: str = "", with_config: bool = True) -> str:
    return make_parser(prog, description, entries_of(sections), with_config).format_help()


class _Builder:
    def __init__(self, sections: Mapping[str, type], entries: list[Entry], cli_values: dict[Entry, Any],
                 file_values: dict[Entry, tuple[Any, str]], path: Path | None, check: bool, parser: argparse.ArgumentParser):
        self.sections, self.entries, self.path, self.check = sections, entries, path, check
        self.values: dict[Entry, Any] = {e: v for e, (v, _) in file_values.items()}
        self.origins: dict[Entry, tuple[str, str]] = {e: (FROM_FILE, shown) for e, (_, shown) in file_values.items()}
        self.values.update(cli_values)
        self.origins.update({e: (FROM_COMMAND_LINE, e.option) for e in cli_values})
        self.hint = f" (set in config {path} or on the command line)" if path else ""

    def settings(self, built: Mapping[str, Any]) -> Settings:
        return Settings(built, self.entries, self.origins, self.path, self.check)

    def build(self, checks: Sequence[CrossCheck]) -> Settings:
        built: dict[str, Any] = {}
        for section, owner in self.sections.items():
            built[section] = self.section(section, owner)
        settings = self.settings(built)
        for check in checks:
            try:
                check(settings)
            except InvalidSetting as exc:
                section, _, field = exc.field.partition(".")
                raise settings.blame(section, field, exc.message) from None
        return settings

    def section(self, section: str, owner: type) -> Any:
        mine = [e for e in self.entries if e.section == section]
        for group in getattr(owner, "ONE_OF", ()):
            self.one_of([e for e in mine if e.name in group])
        enabled_by = getattr(owner, "ENABLED_BY", None)
        if enabled_by is not None and not any(e.name == enabled_by and e in self.values for e in mine):
            given = [e for e in mine if e in self.values]
            if given:
                switch = next(e for e in mine if e.name == enabled_by)
                raise self.blame(given[0], f"needs {switch.option} {switch.spec.metavar or ''} ('{switch.shown_key}' in the "
                                           "config file): set it, or drop this setting".replace("  ", " "))
            return None
        missing = [e for e in mine if e.required and e not in self.values]
        if missing:
            raise EdgeError(f"the following arguments are required: {', '.join(e.option for e in missing)}{self.hint}")
        kwargs = {e.name: self.values[e] for e in mine if e in self.values}
        try:
            return owner(**kwargs)
        except InvalidSetting as exc:
            entry = next((e for e in mine if e.name == exc.field.partition("[")[0]), None)
            if entry is None:
                raise EdgeError(f"{getattr(owner, 'TITLE', section)}: {exc.message}") from None
            raise self.settings({}).blame(section, exc.field, exc.message) from None

    def one_of(self, group: list[Entry]) -> None:
        """Exactly one of ``group``; the command line replaces the file's choice."""
        on_line = [e for e in group if self.origins.get(e, ("",))[0] == FROM_COMMAND_LINE]
        in_file = [e for e in group if self.origins.get(e, ("",))[0] == FROM_FILE]
        if len(on_line) > 1:
            raise EdgeError(f"argument {on_line[1].option}: not allowed with argument {on_line[0].option}")
        if on_line:
            for entry in in_file:
                del self.values[entry], self.origins[entry]
            return
        if len(in_file) > 1:
            raise self.blame(in_file[1], f"cannot be combined with '{self.origins[in_file[0]][1]}'; set only one of them")
        if not in_file:
            raise EdgeError(f"one of the arguments {' '.join(e.option for e in group)} is required{self.hint}")

    def blame(self, entry: Entry, message: str) -> EdgeError:
        return self.settings({}).blame(entry.section, entry.name, message)


def format_settings(settings: Settings, prog: str) -> str:
    """The settings as a config file that reproduces them: secrets masked, URLs without credentials,
    settings left unset commented out."""
    flat: list[str] = []
    tables: dict[str, list[str]] = {}
    for entry in settings.entries():
        section = getattr(settings, entry.section)
        value = entry_value(entry, getattr(section, entry.name)) if section is not None else None
        if value is None or value == []:
            line = f"# {entry.key} =   (not set)"
        elif entry.spec.secret:
            line = f"{entry.key} = {toml_literal(MASK)}"
        else:
            line = f"{entry.key} = {toml_literal(_without_credentials(value))}"
        (tables.setdefault(entry.table, []) if entry.table else flat).append(line)
    source = f", from {settings.config_path} and the command line" if settings.config_path else ""
    lines = [f"# effective settings of {prog}{source}", *flat]
    for table, body in tables.items():
        lines += ["", f"[{table}]", *body]
    return "\n".join(lines)


def _without_credentials(value: Any) -> Any:
    if isinstance(value, str) and "://" in value:
        return redact_url(value)
    if isinstance(value, list):
        return [_without_credentials(v) for v in value]
    return value
