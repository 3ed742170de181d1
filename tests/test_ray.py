"""``--executor ray`` on a real Ray cluster started on 127.0.0.1 (no mocks): the same cells and
predictions as the local executor, a killed cell process retried and recorded once, a killed driver
resumed by the same command with every cell once. Ray is an extra (``pip install -e '.[ray]'``):
skipped where it is not installed, a failure under CI=true (CI installs it)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from helpers import SUITES, records_of, run_cli, write_method_plugin, write_suite


def _ray_or_skip() -> str:
    exe = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")
    try:
        import ray  # noqa: F401
    except ImportError:
        exe = None
    if exe is None:
        if os.environ.get("CI") == "true":
            pytest.fail("Ray required under CI: pip install -e '.[ray]'")
        pytest.skip("Ray not installed: pip install -e '.[ray]'")
    return exe


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A one-node Ray cluster on 127.0.0.1 with 2 CPUs: two cells at a time."""
    exe = _ray_or_skip()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    temp = tempfile.mkdtemp(prefix="bb-ray-", dir="/tmp")  # short: Ray's unix socket paths must stay under 108 bytes
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    subprocess.run([exe, "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=2", "--num-gpus=0",
                    "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"],
                   check=True, capture_output=True, env=env, timeout=120)
    yield {"address": f"127.0.0.1:{port}", "env": env}
    subprocess.run([exe, "stop", "--force"], capture_output=True, env=env, timeout=120)
    shutil.rmtree(temp, ignore_errors=True)


def _preds(run: Path) -> dict[str, list[dict]]:
    out = {}
    for rec in records_of(run):
        rows = [json.loads(x) for x in (run / "cells" / rec["cell_id"] / "predictions.jsonl").read_text().splitlines()]
        out[rec["cell_key"]] = rows
    return out


def test_same_cells_and_predictions_as_the_local_executor(cluster, smoke_run, tmp_path):
    local, a = smoke_run  # the smoke suite run by the local executor (both datasets)
    ray_run = tmp_path / "ray"
    only = ["--only", "dataset=sst2"]
    b = run_cli("run", str(SUITES / "smoke.yaml"), "--out", str(ray_run), "--executor", "ray", "--address", cluster["address"],
                *only, env=cluster["env"])
    assert a.returncode == 0 and b.returncode == 0, b.stderr[-2000:]
    assert "Ray cluster: 2 CPUs" in b.stdout
    assert sum(line.startswith("ok    ") for line in b.stdout.splitlines()) == 2  # a line per finished cell
    pa, pb = _preds(local), _preds(ray_run)
    assert set(pb) <= set(pa) and len(pb) == 2  # the same cells (same keys)
    for key in pb:
        assert [r["pred"] for r in pa[key]] == [r["pred"] for r in pb[key]]
        for ra, rb in zip(pa[key], pb[key]):
            assert ra["prompt_sha256"] == rb["prompt_sha256"]
            assert ra.get("scores", [0]) == pytest.approx(rb.get("scores", [0]), abs=1e-4)  # 1 vs 2 threads
    assert all(r["attempts"] == 1 and r["status"] == "ok" and r["cell_process"] == "forked" for r in records_of(ray_run))
    # a run begun with one executor resumes with the other: nothing left to do
    shutil.copytree(local, tmp_path / "local")
    again = run_cli("run", str(SUITES / "smoke.yaml"), "--out", str(tmp_path / "local"), "--executor", "ray",
                    "--address", cluster["address"], "--quiet", *only, env=cluster["env"])
    assert again.returncode == 0 and "2 already done" in again.stdout


def test_a_killed_cell_process_is_retried_and_recorded_once(cluster, tmp_path):
    plugin = write_method_plugin(tmp_path / "slow_once.py", "slow_once", """\
        marker = Path(os.environ["BOXBENCH_TEST_MARKER"])
        if not marker.exists():  # sleeps in its first attempt (to be killed there), returns at once in the next
            marker.write_text(str(os.getpid()))
            time.sleep(300)""", "import os, time\nfrom pathlib import Path")
    marker = tmp_path / "first_attempt_pid"
    suite = write_suite(tmp_path / "s.yaml", "models: [smollm2-135m]\ndatasets: [sst2]\nmethods: [slow_once]\nlimits: {test: 2}\n")
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "boxbench.benchmarks.cli", "--plugin", str(plugin), "run", str(suite), "--out", str(run),
           "--executor", "ray", "--address", cluster["address"]]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**cluster["env"], "BOXBENCH_TEST_MARKER": str(marker)})
    deadline = time.time() + 300
    while time.time() < deadline and not marker.exists():
        time.sleep(0.2)
    assert marker.exists(), "the cell never started"
    time.sleep(0.3)
    os.kill(int(marker.read_text()), signal.SIGKILL)  # the cell's own process, mid-tune
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-2000:]
    assert "retry slow_once" in out and "killed by signal 9" in out
    (rec,) = records_of(run)
    assert rec["status"] == "ok" and rec["attempts"] == 2


def test_a_killed_driver_resumes_with_every_cell_once(cluster, tmp_path):
    suite = write_suite(tmp_path / "s.yaml", (SUITES / "smoke.yaml").read_text().replace("test: 8", "test: 4"))
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "boxbench.benchmarks.cli", "run", str(suite), "--out", str(run), "--quiet",
           "--executor", "ray", "--address", cluster["address"]]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=cluster["env"])
    deadline = time.time() + 300
    while time.time() < deadline and not ((run / "results.jsonl").exists() and records_of(run)):
        time.sleep(0.2)
    assert (run / "results.jsonl").exists(), "no cell finished in time"
    os.kill(proc.pid, signal.SIGKILL)  # the driver, with cells still running on the cluster
    proc.wait()
    n_before = len(records_of(run))
    assert 1 <= n_before < 4
    done = run_cli("run", str(suite), "--out", str(run), "--quiet", "--executor", "ray", "--address", cluster["address"],
                   env=cluster["env"])
    assert done.returncode == 0, done.stderr[-2000:]
    recs = records_of(run)
    assert len(recs) == 4 and len({r["cell_key"] for r in recs}) == 4 and all(r["status"] == "ok" for r in recs)
    assert f"{n_before} already done" in done.stdout


def test_sigterm_to_the_driver_is_one_line_exit_143_cells_cancelled_then_resume(cluster, tmp_path):
    """A scheduler's SIGTERM to a Ray driver, as to a local run: one line, exit 143, the running cells'
    tasks cancelled and their record-less folders gone, finished cells kept; the same command resumes."""
    suite = write_suite(tmp_path / "s.yaml", (SUITES / "smoke.yaml").read_text().replace("test: 8", "test: 4"))
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "boxbench.benchmarks.cli", "run", str(suite), "--out", str(run), "--quiet",
           "--executor", "ray", "--address", cluster["address"]]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cluster["env"])
    deadline = time.time() + 300
    while time.time() < deadline and not ((run / "results.jsonl").exists() and records_of(run)):
        time.sleep(0.2)
    assert (run / "results.jsonl").exists(), "no cell finished in time"
    sent = time.time()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    print(f"\nSIGTERM to exit (Ray driver): {time.time() - sent:.2f} s")
    assert proc.returncode == 143, (proc.returncode, err[-2000:])
    assert err.strip().splitlines() == ["boxbench: terminated (SIGTERM); finished cells are kept, re-run the same command to resume"]
    done = {r["cell_id"] for r in records_of(run)}
    time.sleep(2)  # a cancelled task's worker is gone: nothing writes a folder after the driver left
    assert {d.name for d in (run / "cells").iterdir()} <= done and 1 <= len(done) < 4
    again = run_cli("run", str(suite), "--out", str(run), "--quiet", "--executor", "ray", "--address", cluster["address"],
                    env=cluster["env"])
    assert again.returncode == 0 and f"{len(done)} already done" in again.stdout, again.stderr[-2000:]
    assert len(records_of(run)) == 4 and len({r["cell_key"] for r in records_of(run)}) == 4


def test_a_suites_resources_reach_the_ray_task_and_an_impossible_ask_is_one_line(cluster, tmp_path):
    """Suite-wide, per-model and per-method ``resources`` are what Ray reserves for the cell's task
    (read inside the task: ``ray_resources``); a cell asking for more CPUs than the cluster has in all
    fails in one line instead of waiting for a node that never joins, and the suite goes on."""
    suite = write_suite(tmp_path / "s.yaml", """
models: [{model: smollm2-135m, resources: {memory: 1GB}}]
datasets: [sst2]
methods:
  - name: zero_shot
    access: grey
    resources: {num_cpus: 2}
  - name: few_shot
    params: {k: 1}
    resources: {num_cpus: 4}
resources: {num_cpus: 1, memory: 3GB}
limits: {train: 20, test: 2}
settings: {max_new_tokens: 2}
""")
    run = tmp_path / "run"
    proc = run_cli("run", str(suite), "--out", str(run), "--executor", "ray", "--address", cluster["address"], env=cluster["env"])
    assert proc.returncode == 1, proc.stderr[-2000:]  # a cell errored: the run says so in its exit code
    recs = {r["method"]: r for r in records_of(run)}
    ok, refused = recs["zero_shot"], recs["few_shot"]
    assert ok["status"] == "ok" and ok["ray_resources"] == {"CPU": 2.0, "memory": 1e9}  # method over model over suite
    assert refused["status"] == "error" and refused["attempts"] == 1 and refused["error"] == (
        "the cell asks Ray for num_cpus 4 but the cluster has 2 CPU in all; lower resources in the suite or add nodes")
    assert f"error {refused['cell_id']}: the cell asks Ray for num_cpus 4" in proc.stdout


def test_resources_are_not_part_of_the_cell_key_and_defaults_follow_size_and_device(tmp_path):
    from boxbench.benchmarks.executors import default_resources, model_parameters
    from boxbench.benchmarks.suite import load_suite

    base = "models: [smollm2-135m, {model: qwen2.5-coder-0.5b, resources: {num_cpus: 2}}]\ndatasets: [sst2]\nmethods: [zero_shot, lora]\n"
    plain = load_suite(write_suite(tmp_path / "a.yaml", base))
    asked = load_suite(write_suite(tmp_path / "b.yaml", base + "resources: {memory: 2GiB}\nsettings: {max_retries: 3}\n"))
    assert [c.key for c in plain.cells] == [c.key for c in asked.cells]  # how a cell runs is not what it measures
    smol_lora = next(c for c in asked.cells if c.method == "lora" and c.model.model == "smollm2-135m")
    qwen = next(c for c in asked.cells if c.model.model == "qwen2.5-coder-0.5b")
    assert smol_lora.resources == {"memory": 2 * 2**30} and qwen.resources == {"memory": 2 * 2**30, "num_cpus": 2}
    assert model_parameters(smol_lora) == 135e6 and model_parameters(qwen) == 0.5e9
    cpu = default_resources(smol_lora, cluster_gpus=0)
    assert cpu == {"num_cpus": 1, "num_gpus": 0, "memory": int(135e6 * 4 * 4 + 2**30)}  # white: weights, grads, Adam
    zero = next(c for c in plain.cells if c.method == "zero_shot" and c.model.model == "smollm2-135m")
    assert default_resources(zero, cluster_gpus=8) == {"num_cpus": 1, "num_gpus": 1}  # the GPU holds the model


def test_an_unreachable_cluster_is_one_line(tmp_path):
    _ray_or_skip()
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = run_cli("run", str(SUITES / "smoke.yaml"), "--out", str(tmp_path / "run"), "--executor", "ray",
                   "--address", f"127.0.0.1:{port}", timeout=60)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0
    assert f"--address 127.0.0.1:{port}: no Ray cluster answers there" in proc.stderr
