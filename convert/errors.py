"""The one error type the workstation tools show to a user."""


class ConvertError(Exception):
    """A problem with the user's input: the message names it and the fix, in one line."""
