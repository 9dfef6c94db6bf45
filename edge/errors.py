"""The exception types the device runtime shows to a user."""


class EdgeError(Exception):
    """A problem the user can fix: the message is one line naming the problem and the fix.

    Entry points print it as-is (no traceback); anything else escaping is a bug.
    """


class InvalidSetting(EdgeError):
    """A setting's value is wrong: ``field`` is the settings dataclass field, ``message`` what is wrong.

    The settings builder (``edge.settings``) re-raises it as one line naming the config key or the
    command-line flag the value came from; built directly, it reads ``field: message``.
    """

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
