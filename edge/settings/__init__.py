"""One typed settings model for every command: component sections, read from defaults, the TOML
file and the command line, in that order of precedence.

Each component declares its settings as a dataclass with ``edge.fields.setting`` marks, next to
the code that uses them; ``schema`` lists which sections a command has. From those marks alone
come the TOML keys (``toml_file``), the flags (``parser``), the checks and their one-line errors
(``build``), ``--check-config``'s output, the README's option table and the example config file
(``docs``). A new setting is one field in its component's section; a new section is one line in
``schema``.
"""

from edge.settings.build import MASK, Settings, build_settings, format_settings, help_text
from edge.settings.schema import DETECT_SECTIONS

__all__ = ["MASK", "Settings", "build_settings", "format_settings", "help_text", "DETECT_SECTIONS"]
