"""The user-facing error type: every bad input ends as one line naming the field and the fix."""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input: printed as one line, exit code 2, never a traceback."""
