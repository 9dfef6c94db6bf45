"""The command line, generated from the entries: one long option per setting, grouped by section.

argparse only splits the arguments; every value is converted and checked by ``values``, exactly
as a value from the file. No abbreviations (``--conf`` is never ``--config``), and nothing a user
typed is echoed in an error: an unknown ``--mqtt-pass=SECRET`` is named without its value.
"""

from __future__ import annotations

import argparse
from typing import Any, Sequence

from edge.errors import EdgeError
from edge.settings.entries import Entry
from edge.settings.values import BadValue, from_text

CONFIG_FLAG = "--config"
CHECK_FLAG = "--check-config"


class _Refused(argparse.Action):
    """A secret's flag: declared so it is refused by name, and never abbreviates another option."""

    def __call__(self, parser, namespace, values, option_string=None):
        raise EdgeError(f"{option_string} is not accepted on the command line (it would show in ps and shell history); "
                        f"{self.fix}")


class _OneLineParser(argparse.ArgumentParser):
    """argparse's own complaints (a missing value, say) as one EdgeError line, like every other error."""

    def error(self, message: str):
        raise EdgeError(f"{message} (see {self.prog} --help)")


def default_text(entry: Entry) -> str | None:
    if entry.spec.default_text is not None:
        return entry.spec.default_text
    if entry.required or entry.default is None or entry.default is False or entry.default == ():
        return None
    value = entry.default
    return " ".join(map(str, value)) if isinstance(value, tuple) else f"{value:g}" if isinstance(value, float) else str(value)


def make_parser(prog: str, description: str, entries: list[Entry], with_config: bool) -> argparse.ArgumentParser:
    parser = _OneLineParser(prog=prog, description=description, allow_abbrev=False)
    groups: dict[str, Any] = {}
    for entry in entries:
        title = getattr(entry.owner, "TITLE", entry.section)
        group = groups.get(title) or groups.setdefault(title, parser.add_argument_group(title))
        if entry.flag is None:
            if entry.spec.secret:
                where = f"[{entry.table}] {entry.key}" if entry.table else entry.key
                refused = group.add_argument(f"--{getattr(entry.owner, 'FLAG_PREFIX', '')}{entry.key}", action=_Refused,
                                             nargs="?", help=argparse.SUPPRESS, default=argparse.SUPPRESS)
                refused.fix = f"use {where} in the --config file instead"
            continue
        shown_default = default_text(entry)
        help_text = entry.spec.help + (f" (default: {shown_default})" if shown_default else "")
        options: dict[str, Any] = {"dest": entry_dest(entry), "default": argparse.SUPPRESS, "help": help_text}
        if entry.kind.base is bool:
            options["action"] = argparse.BooleanOptionalAction if entry.default is True else "store_true"
        else:
            options["metavar"] = entry.spec.metavar or entry.key.upper().replace("-", "_")
            if entry.kind.is_list:
                options["nargs"] = "+"
        group.add_argument(f"--{entry.flag}", **options)
    if with_config:
        group = parser.add_argument_group("settings file")
        group.add_argument(CONFIG_FLAG, metavar="PATH", default=None,
                           help="read settings from this TOML file; options given on the command line override it")
        group.add_argument(CHECK_FLAG, action="store_true",
                           help="build and check every setting as a run would, print them as TOML (secrets masked) and exit")
    return parser


def entry_dest(entry: Entry) -> str:
    return f"{entry.section}.{entry.name}"


def parse_command_line(parser: argparse.ArgumentParser, entries: list[Entry], argv: Sequence[str]
                       ) -> tuple[dict[Entry, Any], argparse.Namespace]:
    """{entry: converted value} for every option given, and the namespace (for --config, --check-config)."""
    namespace, extras = parser.parse_known_args(list(argv))
    if extras:
        raise EdgeError(unrecognized(extras, parser.prog))
    given = vars(namespace)
    values: dict[Entry, Any] = {}
    for entry in entries:
        dest = entry_dest(entry)
        if dest not in given:
            continue
        try:
            values[entry] = from_text(given[dest], entry.kind, entry.spec)
        except BadValue as exc:
            raise EdgeError(f"argument {entry.option}: {exc.message}") from None
    return values, namespace


def unrecognized(extras: list[str], prog: str) -> str:
    """Names the unknown options without their values: a mistyped password option must not echo it."""
    options = [item.split("=", 1)[0] for item in extras if item.startswith("-")]
    others = len(extras) - len(options)
    said = f"unrecognized option{'s' if len(options) > 1 else ''} {' '.join(options)}" if options else "unexpected arguments"
    hidden = f" ({others} value{'s' if others > 1 else ''} not shown)" if others else ""
    return f"{said}{hidden} (see {prog} --help)"

