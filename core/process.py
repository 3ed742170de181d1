"""Child-process hygiene shared by the fork server, the executors and the servers a run starts."""

from __future__ import annotations

import contextlib
import ctypes
import signal


def die_with_parent() -> None:
    """In a child process (``preexec_fn``): get SIGKILL when the parent dies, so no orphan is left."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
