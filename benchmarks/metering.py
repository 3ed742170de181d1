"""Per-cell metering: wall time per phase, peak host memory (sampled, children included), peak
accelerator memory (torch.cuda peak, reset per cell), and the software that produced the numbers."""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import sys
import threading
import time
from typing import Any, Iterator

import psutil

from boxbench.core.versions import versions


class Meter:
    """Samples the RSS of this process and its children in a thread; times named phases."""

    def __init__(self, interval_s: float = 0.05) -> None:
        self.interval_s = interval_s
        self.walls: dict[str, float] = {}
        self._peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._proc = psutil.Process(os.getpid())
        self._nvml: Any = None
        self._nvml_handles: list[Any] = []
        self._nvml_peak = 0
        with contextlib.suppress(Exception):  # pynvml (nvidia-ml-py) and a GPU are optional
            import pynvml

            pynvml.nvmlInit()
            self._nvml_handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
            self._nvml = pynvml

    def _rss(self) -> int:
        total = 0
        for p in [self._proc, *self._proc.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
        return total

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, self._rss())
            if self._nvml is not None:
                self._nvml_peak = max(self._nvml_peak, self._nvml_bytes())
            self._stop.wait(self.interval_s)

    def _nvml_bytes(self) -> int:
        """GPU memory NVML attributes to this process and its children (CUDA context included)."""
        pids = {self._proc.pid, *(c.pid for c in self._proc.children(recursive=True))}
        total = 0
        with contextlib.suppress(Exception):
            for handle in self._nvml_handles:
                for p in self._nvml.nvmlDeviceGetComputeRunningProcesses(handle):
                    if p.pid in pids and p.usedGpuMemory:
                        total += int(p.usedGpuMemory)
        return total

    @property
    def peak_accelerator_nvml_bytes(self) -> int | None:
        """Peak process GPU memory as NVML sees it; None without a GPU or without pynvml."""
        if self._nvml is None:
            return None
        return max(self._nvml_peak, self._nvml_bytes())

    def start(self) -> "Meter":
        reset_accelerator_peak()
        self._peak = self._rss()
        self._thread = threading.Thread(target=self._loop, name="boxbench-meter", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.walls[name] = self.walls.get(name, 0.0) + time.perf_counter() - t0

    @property
    def peak_host_rss_bytes(self) -> int:
        """The larger of the sampled peak (children included) and the kernel's exact own peak."""
        self._peak = max(self._peak, self._rss())
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
        return max(self._peak, own)


def _cuda() -> Any:
    if "torch" not in sys.modules:
        return None
    import torch

    return torch.cuda if torch.cuda.is_available() else None


def reset_accelerator_peak() -> None:
    cuda = _cuda()
    if cuda is not None:
        cuda.reset_peak_memory_stats()


def peak_accelerator_bytes() -> int | None:
    """torch.cuda's peak allocated bytes since the cell started; None without a GPU."""
    cuda = _cuda()
    return int(cuda.max_memory_allocated()) if cuda is not None else None


def device_info(device: str) -> dict[str, Any]:
    """What the cell ran on: the torch device, the CPU, and the GPU name where there is one."""
    info: dict[str, Any] = {"device": device, "cpu": platform.processor() or platform.machine(),
                            "cpu_count": os.cpu_count()}
    cuda = _cuda()
    if cuda is not None:
        info["gpu"] = cuda.get_device_name(0)
    return info


def code_version() -> dict[str, Any]:
    """Which boxbench produced the record: its git commit and whether the tree had uncommitted
    changes (from the checkout the package runs from), else the installed version only."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out: dict[str, Any] = {"version": versions().get("boxbench"), "commit": None, "dirty": None}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        git = lambda *a: subprocess.run(["git", "-C", str(root), *a], capture_output=True, text=True, timeout=10)  # noqa: E731
        head = git("rev-parse", "HEAD")
        if head.returncode == 0:
            out["commit"] = head.stdout.strip()
            out["dirty"] = bool(git("status", "--porcelain", "--untracked-files=no").stdout.strip())
    return out
