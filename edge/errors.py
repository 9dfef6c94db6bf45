"""The one exception type the device runtime shows to a user."""


class EdgeError(Exception):
    """A problem the user can fix: the message is one line naming the problem and the fix.

    Entry points print it as-is (no traceback); anything else escaping is a bug.
    """
