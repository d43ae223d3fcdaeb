"""Errors a user can cause and fix.

Everything raised as :class:`UsageError` is printed by the CLI as one line and exits with code 2:
a missing file, a bad argument, an unknown name. Anything else is a bug in radbench and keeps its
traceback, so the two never get confused.
"""


class UsageError(Exception):
    """A mistake in the user's input: printed as one line, exit code 2."""


class SampleError(Exception):
    """A failure confined to one sample (unreadable image, empty input).

    The runner records it in that sample's prediction record and counts it in ``results.json``
    instead of stopping the run or silently dropping the sample.
    """
