"""The user-facing error type: every bad input ends as one line naming the field and the fix."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path


class UserError(Exception):
    """A problem with the user's input: printed as one line, exit code 2, never a traceback."""


def disk_full(e: BaseException) -> bool:
    """A full disk: ENOSPC, or a library's wrapping of it (safetensors' Rust writer raises its own error
    whose text says "No space left on device")."""
    return (isinstance(e, OSError) and e.errno == errno.ENOSPC) or "No space left on device" in str(e)


def no_space(e: BaseException, what: str, path: "str | os.PathLike[str] | None" = None) -> UserError:
    """A full disk as one line: the folder, what was being written there and the space left."""
    where = Path(path or getattr(e, "filename", None) or ".")
    folder = where if where.is_dir() else where.parent
    try:
        n = shutil.disk_usage(folder).free
        free = f"{n / 1024**2:,.1f} MiB free" if n >= 1024**2 else f"{n / 1024:,.0f} KiB free"
    except OSError:
        free = "free space unknown"
    return UserError(f"no space left on device in {folder} while writing {what} ({free}); free some space there "
                     f"and re-run the same command to resume")
