"""Where a suite's cells run: one after another here (``local``, the default) or spread over a Ray
cluster (``ray``). Either way a cell is the same per-cell child process (``run_cell_process``, below),
so its peak memory and wall time stay its own, and the driver (``runner.run_suite``) stays the only
writer of ``results.jsonl``: an executor only starts cells and hands back their records as they finish.

Ray: each cell is one Ray task that starts the cell's process on whichever node Ray picks, with the
cell's resources (``resources`` in the suite: suite-wide, per model, per method; defaults from the
model's size and the device, ``default_resources``); the process is forked from that worker's own
fork server (the first cell a worker runs starts it; it stays for the worker's life, 442 MiB
resident with its imports, measured). Several nodes share nothing through boxbench:
the run folder (``--out``: artifacts, predictions, logs; a transfer cell reads its source's
artifact there) must be on a filesystem every node mounts at the same path, and every node needs
the same Python environment, data and model weights. A worker that cannot reach the run folder fails
its cell in one line naming the path.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable

from boxbench.backends.weights import ALIASES
from boxbench.benchmarks.cell import error_record, now
from boxbench.benchmarks.forkserver import ForkServer, warm
from boxbench.benchmarks.suite import Cell
from boxbench.core.errors import UserError
from boxbench.core.process import die_with_parent
from boxbench.core.registry import Registry, load_plugin_file


def _follow(proc: Any, quiet: bool) -> tuple[dict[str, Any] | None, str]:
    """Read a cell process's events until it closes its output: (its record, None if it sent none;
    the phase it was last in), showing its progress bar unless ``quiet``."""
    from tqdm import tqdm

    record: dict[str, Any] | None = None
    bar = None
    phase = "start"
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                msg = json.loads(line)
            except json.JSONDecodeError:
                continue
            if msg.get("event") in ("phase", "progress"):
                phase = msg["phase"]
            if msg.get("event") == "progress" and not quiet:
                if bar is None or bar.desc != msg["phase"]:
                    if bar is not None:
                        bar.close()
                    bar = tqdm(total=msg["total"], desc=msg["phase"], unit="ex", position=1, leave=False, dynamic_ncols=True)
                bar.update(msg["n"])
            elif msg.get("event") == "result":
                record = msg["record"]
    finally:
        if bar is not None:
            bar.close()
    return record, phase


class PeakWatch:
    """The peak resident memory of a running process (its ``VmHWM``), read every ``every`` seconds,
    so that a cell the kernel kills (out of memory, SIGKILL) is recorded with the last peak seen."""

    def __init__(self, pid: int, every: float = 0.5) -> None:
        self.pid, self.peak = pid, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every,), daemon=True)
        self._thread.start()

    def _run(self, every: float) -> None:
        while not self._stop.wait(every):
            try:
                with open(f"/proc/{self.pid}/status") as f:
                    kb = next((int(x.split()[1]) for x in f if x.startswith("VmHWM:")), 0)
            except (OSError, ValueError):
                return  # gone, or no /proc (not Linux)
            self.peak = max(self.peak, kb * 1024)

    def stop(self) -> None:
        self._stop.set()

    def text(self) -> str:
        return f"; its last peak RSS {self.peak / 1024**3:.2f} GiB" if self.peak else ""


def run_cell_process(cell: Cell, run_dir: Path, plugins: list[str], quiet: bool = False,
                     server: "ForkServer | None" = None) -> dict[str, Any]:
    """Run one cell in a child process — forked from ``server`` (warm imports, see ``forkserver``)
    or, without one, a fresh ``python`` — and always return a record (an error one if it died)."""
    cell_dir = run_dir / "cells" / cell.cell_id
    cell_dir.mkdir(parents=True, exist_ok=True)
    (cell_dir / "cell.json").write_text(json.dumps({"cell": cell.to_json(), "plugins": plugins}, indent=2))
    started = now()
    timeout = cell.settings.cell_timeout_s
    log = open(cell_dir / "log.txt", "w")
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
    proc: Any
    if server is not None:
        try:
            proc = server.start(cell_dir, log, env)
        except OSError as e:  # ConnectionError included: the server is gone; a retry starts another
            log.close()
            return {**error_record(cell, f"the fork server is gone ({e}); see {server.log}", started),
                    "retryable": True}
    else:
        proc = subprocess.Popen([sys.executable, "-m", "boxbench.benchmarks.cell", str(cell_dir)],
                                stdout=subprocess.PIPE, stderr=log, text=True, env=env, preexec_fn=die_with_parent)
    fired = threading.Event()

    def on_timeout() -> None:
        fired.set()
        proc.kill()

    watch = PeakWatch(proc.pid)
    timer = threading.Timer(float(timeout), on_timeout) if timeout else None  # fires whatever the child is doing
    if timer is not None:
        timer.daemon = True
        timer.start()
    try:
        record, phase = _follow(proc, quiet)
        proc.wait()
    finally:  # Ctrl-C or SIGTERM included: the cell stops here; the driver drops its record-less folder
        watch.stop()
        if timer is not None:
            timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    if record is not None:
        return {**record, "cell_process": "forked" if server is not None else "fresh"}
    if fired.is_set():
        return {**error_record(cell, f"timed out after {timeout} s while in phase {phase!r} (settings.cell_timeout_s)", started),
                "timed_out_phase": phase}
    code = proc.returncode
    why = f"killed by signal {-code} ({signal.Signals(-code).name})" if code < 0 else f"exited with code {code}"
    hint = " (out of memory?)" if code in (-9, 137) else ""
    return {**error_record(cell, f"cell process {why}{hint}{watch.text()}; see {cell_dir / 'log.txt'}", started), "retryable": True,
            **({"last_peak_rss_bytes": watch.peak} if watch.peak else {})}



class Executor(ABC):
    """Starts cells and returns their records as they finish (any order)."""

    name = "executor"

    def __init__(self, run_dir: Path, plugins: list[str], quiet: bool) -> None:
        self.run_dir, self.plugins, self.quiet = run_dir, plugins, quiet
        # the driver's check just before a cell starts (a dead server after a failed cell): a reason ends the cell
        self.precheck: Callable[[Cell], str | None] = lambda cell: None

    def start(self) -> str | None:
        """Connect or start; a line for the user (e.g. the dashboard address), or None."""
        return None

    @abstractmethod
    def submit(self, cell: Cell) -> None:
        """Start ``cell`` (or queue it until resources allow)."""

    @abstractmethod
    def next_done(self) -> tuple[Cell, dict[str, Any]]:
        """Block until a submitted cell finishes; its record (an error record if it died)."""

    @abstractmethod
    def busy(self) -> int:
        """Cells submitted and not yet returned by ``next_done``."""

    def cancel(self) -> None:
        """Stop every running cell (Ctrl-C): finished ones are already recorded."""

    def close(self) -> None:
        """Release what ``start`` took."""


class LocalExecutor(Executor):
    """One cell after another, in submission order, on this machine; each cell forked from a warm
    fork server (``forkserver``), or a fresh process each with ``BOXBENCH_FRESH_CELLS=1``."""

    name = "local"

    def __init__(self, run_dir: Path, plugins: list[str], quiet: bool, **_: Any) -> None:
        super().__init__(run_dir, plugins, quiet)
        self.queue: list[Cell] = []
        self.server: Any = None

    def start(self) -> str | None:
        self._server()  # its imports overlap whatever the driver does before the first cell
        return None

    def _server(self) -> Any:
        """The fork server, (re)started when it is not running; None when cells start fresh."""
        self.server = warm(self.server, self.run_dir / "forkserver.log")
        return self.server

    def submit(self, cell: Cell) -> None:
        self.queue.append(cell)

    def next_done(self) -> tuple[Cell, dict[str, Any]]:
        cell = self.queue.pop(0)
        reason = self.precheck(cell)
        if reason:
            return cell, error_record(cell, reason, now())
        return cell, run_cell_process(cell, self.run_dir, self.plugins, self.quiet, self._server())

    def busy(self) -> int:
        return len(self.queue)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None


def model_parameters(cell: Cell) -> float | None:
    """Parameter count read off the model's name (``135M``, ``1.5B``, ``13b``); None if it does not say."""
    name = ALIASES[cell.model.model].repo if cell.model.model in ALIASES else cell.model.model
    m = re.search(r"(\d+(?:\.\d+)?)\s*([MB])(?![a-z])", name, flags=re.I)
    return float(m.group(1)) * (1e6 if m.group(2).upper() == "M" else 1e9) if m else None


def default_resources(cell: Cell, cluster_gpus: float) -> dict[str, Any]:
    """What a cell asks of Ray unless the suite says otherwise:

    * ``num_cpus`` 1 (Ray then sets the cell's thread count to 1: cells share the cores);
    * ``num_gpus`` 1 for an in-process model (not an API) when the cluster has GPUs and the suite's
      device is not ``cpu``; else 0;
    * ``memory`` from the model's size where its name gives it: parameters × bytes per parameter
      (2 on a GPU, 4 on a CPU in fp32) × 4 for white-access cells (weights, gradients, optimizer
      state) or × 1.5 otherwise, plus 1 GiB; host memory on a CPU cell, none reserved on a GPU cell
      (the GPU holds the model). No reservation when the size is unknown.
    """
    in_process = cell.model.backend in ("hf", "vllm")
    gpu = in_process and cluster_gpus > 0 and cell.settings.device != "cpu"
    out: dict[str, Any] = {"num_cpus": 1, "num_gpus": 1 if gpu else 0}
    n = model_parameters(cell) if in_process else None
    if n is not None and not gpu:
        factor = 4 if cell.access.name == "white" else 1.5
        out["memory"] = int(n * 4 * factor + 2**30)
    return out


FORWARDED = ("BOXBENCH_", "HF_", "TRANSFORMERS_", "OPENAI_")


def forwarded_env() -> dict[str, str]:
    """The driver's variables every cell needs wherever it runs (data folder, cache, hub mode, API
    base URL and key: names starting with ``FORWARDED``); Ray's workers do not inherit the driver's
    environment. They travel in the job's runtime_env (a key there is visible to whoever can read
    the cluster's job metadata)."""
    env = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED)}
    return {**env, "TOKENIZERS_PARALLELISM": "false"}


_WORKER_SERVER: Any = None  # in a Ray worker: the fork server its cells start from (kept between its tasks)


def _ray_cell(cell_json: dict[str, Any], run_dir: str, plugins: list[str]) -> dict[str, Any]:
    """The Ray task: the cell's process on this node (a worker's own function: imported there),
    forked from the worker's own fork server (started by its first cell, gone with the worker)."""
    import socket

    global _WORKER_SERVER

    for plugin in plugins:  # before the cell is read: a plugin method's params are its own class
        load_plugin_file(plugin)
    cell = Cell.from_json(cell_json)
    folder = Path(run_dir)
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        return error_record(cell, f"run folder {run_dir} is not reachable from node {socket.gethostname()}; put --out on a "
                                   f"filesystem every node mounts at the same path", now())
    _WORKER_SERVER = warm(_WORKER_SERVER, folder / f"forkserver-{socket.gethostname()}-{os.getpid()}.log")
    record = run_cell_process(cell, folder, plugins, quiet=True, server=_WORKER_SERVER)
    return {**record, "ray_resources": _assigned()}


def _assigned() -> dict[str, float]:
    """What Ray reserved for the running task (CPU, GPU, memory in bytes), as the record keeps it."""
    import ray

    return {k: v for k, v in ray.get_runtime_context().get_assigned_resources().items() if v}


class RayExecutor(Executor):
    """Cells as Ray tasks, as many at a time as the cluster's resources allow."""

    name = "ray"

    def __init__(self, run_dir: Path, plugins: list[str], quiet: bool, address: str | None = None) -> None:
        super().__init__(run_dir, plugins, quiet)
        self.address = address
        self.running: dict[Any, Cell] = {}
        self.refused: list[tuple[Cell, dict[str, Any]]] = []  # cells the cluster can never hold
        self.cluster: dict[str, float] = {}
        self.gpus = 0.0

    def start(self) -> str | None:
        try:
            import ray
        except ImportError:
            raise UserError("--executor ray needs Ray; pip install -e '.[ray]'") from None
        self._reachable()
        ours = signal.getsignal(signal.SIGTERM)  # ray.init puts its own in: it exits without the run's cleanup
        try:
            ctx = ray.init(address=self.address, include_dashboard=None, log_to_driver=False, ignore_reinit_error=True,
                           logging_level=logging.WARNING,  # its "Connecting to ..." lines are not the CLI's
                           runtime_env={"env_vars": forwarded_env()})
        except (ConnectionError, RuntimeError, ValueError) as e:
            first = (str(e).strip().splitlines() or [""])[0][:200]
            raise UserError(f"--address {self.address or '(local)'}: cannot connect to a Ray cluster ({first})") from None
        finally:
            if ours is not None:
                signal.signal(signal.SIGTERM, ours)  # SIGTERM stays Ctrl-C: the cells cancelled, partial folders dropped
        self.task = ray.remote(max_retries=0)(_ray_cell)  # retries are the driver's (settings.max_retries)
        cluster = self.cluster = dict(ray.cluster_resources())
        self.gpus = float(cluster.get("GPU", 0))
        dash = getattr(ctx, "dashboard_url", None)
        where = f"Ray cluster: {cluster.get('CPU', 0):g} CPUs, {self.gpus:g} GPUs"
        return where + (f"; dashboard http://{dash}" if dash else "")

    def _reachable(self) -> None:
        """HOST:PORT and ray://HOST:PORT must answer a TCP connect within 5 s (Ray itself retries for minutes)."""
        import socket

        if not self.address or self.address == "auto":
            return
        host, _, port = self.address.removeprefix("ray://").rpartition(":")
        try:
            socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
        except (OSError, ValueError):
            raise UserError(f"--address {self.address}: no Ray cluster answers there; start one with `ray start --head` "
                            f"or give auto / HOST:PORT / ray://HOST:PORT of a running one") from None

    def options_for(self, cell: Cell) -> dict[str, Any]:
        """The task's resources: the defaults (``default_resources``) overridden by the suite's
        (``resources``: suite-wide, per model, per method, as the cell carries them)."""
        return {**default_resources(cell, self.gpus), **cell.resources}

    def too_big(self, options: dict[str, Any]) -> str | None:
        """Why no node of this cluster can ever hold a task with ``options`` (Ray would keep it
        pending: an infeasible task waits for a node that never joins), or None."""
        for key, name in (("num_cpus", "CPU"), ("num_gpus", "GPU"), ("memory", "memory")):
            want, have = float(options.get(key) or 0), float(self.cluster.get(name, 0))
            if want > have:
                return f"asks Ray for {key} {want:g} but the cluster has {have:g} {name} in all"
        return None

    def submit(self, cell: Cell) -> None:
        options = self.options_for(cell)
        why = self.too_big(options)
        if why is not None:
            self.refused.append((cell, error_record(cell, f"the cell {why}; lower resources in the suite or add nodes", now())))
            return
        ref = self.task.options(**options).remote(cell.to_json(), str(self.run_dir.resolve()), self.plugins)
        self.running[ref] = cell

    def next_done(self) -> tuple[Cell, dict[str, Any]]:
        import ray

        if self.refused:
            return self.refused.pop(0)
        done, _ = ray.wait(list(self.running), num_returns=1)
        cell = self.running.pop(done[0])
        try:
            return cell, ray.get(done[0])
        except ray.exceptions.RayError as e:  # the worker (or its node) died: the cell's process with it
            first = (str(e).strip().splitlines() or [""])[0][:200]
            return cell, {**error_record(cell, f"Ray worker died while running the cell ({type(e).__name__}: {first})", now()),
                          "retryable": True}

    def busy(self) -> int:
        return len(self.running) + len(self.refused)

    def cancel(self) -> None:
        import ray

        for ref in list(self.running):
            ray.cancel(ref, force=True)
        self.running.clear()

    def close(self) -> None:
        import ray

        ray.shutdown()  # a cluster this driver started stops; one it joined (--address) only loses this driver


EXECUTORS: Registry[type[Executor]] = Registry("executor", {"local": f"{__name__}:LocalExecutor", "ray": f"{__name__}:RayExecutor"},
                                               base=Executor)
