"""The versions of the software that shapes the numbers (recorded with every cell, keyed into the caches)."""

from __future__ import annotations

import contextlib
import platform
from importlib.metadata import PackageNotFoundError, version


def versions() -> dict[str, str]:
    """Versions of the software that shapes the numbers."""
    out = {"python": platform.python_version()}
    for pkg in ("boxbench", "torch", "transformers", "peft", "datasets", "openai", "vllm"):
        with contextlib.suppress(PackageNotFoundError):
            out[pkg] = version(pkg)
    return out
