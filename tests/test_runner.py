"""The runner end to end on the real model and data: records, report, resume, SIGKILL, failing cells."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from pathlib import Path

from helpers import SUITES, records_of, run_cli, write_method_plugin, write_suite

REQUIRED = ["method", "access", "protocol", "model", "dataset", "seed", "params", "accuracy", "macro_f1", "n",
            "invalid_rate", "tune_wall_s", "eval_wall_s", "peak_host_rss_bytes", "peak_accelerator_bytes",
            "model_calls", "prompt_tokens", "completion_tokens", "started_at", "versions", "device", "status", "error"]



def test_smoke_suite_end_to_end_and_resume(smoke_run, tmp_path):
    first, proc = smoke_run
    assert proc.returncode == 0, proc.stderr + proc.stdout
    run = tmp_path / "run"
    shutil.copytree(first, run)  # the resume below goes on in a copy: the fixture's run stays as it was
    recs = records_of(run)
    assert len(recs) == 4 and all(r["status"] == "ok" for r in recs), [r["error"] for r in recs]
    for r in recs:
        assert all(k in r for k in REQUIRED)
        assert r["n"] == 8 and 0.0 <= r["accuracy"] <= 1.0
        assert r["peak_host_rss_bytes"] > 300 * 2**20  # a 135M-parameter model in fp32 is resident
        assert r["peak_accelerator_bytes"] is None and r["device"]["device"] == "cpu"
        assert r["model_calls"] >= 8 and r["prompt_tokens"] > 0
        assert r["protocol"] == ("logprob" if r["access"] == "grey" else "generate")
        assert (run / "cells" / r["cell_id"] / "artifact" / "artifact.json").exists()
        rows = [json.loads(x) for x in (run / "cells" / r["cell_id"] / "predictions.jsonl").read_text().splitlines()]
        assert len(rows) == 8 and all(len(x["prompt_sha256"]) == 16 for x in rows)
        if r["protocol"] == "logprob":  # each label's score, so two cells compare example by example
            labels = {"sst2": 2, "agnews": 4}[r["dataset"]]
            assert all(len(x["scores"]) == labels and x["pred"] == max(range(labels), key=x["scores"].__getitem__) for x in rows)
        else:
            assert all(isinstance(x["answer"], str) for x in rows)
        assert r["code"]["version"] and set(r["data_files"]) >= {"sst2/train.tsv", "sst2/validation.tsv"} or \
            set(r["data_files"]) >= {"agnews/train.csv", "agnews/test.csv"}
        assert all(len(v) == 64 for v in r["data_files"].values())
    few = [r for r in recs if r["method"] == "few_shot"]
    assert all(r["completion_tokens"] > 0 for r in few)  # generation counted
    report = (run / "report.md").read_text()
    assert "zero_shot@grey" in report and "few_shot" in report and "| sst2 | agnews |" in report
    assert "data:image/png;base64," in (run / "report.html").read_text()

    assert "[" in report and "### Paired comparisons" in report and "### Accuracy with 95 % intervals" in report
    assert (run / "report_accuracy.png").is_file()

    again = run_cli("run", str(SUITES / "smoke.yaml"), "--out", str(run), "--quiet")
    assert again.returncode == 0 and "0 ok, 0 error, 4 already done" in again.stdout
    assert records_of(run) == recs

    # a --limit run into the same folder: other cells (the test limit is in the key); the report
    # shows only the suite's current cells and lists the earlier ones as stale
    limited = run_cli("run", str(SUITES / "smoke.yaml"), "--out", str(run), "--quiet", "--limit", "4", "--report")
    assert limited.returncode == 0 and "4 ok" in limited.stdout
    report = (run / "report.md").read_text()
    assert "4 stale cells listed at the end" in report and "### Stale cells" in report
    accuracy = report.split("### Accuracy (%)")[1].split("###")[0]
    assert "(n=" not in accuracy  # one seed per cell: the 8-example cells were not averaged in as extra seeds


def test_sigkill_mid_suite_then_resume_has_every_cell_once(tmp_path):
    suite = write_suite(tmp_path / "s.yaml", (SUITES / "smoke.yaml").read_text().replace("test: 8", "test: 4"))
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "boxbench.benchmarks.cli", "run", str(suite), "--out", str(run), "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not ((run / "results.jsonl").exists() and records_of(run)):
        time.sleep(0.2)
    assert (run / "results.jsonl").exists(), "no cell finished in time"
    import psutil

    left = psutil.Process(proc.pid).children(recursive=True)  # the fork server and the running cell
    assert left, "the run started no process"
    os.kill(proc.pid, signal.SIGKILL)  # mid-suite: at least one cell done, the rest not
    proc.wait()
    n_before = len(records_of(run))
    assert 1 <= n_before < 4
    _, alive = psutil.wait_procs(left, timeout=10)  # each dies with its parent (PR_SET_PDEATHSIG)
    assert not alive, f"left behind: {[p.cmdline() for p in alive]}"
    done = run_cli("run", str(suite), "--out", str(run), "--quiet")
    assert done.returncode == 0, done.stderr
    recs = records_of(run)
    keys = [r["cell_key"] for r in recs]
    assert len(recs) == 4 and len(set(keys)) == 4 and all(r["status"] == "ok" for r in recs)
    assert f"{n_before} already done" in done.stdout


def test_sigterm_is_ctrl_c_one_line_exit_143_nothing_partial_then_resume(tmp_path):
    """What Slurm, Kubernetes, Ray preemption and `timeout` send: handled as Ctrl-C."""
    import psutil

    suite = write_suite(tmp_path / "s.yaml", (SUITES / "smoke.yaml").read_text().replace("test: 8", "test: 4"))
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "boxbench.benchmarks.cli", "run", str(suite), "--out", str(run), "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and not ((run / "results.jsonl").exists() and records_of(run)):
        time.sleep(0.2)
    left = psutil.Process(proc.pid).children(recursive=True)  # the fork server and the running cell
    assert left, "the run started no process"
    sent = time.time()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    took = time.time() - sent
    assert proc.returncode == 143, (proc.returncode, err[-2000:])
    assert err.strip().splitlines() == ["boxbench: terminated (SIGTERM); finished cells are kept, re-run the same command to resume"]
    _, alive = psutil.wait_procs(left, timeout=10)
    assert not alive, f"left behind: {[p.cmdline() for p in alive]}"
    done = {r["cell_id"] for r in records_of(run)}
    # every cell folder left is a finished cell's: the one that was running is gone with its partial files
    assert {d.name for d in (run / "cells").iterdir()} <= done and 1 <= len(done) < 4
    assert not list(run.glob("results.tmp*"))
    again = run_cli("run", str(suite), "--out", str(run), "--quiet")
    assert again.returncode == 0 and f"{len(done)} already done" in again.stdout and len(records_of(run)) == 4
    print(f"\nSIGTERM to exit: {took:.2f} s")


def _tmpfs(mnt: Path, options: str) -> Path:
    """A real small filesystem (tmpfs) at ``mnt``; skipped, with the reason, where this machine does
    not let the test mount one."""
    mnt.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mnt)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({made.stderr.strip() or made.returncode}): needs root or CAP_SYS_ADMIN")
    return mnt


@pytest.fixture
def small_disk(tmp_path):
    """A real 64 KiB filesystem."""
    mnt = _tmpfs(tmp_path / "small", "size=64k")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_disk_ends_the_run_in_one_line_keeps_what_finished_and_resumes(small_disk):
    run = small_disk / "run"
    proc = run_cli("run", str(SUITES / "smoke.yaml"), "--out", str(run), "--quiet")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"boxbench: error: no space left on device in {run} while writing results.jsonl (the record of cell ")
    assert "free some space there and re-run the same command to resume" in line and "KiB free" in line
    kept = records_of(run)
    assert 1 <= len(kept) < 4 and all(r["status"] == "ok" for r in kept)
    assert not list(run.glob("results.tmp*"))
    subprocess.run(["mount", "-o", "remount,size=16m", str(small_disk)], check=True)  # space freed
    again = run_cli("run", str(SUITES / "smoke.yaml"), "--out", str(run), "--quiet")
    assert again.returncode == 0 and f"{len(kept)} already done" in again.stdout and len(records_of(run)) == 4


def test_a_full_disk_in_a_cells_artifact_fails_that_cell_alone_and_a_rerun_retries_it(tmp_path):
    """A LoRA adapter (~1.8 MB) on a 512 KiB filesystem: the cell is an error in one line, its partial
    files are gone, the next cell still fits and runs; with space freed the same command retries it."""
    mnt = _tmpfs(tmp_path / "small", "size=512k")
    try:
        run = mnt / "run"
        suite = write_suite(tmp_path / "s.yaml", "models: [smollm2-135m]\ndatasets: [sst2]\n"
                            "methods: [{name: lora, params: {max_steps: 1, batch_size: 2}}, zero_shot]\n"
                            "limits: {train: 4, dev: 0, test: 4}\nsettings: {max_new_tokens: 4}\n")
        proc = run_cli("run", str(suite), "--out", str(run), "--quiet")
        recs = {r["method"]: r for r in records_of(run)}
        lora = recs["lora"]
        assert lora["status"] == "error" and recs["zero_shot"]["status"] == "ok", proc.stdout + proc.stderr
        folder = run / "cells" / lora["cell_id"]
        assert lora["error"].startswith(f"no space left on device in {folder} while writing the cell's artifact and predictions (")
        assert "KiB free); free some space there and re-run the same command to resume" in lora["error"]
        assert not (folder / "artifact").exists() and not (folder / "predictions.jsonl").exists()
        subprocess.run(["mount", "-o", "remount,size=64m", str(mnt)], check=True)  # space freed
        again = run_cli("run", str(suite), "--out", str(run), "--quiet")
        assert again.returncode == 0 and "1 already done" in again.stdout, again.stdout + again.stderr
        assert sorted((r["method"], r["status"]) for r in records_of(run)) == [("lora", "ok"), ("zero_shot", "ok")]
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_disk_while_writing_the_report_is_one_line_and_the_last_report_stays(smoke_run, tmp_path):
    """The smoke run (with its report) on a filesystem it just fits: a new report cannot be written
    beside the old one; the old one stays as it was and no temporary file is left."""
    local, first = smoke_run
    assert first.returncode == 0, first.stderr[-2000:]
    mnt = _tmpfs(tmp_path / "small", "size=16m")
    try:
        run = mnt / "run"
        shutil.copytree(local, run)
        used = shutil.disk_usage(mnt).used
        subprocess.run(["mount", "-o", f"remount,size={(used // 4096 + 4) * 4096}", str(mnt)], check=True)  # 16 KiB to spare
        before = {p.name: p.read_bytes() for p in run.iterdir() if p.name.startswith("report")}
        proc = run_cli("report", str(run))
        assert proc.returncode == 2, proc.stdout + proc.stderr
        (line,) = proc.stderr.strip().splitlines()
        assert line.startswith(f"boxbench: error: no space left on device in {run} while writing the report (report.md, "
                               f"report.html and its figures) (")
        assert {p.name: p.read_bytes() for p in run.iterdir() if p.name.startswith("report")} == before
        assert not [p.name for p in run.iterdir() if ".tmp" in p.name]
        subprocess.run(["mount", "-o", "remount,size=16m", str(mnt)], check=True)
        assert run_cli("report", str(run)).returncode == 0
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_model_cache_is_warned_once_and_the_cells_go_on(tmp_path):
    """The dequantised-model cache (``BOXBENCH_CACHE``) on a 64 KiB filesystem: the model loads from its
    GGUF, the cells run, each record says why nothing was cached, the run warns once."""
    cache = _tmpfs(tmp_path / "cache", "size=64k")
    try:
        run = tmp_path / "run"
        proc = run_cli("run", str(SUITES / "smoke.yaml"), "--out", str(run), "--quiet", "--only", "dataset=sst2",
                       env={"BOXBENCH_CACHE": str(cache)})
        assert proc.returncode == 0, proc.stdout + proc.stderr
        recs = records_of(run)
        assert len(recs) == 2 and all(r["status"] == "ok" for r in recs)
        assert all(r["model_cache_error"].startswith(f"no space left on device in {cache / 'dequantized'} while writing "
                                                     f"the dequantised model SmolLM2-135M-Instruct.Q4_1-") for r in recs)
        warnings = [line for line in proc.stderr.splitlines() if "warning" in line]
        assert len(warnings) == 1 and warnings[0].startswith("boxbench: warning: a dequantised model could not be cached (")
        assert not [p for p in (cache / "dequantized").iterdir()]  # no half-written folder left
    finally:
        subprocess.run(["umount", "-l", str(cache)], check=False)


def test_an_unusable_out_folder_is_one_line_and_nothing_is_written(tmp_path):
    missing = tmp_path / "typo" / "run"
    proc = run_cli("run", str(SUITES / "smoke.yaml"), "--out", str(missing), "--quiet")
    assert proc.returncode == 2 and proc.stderr.strip() == (
        f"boxbench: error: --out {missing}: its parent folder {missing.parent} does not exist; create it "
        f"(mkdir -p {missing.parent}) or give another --out")
    assert not missing.parent.exists()
    newer = tmp_path / "newer"
    newer.mkdir()
    line = json.dumps({"cell_key": "k", "cell_id": "c", "method": "zero_shot", "label": "zero_shot", "access": "black",
                       "model": "m", "dataset": "sst2", "seed": 0, "status": "ok", "schema": 99})
    (newer / "results.jsonl").write_text(line + "\n")
    proc = run_cli("run", str(SUITES / "smoke.yaml"), "--out", str(newer), "--quiet")
    assert proc.returncode == 2 and "written by a newer boxbench (results schema 99" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and sorted(p.name for p in newer.iterdir()) == ["results.jsonl"]


def test_a_read_only_out_folder_is_one_line(tmp_path):
    ro = _tmpfs(tmp_path / "ro", "ro,size=64k")
    try:
        proc = run_cli("run", str(SUITES / "smoke.yaml"), "--out", str(ro / "run"), "--quiet")
    finally:
        subprocess.run(["umount", "-l", str(ro)], check=False)
    assert proc.returncode == 2 and proc.stderr.strip() == (
        f"boxbench: error: --out {ro / 'run'}: cannot write in {ro} (Read-only file system); give a folder you can write to")


def test_a_cell_killed_every_time_is_an_error_naming_the_signal_and_its_peak_memory(tmp_path):
    """The kernel's OOM killer, as a cell sees it: SIGKILL, here after holding ~200 MB for a second."""
    plugin = write_method_plugin(tmp_path / "always_killed.py", "always_killed", """\
        held = bytearray(200 * 2**20)
        time.sleep(1.5)
        os.kill(os.getpid(), signal.SIGKILL)""", "import os, signal, time")
    suite = write_suite(tmp_path / "s.yaml", "models: [smollm2-135m]\ndatasets: [sst2]\nlimits: {test: 8}\n"
                                             "methods: [always_killed, {name: zero_shot, access: grey}]\nsettings: {max_retries: 1}\n")
    run = tmp_path / "run"
    proc = run_cli("--plugin", str(plugin), "run", str(suite), "--out", str(run), "--quiet")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    recs = {r["method"]: r for r in records_of(run)}
    killed = recs["always_killed"]
    assert killed["status"] == "error" and killed["attempts"] == 2  # retried once, as settings.max_retries says
    assert killed["error"].startswith("cell process killed by signal 9 (SIGKILL) (out of memory?); its last peak RSS ")
    assert 0.2 * 2**30 < killed["last_peak_rss_bytes"] < 8 * 2**30  # the model, the interpreter and the 200 MB held
    assert recs["zero_shot"]["status"] == "ok"  # the run went on
    again = run_cli("--plugin", str(plugin), "run", str(suite), "--out", str(run), "--quiet")
    assert "0 ok, 1 error, 1 already done" in again.stdout  # the error cell was tried again (and killed again)


def test_forked_cells_are_retried_when_killed_and_equal_fresh_ones(tmp_path):
    """The fork server changes only how a cell starts: a cell killed by a signal is retried and
    recorded once (the Ray test does it on a Ray worker), and a forked cell records what a fresh
    process records (BOXBENCH_FRESH_CELLS=1)."""
    plugin = write_method_plugin(tmp_path / "killed_once.py", "killed_once", """\
        marker = os.environ["BOXBENCH_TEST_MARKER"]
        if not os.path.exists(marker):
            open(marker, "w").write(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's OOM killer would""", "import os, signal")
    suite = write_suite(tmp_path / "s.yaml", "models: [smollm2-135m]\ndatasets: [sst2]\nlimits: {test: 8}\n"
                                             "methods: [killed_once, {name: zero_shot, access: grey}]\n")
    forked, fresh = tmp_path / "forked", tmp_path / "fresh"
    proc = run_cli("--plugin", str(plugin), "run", str(suite), "--out", str(forked),
                   env={"BOXBENCH_TEST_MARKER": str(tmp_path / "pid")})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "retry killed_once" in proc.stdout and "killed by signal 9" in proc.stdout
    recs = {r["method"]: r for r in records_of(forked)}
    assert {m: (r["status"], r["attempts"], r["cell_process"]) for m, r in recs.items()} == \
        {"killed_once": ("ok", 2, "forked"), "zero_shot": ("ok", 1, "forked")}
    proc = run_cli("--plugin", str(plugin), "run", str(suite), "--out", str(fresh), "--only", "method=zero_shot",
                   env={"BOXBENCH_FRESH_CELLS": "1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (other,) = records_of(fresh)
    assert other["cell_process"] == "fresh" and other["cell_key"] == recs["zero_shot"]["cell_key"]
    for k in ("accuracy", "correct", "prompt_tokens", "model_calls"):
        assert other[k] == recs["zero_shot"][k], k


PLUGIN = '''
from dataclasses import dataclass, field
from boxbench.core.backend import Access
from boxbench.methods import Method, PromptArtifact, register_method


@dataclass
class EchoParams:
    instruction: str = field(default="Answer with one word.", metadata={"help": "fixed instruction"})
    fail: bool = False


@register_method
class FixedInstruction(Method):
    name = "fixed_instruction"
    access = Access.black
    Params = EchoParams
    description = "a tiny external method"

    def tune(self, view, *, task, train, dev, params, seed):
        if params.fail:
            raise RuntimeError("deliberate failure\\nsecond line")
        return PromptArtifact(params.instruction)
'''


def test_plugin_method_runs_and_a_failing_cell_does_not_stop_the_suite(tmp_path):
    plugin = tmp_path / "my_method.py"
    plugin.write_text(PLUGIN)
    listed = run_cli("--plugin", str(plugin), "list")
    assert listed.returncode == 0 and "fixed_instruction" in listed.stdout and "a tiny external method" in listed.stdout
    suite = write_suite(tmp_path / "s.yaml", """
name: plugin
models: [smollm2-135m]
datasets: [sst2]
methods:
  - {name: fixed_instruction, label: boom, params: {fail: true}}
  - {name: fixed_instruction, access: grey}
limits: {train: 10, test: 6}
""")
    bare = run_cli("check", str(suite))
    assert bare.returncode == 2 and "unknown method 'fixed_instruction'" in bare.stderr
    run = tmp_path / "run"
    proc = run_cli("run", str(suite), "--out", str(run), "--plugin", str(plugin), "--quiet")
    assert proc.returncode == 1  # one cell failed
    recs = {r["label"]: r for r in records_of(run)}
    assert recs["boom"]["status"] == "error" and recs["boom"]["error"] == "RuntimeError: deliberate failure"
    ok = recs["fixed_instruction@grey"]
    assert ok["status"] == "ok" and ok["n"] == 6 and ok["protocol"] == "logprob"
    art = json.loads((run / "cells" / ok["cell_id"] / "artifact" / "artifact.json").read_text())
    assert art["kind"] == "prompt" and art["instruction"] == "Answer with one word."
    assert "Traceback" in (run / "cells" / recs["boom"]["cell_id"] / "log.txt").read_text()


def test_int8_fast_path_records_its_accuracy_difference_against_the_exact_model(tmp_path, smol):
    """quantize: int8 (the fast CPU path) gives grey access at most; its cell records, on the first
    exact_check test examples, the accuracy of the exact fp32 model with the same artifact."""
    from boxbench.backends.hf import HFBackend
    from boxbench.benchmarks.datasets import load_splits
    from boxbench.core.evaluate import evaluate
    from boxbench.core.method import PromptArtifact

    suite = write_suite(tmp_path / "int8.yaml", """
name: int8
models: [{model: smollm2-135m, quantize: int8, label: smol-int8}]
datasets: [sst2]
methods: [{name: zero_shot, access: grey}]
seeds: [0]
limits: {train: 20, dev: 4, test: 16}
settings: {exact_check: 10}
""")
    proc = run_cli("run", str(suite), "--out", str(tmp_path / "run"), "--quiet")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    (rec,) = records_of(tmp_path / "run")
    assert rec["status"] == "ok" and rec["backend"]["quantize"] == "int8-dynamic" and rec["n"] == 16
    check = rec["exact_check"]
    splits = load_splits("sst2", train=20, dev=4, test=16)
    exact = evaluate(PromptArtifact(), smol.view("grey"), splits.task, splits.test[:10])  # the fp32 model itself
    assert check["n"] == 10 and check["exact_options"] == {"quantize": "none"}
    assert check["exact_accuracy"] == exact["accuracy"]
    assert check["agreement"] == sum(a == b for a, b in zip(_preds(tmp_path / "run", rec)[:10], exact["predictions"])) / 10
    assert abs(check["accuracy_delta"] - (check["accuracy"] - check["exact_accuracy"])) < 1e-12 and rec["exact_check_wall_s"] > 0
    fast = HFBackend.load("smollm2-135m", quantize="int8")
    assert fast.max_access.name == "grey" and fast.exact_twin() == {"quantize": "none"} and smol.exact_twin() is None


def _preds(run: Path, rec: dict) -> list:
    rows = [json.loads(x) for x in (run / "cells" / rec["cell_id"] / "predictions.jsonl").read_text().splitlines()]
    return [x["pred"] for x in rows]
