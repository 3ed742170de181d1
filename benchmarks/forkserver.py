"""A warm process that a run's cells fork from: torch, transformers and datasets are imported once
per run instead of once per cell (about 8 s a cell on 2 cores, measured: torch 3.1 s, transformers
with its model-loading code 4.4 s, datasets 1.2 s).

A forked cell is still a process of its own — its peak memory, wall time and crash are its own, as
with a fresh one — and it runs the same ``cell.child_main``. Only the start differs: the runner
sends the server one request per cell over a Unix socket, with two file descriptors (the pipe the
cell's JSON events go to, and its log); the server forks, the child makes them its stdout and
stderr, takes the request's environment, and runs the cell; the server answers ``{"pid": N}``, then
``{"exit": code}`` when the child ends (negative: killed by that signal, as ``subprocess`` says).
The server dies with the runner and each child with the server (``die_with_parent``), so a killed
run leaves no process behind. The local executor keeps one server per run; each Ray worker keeps
its own for the cells it runs (``warm``). Set ``BOXBENCH_FRESH_CELLS=1`` to start every cell as a
fresh ``python`` instead.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import traceback
from pathlib import Path
from typing import IO, Any

from boxbench.benchmarks.cell import child_main
from boxbench.core.process import die_with_parent

PRELOAD = ("torch", "transformers", "transformers.modeling_utils", "datasets")  # what every cell imports
_MAX_MESSAGE = 1 << 20


class ForkServer:
    """The runner's side: start the server, fork cells from it, stop it."""

    def __init__(self, log: Path) -> None:
        self.log = log
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with open(log, "w") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "boxbench.benchmarks.forkserver", str(theirs.fileno())],
                                         pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                         preexec_fn=die_with_parent)
        theirs.close()
        self.sock = ours

    def _read(self) -> dict[str, Any]:
        msg = self.sock.recv(_MAX_MESSAGE)
        if not msg:
            raise ConnectionError(f"the fork server exited (code {self.proc.poll()})")
        return json.loads(msg)

    def start(self, cell_dir: Path, log: IO[str], env: dict[str, str]) -> "ForkedCell":
        """Fork ``cell.child_main(cell_dir)`` with ``env``; its stderr goes to ``log``."""
        r, w = os.pipe()
        try:
            socket.send_fds(self.sock, [json.dumps({"cell_dir": str(cell_dir), "env": env}).encode()], [w, log.fileno()])
        finally:
            os.close(w)
        try:
            pid = self._read()["pid"]
        except BaseException:
            os.close(r)
            raise
        return ForkedCell(self, pid, open(r, encoding="utf-8"))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        self.sock.close()  # the server reads end-of-file and exits; a running child dies with it
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def warm(server: ForkServer | None, log: Path) -> ForkServer | None:
    """``server`` while it runs and logs to ``log``, else a new one (an old one closed); None when
    ``BOXBENCH_FRESH_CELLS=1`` asks for fresh processes."""
    if os.environ.get("BOXBENCH_FRESH_CELLS") == "1":
        return None
    if server is not None and server.alive() and server.log == log:
        return server
    if server is not None:
        server.close()
    return ForkServer(log)


class ForkedCell:
    """A forked cell as the runner uses a ``subprocess.Popen``: stdout, poll, wait, kill, returncode."""

    def __init__(self, server: ForkServer, pid: int, stdout: IO[str]) -> None:
        self.server, self.pid, self.stdout = server, pid, stdout
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and select.select([self.server.sock], [], [], 0)[0]:
            self.wait()
        return self.returncode

    def wait(self) -> int:
        if self.returncode is None:
            try:
                self.returncode = int(self.server._read()["exit"])
            except ConnectionError:  # the server died, and the child with it
                self.returncode = -signal.SIGKILL
            self.stdout.close()
        return self.returncode

    def kill(self) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)


# ------------------------------------------------------------------ server side
def _child(request: dict[str, Any], fds: list[int]) -> None:
    """In the forked child: the request's stdout, stderr and environment, then the cell; never returns."""
    code = 1
    try:
        die_with_parent()
        os.dup2(fds[0], 1)
        os.dup2(fds[1], 2)
        for fd in fds:
            os.close(fd)
        os.environ.clear()
        os.environ.update(request["env"])
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C stops a cell as it stops a fresh one

        child_main(request["cell_dir"])
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else int(e.code is not None)
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def serve(fd: int) -> None:
    """Import what every cell imports, then fork one child per request until the runner hangs up;
    never returns."""
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the runner decides when to stop (it closes the socket)
    for module in PRELOAD:
        importlib.import_module(module)
    sock = socket.socket(fileno=fd)
    while True:
        msg, fds, _, _ = socket.recv_fds(sock, _MAX_MESSAGE, 2)
        if not msg:  # the runner hung up: exit at once (tearing down torch & co. takes ~1.5 s, measured)
            os._exit(0)
        pid = os.fork()
        if pid == 0:
            sock.close()
            _child(json.loads(msg), fds)
        for f in fds:
            os.close(f)
        sock.send(json.dumps({"pid": pid}).encode())
        _, status = os.waitpid(pid, 0)
        sock.send(json.dumps({"exit": os.waitstatus_to_exitcode(status)}).encode())


if __name__ == "__main__":
    serve(int(sys.argv[1]))
