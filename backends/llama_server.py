"""Start and stop llama.cpp's OpenAI-compatible server (``llama-cpp-python[server]``) on 127.0.0.1.

Used by ``boxbench serve`` and by the tests: a real HTTP server for the ``openai`` backend, serving
an offline alias's GGUF file (or any GGUF path) on a free port.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from boxbench.backends.weights import ALIASES, alias_gguf
from boxbench.core.errors import UserError
from boxbench.core.process import die_with_parent

INSTALL = ("CMAKE_ARGS=\"-DGGML_NATIVE=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF\" "
           "pip install 'llama-cpp-python[server]'")


def missing_reason(python: str | None = None) -> str | None:
    """Why the server cannot start with ``python`` (None when it can)."""
    if python in (None, sys.executable):
        for mod in ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings"):
            if importlib.util.find_spec(mod) is None:
                return f"python module {mod} is missing; install the server with: {INSTALL}"
        return None
    probe = subprocess.run([python, "-c", "import llama_cpp.server.app"], capture_output=True, text=True)
    return None if probe.returncode == 0 else f"{python} cannot import llama_cpp.server ({probe.stderr.strip()[-200:]})"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def resolve_gguf(model: str) -> Path:
    """An alias (``smollm2-135m``) or a ``.gguf`` path, as a file the server can read."""
    if model in ALIASES:
        return alias_gguf(model)
    path = Path(model)
    if path.suffix != ".gguf" or not path.is_file():
        raise UserError(f"model {model!r}: the llama.cpp server needs an alias ({', '.join(ALIASES)}) or a .gguf file")
    return path


class LlamaServer:
    """``with LlamaServer("smollm2-135m") as srv: srv.base_url`` — a running server, stopped on exit."""

    def __init__(self, model: str, port: int | None = None, *, n_ctx: int = 2048, python: str | None = None,
                 log: Path | None = None, ready_timeout_s: float = 120.0, extra_args: list[str] | None = None) -> None:
        self.gguf = resolve_gguf(model)
        self.port = port or free_port()
        self.n_ctx = n_ctx
        self.python = python or os.environ.get("BOXBENCH_LLAMA_PYTHON") or sys.executable
        self.log = log
        self.ready_timeout_s = ready_timeout_s
        self.extra_args = extra_args or []
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self) -> list[str]:
        # --logits_all: the server computes logits at every prompt position (echo + logprobs)
        return [self.python, "-m", "llama_cpp.server", "--model", str(self.gguf), "--host", "127.0.0.1",
                "--port", str(self.port), "--n_ctx", str(self.n_ctx), "--logits_all", "true", *self.extra_args]

    def start(self) -> "LlamaServer":
        reason = missing_reason(self.python)
        if reason:
            raise UserError(f"cannot start the llama.cpp server: {reason}")
        out: Any = open(self.log, "ab") if self.log else subprocess.DEVNULL
        self.proc = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT,
                                     preexec_fn=die_with_parent)
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                where = f"; see {self.log}" if self.log else ""
                raise UserError(f"the llama.cpp server exited with code {self.proc.returncode} while starting{where}")
            if self.ready():
                return self
            time.sleep(0.3)
        self.stop()
        raise UserError(f"the llama.cpp server did not answer on {self.base_url} within {self.ready_timeout_s:.0f} s")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> "LlamaServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
