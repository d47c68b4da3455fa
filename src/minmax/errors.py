"""The one exception type users see: a mistake in what they asked for, not a bug."""


class UsageError(ValueError):
    """Bad input from the user (names, values, files).

    The CLI prints its message on one line and exits with code 2, so the message must name
    the problem and the fix.
    """
