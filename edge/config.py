"""Settings from a TOML file, checked against the command-line parser.

The file holds the command-line settings under the same names, so it stays in step as options are
added (``deploy/config.example.toml`` shows every one):

* a key is a long option without its dashes: ``max-fps = 10`` is ``--max-fps 10``; underscores may
  stand for dashes (``max_fps``);
* a table ``[T]`` abbreviates the prefix ``T-``: ``[mqtt] username = "cam"`` is ``--mqtt-username cam``;
  inside ``[T]`` the option ``--T`` itself is written under its metavar: ``[mqtt] url`` for ``--mqtt URL``;
* switches take ``true``/``false``, lists take arrays, strings may also be written as integers
  (``classes = [0, "car"]``, as ``--classes 0 car``);
* the command line overrides the file.

Every problem becomes one EdgeError line: ``config <path>: key '<key>': <what is wrong>``.
Values of keys whose name contains password, secret or token (but does not end in -file) are never printed.
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import os
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, TextIO

from edge.errors import EdgeError

CONFIG_OPTION = "--config"
CHECK_OPTION = "--check-config"
SECRET_WORDS = ("password", "secret", "token")
MASK = "********"
# Devices the interpreter accepts: cpu, or an Edge TPU by bus and index (pycoral's device strings).
DEVICE_PATTERN = re.compile(r"cpu|edgetpu(:(usb|pci)(:\d+)?|:\d+)?")
DEVICE_FORMS = "cpu, edgetpu, edgetpu:usb, edgetpu:usb:N, edgetpu:pci or edgetpu:pci:N"
# Actions that hold no setting: they act (help, version) or choose a sub-command.
_NOT_SETTINGS = (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)
_ACCUMULATING = (argparse._AppendAction, argparse._ExtendAction, argparse._CountAction, argparse._AppendConstAction)


class InvalidSetting(Exception):
    """Raised by a validator: the setting ``dest`` (argparse destination) is wrong, ``message`` says how.

    apply_config turns it into one line naming the config key or the command-line option it came from.
    """

    def __init__(self, dest: str, message: str):
        super().__init__(f"{dest}: {message}")
        self.dest = dest
        self.message = message


Validator = Callable[[argparse.Namespace], None]


class _UnsetType:
    def __repr__(self) -> str:
        return "<not on the command line>"


_UNSET = _UnsetType()


@dataclass(frozen=True)
class _Setting:
    key: str                  # as written in the file, e.g. "mqtt.username"
    name: str                 # the long option it sets, without dashes, e.g. "mqtt-username"
    action: argparse.Action
    value: Any                # converted as the command line would convert it


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--config PATH`` and ``--check-config`` to ``parser``."""
    parser.add_argument(CONFIG_OPTION, metavar="PATH", default=None,
                        help="read settings from this TOML file; options given on the command line override it")
    parser.add_argument(CHECK_OPTION, action="store_true",
                        help="check the settings, print them as TOML (secrets masked) and exit")


def apply_config(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None,
                 validators: Iterable[Validator] = (), *, out: TextIO | None = None) -> argparse.Namespace:
    """Parse ``argv`` over the settings of the ``--config`` file, then run ``validators``.

    The file's values become the parser's defaults, so command-line options override them; options
    the parser requires may come from the file. With ``--check-config`` the effective settings are
    printed to ``out`` (stdout) as TOML and SystemExit(0) is raised. Raises EdgeError on any problem
    in the file, on any InvalidSetting from a validator and, when a file is given, on argparse's own
    errors too (without a file, those print the usage and exit 2 as usual).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    path = _config_path(parser, argv)
    settings = read_config(parser, path) if path is not None else []
    by_dest = {s.action.dest: s for s in settings}
    args, given = _parse_over(parser, argv, settings, path)
    from_file = {dest for dest in by_dest if dest not in given}
    for validate in validators:
        try:
            validate(args)
        except InvalidSetting as exc:
            setting = by_dest.get(exc.dest)
            if setting is not None and exc.dest in from_file:
                raise EdgeError(f"config {path}: key '{setting.key}': {exc.message}") from None
            raise EdgeError(f"argument {_option_for(parser, exc.dest)}: {exc.message}") from None
    if getattr(args, "check_config", False):
        print(format_settings(parser, args, source=path), file=out or sys.stdout)
        raise SystemExit(0)
    return args


def read_config(parser: argparse.ArgumentParser, path: str | Path) -> list[_Setting]:
    """The settings of the TOML file at ``path``, each checked and converted against ``parser``."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            raw = tomllib.load(f)
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
    return _Reader(parser, path).settings(raw)


def format_settings(parser: argparse.ArgumentParser, args: argparse.Namespace, source: str | Path | None = None) -> str:
    """The settings in ``args`` as a config file that reproduces them; secrets masked, unset ones commented."""
    index = _Index(parser)
    flat: list[str] = []
    tables: dict[str, list[str]] = {}
    seen: set[str] = set()
    for action in index.settable:
        if action.dest in seen or not hasattr(args, action.dest):
            continue
        seen.add(action.dest)
        name = _long_names(action)[0]
        table, key = index.output_place(name)
        value = _file_value(action, name, getattr(args, action.dest))
        if value is None:
            line = f"# {key} =   (not set)"
        elif _is_secret(name):
            line = f"{key} = {_toml(MASK)}"
        else:
            line = f"{key} = {_toml(value)}"
        (tables.setdefault(table, []) if table else flat).append(line)
    header = f"# effective settings of {parser.prog}" + (f", from {source} and the command line" if source else "")
    lines = [header, *flat]
    for table, body in tables.items():
        lines += ["", f"[{table}]", *body]
    return "\n".join(lines)


# --- validators: each skips a setting the parser lacks or that is unset ---------------------------

def _checked(dest: str, check: Callable[[Any], str | None]) -> Validator:
    def validate(args: argparse.Namespace) -> None:
        value = getattr(args, dest, None)
        if value is not None:
            problem = check(value)
            if problem:
                raise InvalidSetting(dest, problem)
    validate.__name__ = f"check_{dest}"
    return validate


def greater_than(dest: str, bound: float) -> Validator:
    return _checked(dest, lambda v: None if v > bound else f"must be greater than {bound}, received {v}")


def at_least(dest: str, bound: float) -> Validator:
    return _checked(dest, lambda v: None if v >= bound else f"must be at least {bound}, received {v}")


def between(dest: str, low: float, high: float) -> Validator:
    return _checked(dest, lambda v: None if low <= v <= high else f"must be between {low} and {high}, received {v}")


def existing_file(dest: str) -> Validator:
    def check(value: Any) -> str | None:
        path = Path(value)
        if not path.exists():
            return f"file not found: {path}"
        if not path.is_file():
            return f"not a file: {path}"
        if not os.access(path, os.R_OK):
            return f"cannot read {path}: permission denied"
        return None
    return _checked(dest, check)


def device(dest: str) -> Validator:
    return _checked(dest, lambda v: None if DEVICE_PATTERN.fullmatch(str(v)) else f"unknown device {v!r}; use {DEVICE_FORMS}")


# The checks edge-detect's settings need beyond their types.
EDGE_DETECT_VALIDATORS: tuple[Validator, ...] = (
    existing_file("model"),
    device("device"),
    between("conf", 0.0, 1.0),
    between("iou", 0.0, 1.0),
    greater_than("max_fps", 0),
    at_least("threads", 1),
    at_least("max_det", 1),
    at_least("max_frames", 1),
)


# --- reading -------------------------------------------------------------------------------------

def _canon(key: str) -> str:
    return key.replace("_", "-").lower()


def _long_names(action: argparse.Action) -> list[str]:
    return [opt[2:] for opt in action.option_strings if opt.startswith("--")]


def _is_secret(name: str) -> bool:
    # mqtt-password-file names where the secret is, which is worth showing
    return any(word in name for word in SECRET_WORDS) and not name.endswith("-file")


class _Index:
    """The parser's settable options by name, and the tables their names form."""

    def __init__(self, parser: argparse.ArgumentParser):
        self.settable = [a for a in parser._actions
                         if _long_names(a) and not isinstance(a, _NOT_SETTINGS)
                         and a.dest not in ("config", "check_config")]
        self.names: dict[str, argparse.Action] = {}
        for action in self.settable:
            for name in _long_names(action):
                self.names[name] = action
        self.refused = {name for a in parser._actions if isinstance(a, _NOT_SETTINGS) or a.dest in ("config", "check_config")
                        for name in _long_names(a)}
        self.tables = {name.split("-", 1)[0] for name in self.names if "-" in name}
        # --T written inside [T] under its metavar, e.g. [mqtt] url for --mqtt URL
        self.table_self: dict[str, str] = {}
        for table in self.tables:
            action = self.names.get(table)
            if action is not None and isinstance(action.metavar, str) and action.metavar:
                self.table_self[table] = _canon(action.metavar)

    def lookup(self, table: str | None, key: str) -> tuple[str, argparse.Action] | None:
        key = _canon(key)
        if table is None:
            action = self.names.get(key)
            return (key, action) if action else None
        name = f"{table}-{key}"
        if name in self.names:
            return name, self.names[name]
        if self.table_self.get(table) == key:
            return table, self.names[table]
        return None

    def keys_in(self, table: str | None) -> list[str]:
        if table is None:
            return sorted(self.names)
        keys = [n[len(table) + 1:] for n in self.names if n.startswith(table + "-")]
        if table in self.table_self:
            keys.append(self.table_self[table])
        return sorted(keys)

    def output_place(self, name: str) -> tuple[str | None, str]:
        """Where format_settings writes the option ``name``: tables only for ``--T`` with a metavar and siblings."""
        head, _, rest = name.partition("-")
        if head in self.table_self:
            return head, (rest if rest else self.table_self[head])
        return None, name


class _Reader:
    def __init__(self, parser: argparse.ArgumentParser, path: Path):
        self.parser = parser
        self.path = path
        self.index = _Index(parser)

    def fail(self, key: str, message: str) -> EdgeError:
        return EdgeError(f"config {self.path}: key '{key}': {message}")

    def settings(self, raw: dict[str, Any]) -> list[_Setting]:
        found: list[_Setting] = []
        for key, value in raw.items():
            if isinstance(value, dict) and (_canon(key) in self.index.tables or self.index.lookup(None, key) is None):
                found += self.table(key, value)
            else:
                found.append(self.setting(None, key, value))
        self.check_unique(found)
        return found

    def table(self, table_key: str, body: dict[str, Any]) -> list[_Setting]:
        table = _canon(table_key)
        if table not in self.index.tables:
            raise self.fail(table_key, "unknown table" + self.suggest(table, sorted(self.index.tables), None))
        found = []
        for key, value in body.items():
            if isinstance(value, dict):
                raise self.fail(f"{table_key}.{key}", "tables hold settings, not other tables")
            found.append(self.setting(table_key, key, value))
        return found

    def setting(self, table_key: str | None, key: str, value: Any) -> _Setting:
        shown = f"{table_key}.{key}" if table_key else key
        table = _canon(table_key) if table_key else None
        if table is None and _canon(key) in self.index.refused:
            raise self.fail(shown, "is not a setting; give it on the command line")
        found = self.index.lookup(table, key)
        if found is None:
            if table is not None and self.index.lookup(None, key) is not None:
                # TOML puts every key after a [table] line into that table
                raise self.fail(shown, f"unknown setting in [{table_key}]; '{key}' goes at the top, before any [table] line")
            raise self.fail(shown, "unknown setting" + self.suggest(_canon(key), self.index.keys_in(table), table_key))
        name, action = found
        return _Setting(shown, name, action, _Converter(self, shown, name, action).convert(value))

    def suggest(self, key: str, candidates: list[str], table_key: str | None) -> str:
        close = difflib.get_close_matches(key, candidates, n=3, cutoff=0.6)
        if not close:
            return f"; the settings are the long options of `{self.parser.prog} --help`"
        prefix = f"{table_key}." if table_key else ""
        return "; did you mean " + " or ".join(f"'{prefix}{c}'" for c in close) + "?"

    def check_unique(self, settings: list[_Setting]) -> None:
        by_dest: dict[str, _Setting] = {}
        for setting in settings:
            earlier = by_dest.get(setting.action.dest)
            if earlier is not None:
                raise self.fail(setting.key, f"sets --{setting.name} again (already set by '{earlier.key}')")
            by_dest[setting.action.dest] = setting
        for group in self.parser._mutually_exclusive_groups:
            members = [by_dest[a.dest] for a in group._group_actions if a.dest in by_dest]
            if len(members) > 1:
                raise self.fail(members[1].key, f"cannot be combined with '{members[0].key}'; set only one of them")


class _Converter:
    """A TOML value into what argparse would have stored for the same option on the command line."""

    def __init__(self, reader: _Reader, key: str, name: str, action: argparse.Action):
        self.reader, self.key, self.name, self.action = reader, key, name, action

    def fail(self, message: str) -> EdgeError:
        return self.reader.fail(self.key, message)

    def received(self, value: Any) -> str:
        if _is_secret(self.name):
            return f"received {_kind(value)} (value hidden)"
        return f"received {_toml_or_kind(value)}"

    def convert(self, value: Any) -> Any:
        action = self.action
        if isinstance(action, argparse.BooleanOptionalAction):
            flag = self.boolean(value)
            return not flag if self.name.startswith("no-") else flag
        if isinstance(action, argparse._StoreConstAction):  # store_true, store_false, store_const
            return action.const if self.boolean(value) else action.default
        if isinstance(action, argparse._AppendConstAction):
            raise self.fail("cannot be set in a config file; give it on the command line")
        if isinstance(action, argparse._CountAction):
            if not _is_int(value) or value < 0:
                raise self.fail(f"expected a count (an integer, 0 or more), {self.received(value)}")
            return value
        if isinstance(action.type, argparse.FileType):
            raise self.fail("names a file argparse opens; give it on the command line")
        if isinstance(action, (argparse._AppendAction, argparse._ExtendAction)):
            return self.items(value, allow_empty=True)
        nargs = action.nargs
        if nargs in (None, argparse.OPTIONAL):
            return self.scalar(value)
        if nargs in (argparse.ZERO_OR_MORE, argparse.ONE_OR_MORE) or isinstance(nargs, int):
            items = self.items(value, allow_empty=nargs == argparse.ZERO_OR_MORE)
            if isinstance(nargs, int) and len(items) != nargs:
                raise self.fail(f"expected an array of {nargs} values, received {len(items)}")
            return items
        raise self.fail("cannot be set in a config file; give it on the command line")

    def boolean(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise self.fail(f"expected true or false, {self.received(value)}")
        return value

    def items(self, value: Any, allow_empty: bool) -> list[Any]:
        if not isinstance(value, list):
            example = _toml([value]) if not _is_secret(self.name) and not isinstance(value, dict) else "[...]"
            raise self.fail(f"expected an array, {self.received(value)}; write {example}")
        if not value and not allow_empty:
            raise self.fail("expected at least one value, received an empty array")
        return [self.scalar(item) for item in value]

    def scalar(self, value: Any) -> Any:
        action, kind = self.action, self.action.type
        if kind is int:
            if not _is_int(value):
                raise self.fail(f"expected an integer, {self.received(value)}")
            converted: Any = value
        elif kind is float:
            if not (_is_int(value) or isinstance(value, float)):
                raise self.fail(f"expected a number, {self.received(value)}")
            converted = float(value)
        else:
            if not (isinstance(value, str) or _is_int(value)):
                raise self.fail(f"expected a string, {self.received(value)}")
            text = str(value)
            converted = text
            if kind is not None and kind is not str:
                try:
                    converted = kind(text)
                except (ValueError, TypeError, argparse.ArgumentTypeError) as exc:
                    detail = f": {exc}" if str(exc) and not _is_secret(self.name) else ""
                    raise self.fail(f"invalid value, {self.received(value)}{detail}") from None
        if action.choices is not None and converted not in action.choices:
            allowed = ", ".join(_toml(c) if isinstance(c, (str, int, float)) else str(c) for c in action.choices)
            raise self.fail(f"{self.received(value)}; allowed: {allowed}")
        return converted


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _kind(value: Any) -> str:
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
    return "a date or time"


def _toml_or_kind(value: Any) -> str:
    if isinstance(value, (dict,)) or not _representable(value):
        return _kind(value)
    return _toml(value)


def _representable(value: Any) -> bool:
    if isinstance(value, list):
        return all(_representable(v) for v in value)
    return isinstance(value, (bool, int, float, str, Path))


def _toml(value: Any) -> str:
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
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False).replace("\x7f", "\\u007f")


def _file_value(action: argparse.Action, name: str, value: Any) -> Any:
    """What to write in a config file for ``--name`` so that it reproduces ``value``."""
    if isinstance(action, argparse.BooleanOptionalAction):
        return None if value is None else (not value if name.startswith("no-") else bool(value))
    if isinstance(action, argparse._StoreConstAction):
        return value == action.const
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return [v if isinstance(v, (bool, int, float, str)) else str(v) for v in value]
    return value if isinstance(value, (bool, int, float, str)) else str(value)


# --- parsing over the file's values --------------------------------------------------------------

def _config_path(parser: argparse.ArgumentParser, argv: list[str]) -> str | None:
    """``--config`` from argv, read without the rest of the parser (abbreviations off: --conf is not --config)."""
    options = next((a.option_strings for a in parser._actions if a.dest == "config"), [CONFIG_OPTION])
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False, exit_on_error=False)
    pre.add_argument(*options, dest="config", default=None)
    try:
        known, _ = pre.parse_known_args(argv)
    except argparse.ArgumentError:
        return None  # e.g. --config without a value: the full parse reports it
    return known.config


def _parse_over(parser: argparse.ArgumentParser, argv: list[str], settings: list[_Setting],
                path: str | None) -> tuple[argparse.Namespace, set[str]]:
    """Parse argv with the file's values as defaults; also return the settings the file does not decide."""
    by_dest = {s.action.dest: s for s in settings}
    relaxed: list[Any] = [a for a in parser._actions if a.required and a.dest in by_dest]
    relaxed += [g for g in parser._mutually_exclusive_groups
                if g.required and any(a.dest in by_dest for a in g._group_actions)]
    defaults = {a.dest: _default_of(a) for a in parser._actions}   # before the file's values replace them
    parser.set_defaults(**{dest: s.value for dest, s in by_dest.items()})
    # Options that replace their value start as _UNSET, so a command-line value shows by replacing it;
    # accumulating ones (append, count) start from the file's value, as argparse starts from a default.
    watched = {dest for dest, s in by_dest.items() if not isinstance(s.action, _ACCUMULATING)}
    for group in parser._mutually_exclusive_groups:
        if any(a.dest in by_dest for a in group._group_actions):
            watched |= {a.dest for a in group._group_actions if not isinstance(a, _ACCUMULATING)}
    namespace = argparse.Namespace(**{dest: _UNSET for dest in watched})
    for item in relaxed:
        item.required = False
    if path is not None:
        # With a config file (under systemd, say), argparse's complaint is one line like the file's own.
        def one_line_error(message: str) -> None:
            missing = message.startswith(("the following arguments are required", "one of the arguments"))
            raise EdgeError(message + (f" (set in config {path} or on the command line)" if missing else ""))
        parser.error = one_line_error  # type: ignore[method-assign]
    try:
        args = parser.parse_args(argv, namespace=namespace)
    finally:
        for item in relaxed:
            item.required = True
        parser.__dict__.pop("error", None)
    given = {dest for dest in watched if getattr(args, dest) is not _UNSET}
    for dest in watched - given:
        setattr(args, dest, by_dest[dest].value if dest in by_dest else defaults[dest])
    # An option given on the command line replaces the file's choice among mutually exclusive ones.
    for group in parser._mutually_exclusive_groups:
        members = {a.dest for a in group._group_actions}
        if members & given:
            for dest in members & set(by_dest) - given:
                setattr(args, dest, defaults[dest])
                given.add(dest)   # no longer the file's value
    return args, given


def _default_of(action: argparse.Action) -> Any:
    # argparse runs a string default through the option's type; do the same
    default = action.default
    if isinstance(default, str) and callable(action.type):
        return action.type(default)
    return default


def _option_for(parser: argparse.ArgumentParser, dest: str) -> str:
    for action in parser._actions:
        if action.dest == dest and action.option_strings:
            return "/".join(action.option_strings)
    return dest
