"""Start and stop an OpenAI-compatible server on 127.0.0.1: llama.cpp's (``llama-cpp-python[server]``)
or vLLM's (``vllm serve``, from the vLLM environment). Used by ``boxbench serve [--engine vllm]`` and
by the tests: a real HTTP server for the ``openai`` backend, serving an offline alias (or a GGUF file)
on a free port.
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
from typing import Any, Callable

from boxbench.backends.vllm import local_model
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


class Server:
    """A server process: ``with LlamaServer("smollm2-135m") as srv: srv.base_url`` — running, stopped on
    exit. A subclass gives its ``command``, what it ``serves`` and why it cannot start (``missing``)."""

    engine = "server"

    def __init__(self, port: int | None, *, n_ctx: int, python: str, log: Path | None, ready_timeout_s: float,
                 extra_args: list[str] | None) -> None:
        self.port = port or free_port()
        self.n_ctx = n_ctx
        self.python = python
        self.log = log
        self.ready_timeout_s = ready_timeout_s
        self.extra_args = extra_args or []
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def missing(self) -> str | None:
        return None

    @property
    def serves(self) -> str:
        return "?"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> "Server":
        reason = self.missing()
        if reason:
            raise UserError(f"cannot start the {self.engine} server: {reason}")
        out: Any = open(self.log, "ab") if self.log else subprocess.DEVNULL
        self.proc = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT, env=self.env(),
                                     preexec_fn=die_with_parent)
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                where = f"; see {self.log}" if self.log else ""
                raise UserError(f"the {self.engine} server exited with code {self.proc.returncode} while starting{where}")
            if self.ready():
                return self
            time.sleep(0.3)
        self.stop()
        raise UserError(f"the {self.engine} server did not answer on {self.base_url} within {self.ready_timeout_s:.0f} s")

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

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class LlamaServer(Server):
    """llama.cpp's server (``llama-cpp-python[server]``) on a GGUF file."""

    engine = "llama.cpp"

    def __init__(self, model: str, port: int | None = None, *, n_ctx: int = 2048, python: str | None = None,
                 log: Path | None = None, ready_timeout_s: float = 120.0, extra_args: list[str] | None = None) -> None:
        self.gguf = resolve_gguf(model)
        super().__init__(port, n_ctx=n_ctx, python=python or os.environ.get("BOXBENCH_LLAMA_PYTHON") or sys.executable,
                         log=log, ready_timeout_s=ready_timeout_s, extra_args=extra_args)

    @property
    def serves(self) -> str:
        return self.gguf.name

    def missing(self) -> str | None:
        return missing_reason(self.python)

    def command(self) -> list[str]:
        # --logits_all: the server computes logits at every prompt position (echo + logprobs)
        return [self.python, "-m", "llama_cpp.server", "--model", str(self.gguf), "--host", "127.0.0.1",
                "--port", str(self.port), "--n_ctx", str(self.n_ctx), "--logits_all", "true", *self.extra_args]


VLLM_PYTHON = Path(__file__).resolve().parents[1] / ".venv-vllm" / "bin" / "python"


class VLLMServer(Server):
    """``vllm serve`` from the vLLM environment (``BOXBENCH_VLLM_PYTHON``, else this checkout's
    ``.venv-vllm``, else this Python if it has vLLM), on the folder the vllm backend loads for
    ``model``, served under the model's own name; float32 and ``kv_cache_gib`` of KV cache on the CPU."""

    engine = "vLLM"

    def __init__(self, model: str, port: int | None = None, *, n_ctx: int = 2048, python: str | None = None,
                 log: Path | None = None, ready_timeout_s: float = 900.0, extra_args: list[str] | None = None,
                 kv_cache_gib: float = 2) -> None:
        self.model = model
        self.folder = local_model(model)
        self.kv_cache_gib = kv_cache_gib
        default = str(VLLM_PYTHON) if VLLM_PYTHON.exists() else sys.executable
        super().__init__(port, n_ctx=n_ctx, python=python or os.environ.get("BOXBENCH_VLLM_PYTHON") or default,
                         log=log, ready_timeout_s=ready_timeout_s, extra_args=extra_args)

    @property
    def serves(self) -> str:
        return f"{self.model} ({self.folder})"

    def missing(self) -> str | None:
        probe = subprocess.run([self.python, "-c", "import vllm.entrypoints.openai.api_server"], capture_output=True, text=True)
        return None if probe.returncode == 0 else (f"{self.python} cannot import vllm; make the vLLM environment with "
                                                   f"`bash .ci/vllm_env.sh` (README: vLLM)")

    def env(self) -> dict[str, str]:
        return {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", f"{self.kv_cache_gib:g}"),
                "VLLM_LOGGING_LEVEL": os.environ.get("VLLM_LOGGING_LEVEL", "WARNING")}

    def command(self) -> list[str]:
        # float32: as the hf backend on the CPU (vLLM picks CUDA itself where it has one: pass --dtype in extra_args there)
        return [self.python, "-m", "vllm.entrypoints.openai.api_server", "--model", self.folder, "--served-model-name", self.model,
                "--host", "127.0.0.1", "--port", str(self.port), "--dtype", "float32", "--max-model-len", str(self.n_ctx),
                "--max-logprobs", "100", *self.extra_args]  # 100: as many as llama.cpp's server lists (vLLM's default is 20)


ENGINES: dict[str, Callable[..., Server]] = {"llama.cpp": LlamaServer, "vllm": VLLMServer}  # boxbench serve --engine
