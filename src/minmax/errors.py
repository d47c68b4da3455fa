"""The exceptions users see: a mistake in what they asked for, or a run that diverged."""


class UsageError(ValueError):
    """Bad input from the user (names, values, files).

    The CLI prints its message on one line and exits with code 2, so the message must name
    the problem and the fix.
    """


class DivergenceError(RuntimeError):
    """A run whose losses or weights went non-finite (NaN/Inf), and could not be rolled back.

    Not the user's input but the run's outcome: the CLI prints the message (step, networks,
    the last good checkpoint, what to try) and exits with code 3.
    """
