"""The vocabulary settings are declared in, so that one definition serves every place a setting shows.

Each component keeps its settings in a frozen dataclass of its own (``DetectSettings`` in
``edge.detect``, ``MqttSettings`` in ``edge.sinks.mqtt``, ...) and marks every field with
``setting(...)``: a default, a help line, bounds or choices. ``edge.settings`` reads those marks to
build the TOML keys, the command-line flags, the checks, ``--help``, the README's option table and
``deploy/config.example.toml``; nothing else repeats them.

A section's class attributes say where its fields live:

* ``TABLE``: the TOML table (``None``, the default: the top level of the file);
* ``FLAG_PREFIX`` (default none): put before a field's name to make its flag (``mqtt-`` +
  ``username`` is ``--mqtt-username``), unless the field's ``flag`` says otherwise;
* ``TITLE``: the heading in ``--help`` and in the generated docs;
* ``ONE_OF`` (optional): groups of fields of which exactly one must be set (``camera``/``source``);
* ``ENABLED_BY`` (optional): the field that switches the section on (``[mqtt] url``); left unset, the
  section is off (None) and setting any other of its fields is an error.

Checks raise :class:`InvalidSetting` naming the field; the settings builder turns it into one line
naming the config key or the flag the value came from.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable

from edge.errors import InvalidSetting

MISSING = dataclasses.MISSING
METADATA_KEY = "edge.setting"
__all__ = ["InvalidSetting", "Spec", "setting", "spec_of", "setting_fields", "check_value", "check_fields"]


@dataclass(frozen=True)
class Spec:
    """How one field is set, checked and documented."""

    help: str
    flag: str | None = None  # the long option without dashes; default FLAG_PREFIX + key
    key: str | None = None  # the TOML key; default the field name with dashes
    metavar: str | None = None
    low: float | None = None  # numbers: the smallest allowed value
    high: float | None = None  # numbers: the largest allowed value
    low_open: bool = False  # the value must be greater than low, not equal to it
    choices: tuple[Any, ...] | None = None
    parse: Callable[[str], Any] | None = None  # a string's own syntax (e.g. a publish mode); raise ValueError
    secret: bool = False  # never printed, never on the command line
    cli: bool = True  # False: only in the config file (secrets, tables of zones)
    example: Any = None  # shown in the example config instead of the default
    default_text: str | None = None  # how the default reads in docs when it is computed at run time
    note: str | None = None  # more words for the example config file, beyond the one-line help


def setting(default: Any = MISSING, *, default_factory: Callable[[], Any] | Any = MISSING, help: str, **spec: Any) -> Any:
    """A dataclass field carrying its :class:`Spec`."""
    made = Spec(help=help, **spec)
    return dataclasses.field(default=default, default_factory=default_factory, repr=not made.secret,
                             metadata={METADATA_KEY: made})


def spec_of(field: dataclasses.Field) -> Spec | None:
    return field.metadata.get(METADATA_KEY)


def setting_fields(section: type | object) -> list[tuple[dataclasses.Field, Spec]]:
    """The fields of a settings dataclass that are settings, in declaration order."""
    return [(f, spec_of(f)) for f in dataclasses.fields(section) if spec_of(f) is not None]


def check_value(name: str, value: Any, spec: Spec) -> None:
    """Bounds, finiteness and choices of one value (each item of a tuple); InvalidSetting when wrong."""
    items = value if isinstance(value, tuple) else (value,)
    for item in items:
        if item is None:
            continue
        if spec.choices is not None and item not in spec.choices:
            allowed = ", ".join(repr(c) if isinstance(c, str) else str(c) for c in spec.choices)
            raise InvalidSetting(name, f"received {item!r}; allowed: {allowed}")
        if isinstance(item, bool) or not isinstance(item, (int, float)):
            continue
        if isinstance(item, float) and not math.isfinite(item):
            raise InvalidSetting(name, f"must be a finite number, received {item}")
        low, high = spec.low, spec.high
        if low is not None and high is not None and not spec.low_open and not low <= item <= high:
            raise InvalidSetting(name, f"must be between {low} and {high}, received {item}")
        if low is not None and (item <= low if spec.low_open else item < low):
            relation = "greater than" if spec.low_open else "at least"
            raise InvalidSetting(name, f"must be {relation} {low}, received {item}")
        if high is not None and item > high:
            raise InvalidSetting(name, f"must be at most {high}, received {item}")


def check_fields(instance: object) -> None:
    """Every setting field of ``instance`` within its bounds and choices; call it from ``__post_init__``."""
    for field, spec in setting_fields(instance):
        check_value(field.name, getattr(instance, field.name), spec)
