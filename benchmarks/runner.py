"""Run a suite: each cell in its own process, one JSON line per finished cell, resumable.

The parent process owns ``RUN_DIR/results.jsonl`` (rewritten atomically: temp file, fsync,
rename) and draws the progress bars; a cell's child process loads the model, tunes, evaluates,
and reports progress and its result on stdout as JSON lines. A cell that fails records
``status: "error"`` with a one-line reason and the suite goes on; resume skips cells that are ok.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import random
import subprocess
import sys
import threading
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from boxbench.benchmarks.suite import Cell, Suite
from boxbench.registry import UserError, die_with_parent, load_plugin_file

if TYPE_CHECKING:
    from boxbench.benchmarks.forkserver import ForkServer

RESULTS = "results.jsonl"


# ------------------------------------------------------------------ results store
class ResultStore:
    """``results.jsonl``: one record per cell key, replaced in place when a cell is re-run."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / RESULTS

    def records(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                if line.strip():
                    out.append(json.loads(line))
        return out

    def ok_keys(self) -> set[str]:
        return {r["cell_key"] for r in self.records() if r.get("status") == "ok"}

    def put(self, record: dict[str, Any]) -> None:
        """Add ``record`` (replacing an earlier one with the same cell key) atomically."""
        records = [r for r in self.records() if r.get("cell_key") != record["cell_key"]] + [record]
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        with open(tmp, "w") as f:
            for r in records:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """One runner per RUN_DIR at a time."""
    with open(run_dir / ".lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"--out {run_dir}: another boxbench run is writing there; wait for it or use another folder") from None
        yield


# ------------------------------------------------------------------ parent side
def _error_record(cell: Cell, reason: str, started: str) -> dict[str, Any]:
    return {**base_record(cell), "status": "error", "error": reason, "started_at": started,
            "finished_at": _now()}


def prepare_run_dir(run_dir: Path) -> None:
    """Create the run folder; a UserError naming ``--out`` when it is a file or cannot be made."""
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"--out {run_dir}: is a file, not a folder; give a folder for the run (created if missing)")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"--out {run_dir}: cannot create the folder ({e.strerror or e}); pick a writable path") from None


def run_suite(suite: Suite, run_dir: Path, plugins: list[str] | None = None, quiet: bool = False,
              executor: str = "local", address: str | None = None) -> dict[str, int]:
    """Run every cell not already ok in ``run_dir`` through ``executor`` (``local``: one after another;
    ``ray``: spread over a Ray cluster at ``address``); returns counts of ok / error / skipped.

    This process is the only writer of ``results.jsonl``: a record lands as its cell finishes, in
    any order. A cell waits for its source cell (transfer); a cell whose process died is run again
    up to ``settings.max_retries`` times, and is recorded once, with its ``attempts``."""
    from tqdm import tqdm

    from boxbench.benchmarks.executors import EXECUTORS

    prepare_run_dir(run_dir)
    counts = {"ok": 0, "error": 0, "skipped": 0}
    with run_lock(run_dir):
        store = ResultStore(run_dir)
        (run_dir / "suite.json").write_text(json.dumps({"name": suite.name, "suite": suite.raw, "cell_keys": suite.all_keys},
                                                       indent=2, default=str))
        ok = store.ok_keys()
        todo = [c for c in suite.cells if c.key not in ok]
        counts["skipped"] = len(suite.cells) - len(todo)
        runner = EXECUTORS.get(executor)(run_dir, plugins or [], quiet, **({"address": address} if executor != "local" else {}))
        line = runner.start()
        if line and not quiet:
            print(line, flush=True)
        bar = tqdm(total=len(suite.cells), initial=counts["skipped"], desc=f"suite {suite.name}", unit="cell",
                   position=0, disable=quiet, dynamic_ncols=True)
        attempts: dict[str, int] = {}
        waiting = list(todo)
        active: set[str] = set()
        try:
            while waiting or runner.busy():
                for cell in list(waiting):  # submit what is ready; a transfer cell after its source
                    if cell.source is not None and cell.source.key not in ok:
                        if cell.source.key in active or any(c.key == cell.source.key for c in waiting):
                            continue
                        record = _error_record(cell, f"its source cell {cell.source.cell_id} did not finish ok; nothing to transfer", _now())
                        waiting.remove(cell)
                        _land(store, record, counts, bar, quiet)
                        continue
                    waiting.remove(cell)
                    active.add(cell.key)
                    attempts[cell.key] = attempts.get(cell.key, 0) + 1
                    runner.submit(cell)
                if not runner.busy():
                    continue
                cell, record = runner.next_done()
                if record.pop("retryable", False) and attempts[cell.key] <= cell.settings.get("max_retries", 1):
                    if not quiet:
                        tqdm.write(f"retry {cell.cell_id} (attempt {attempts[cell.key] + 1}): {record['error']}")
                    active.discard(cell.key)
                    waiting.insert(0, cell)
                    continue
                active.discard(cell.key)
                record["attempts"] = attempts[cell.key]
                if record["status"] == "ok":
                    ok.add(cell.key)
                _land(store, record, counts, bar, quiet)
        except KeyboardInterrupt:
            runner.cancel()  # running cells stop; finished ones are in results.jsonl already
            raise
        finally:
            bar.close()
            runner.close()
    return counts


def _land(store: ResultStore, record: dict[str, Any], counts: dict[str, int], bar: Any, quiet: bool) -> None:
    """Write a finished cell's record and say so: one line per cell."""
    from tqdm import tqdm

    store.put(record)
    counts[record["status"]] += 1
    bar.update(1)
    if not quiet:
        if record["status"] == "ok":
            tqdm.write(f"ok    {record['cell_id']}  accuracy {100 * record['accuracy']:.1f}  "
                       f"tune {record['tune_wall_s'] or 0:.0f} s  eval {record['eval_wall_s'] or 0:.0f} s")
        else:
            tqdm.write(f"error {record['cell_id']}: {record['error']}")


def run_cell_process(cell: Cell, run_dir: Path, plugins: list[str], quiet: bool = False,
                     server: "ForkServer | None" = None) -> dict[str, Any]:
    """Run one cell in a child process — forked from ``server`` (warm imports, see ``forkserver``)
    or, without one, a fresh ``python`` — and always return a record (an error one if it died)."""
    from tqdm import tqdm

    cell_dir = run_dir / "cells" / cell.cell_id
    cell_dir.mkdir(parents=True, exist_ok=True)
    (cell_dir / "cell.json").write_text(json.dumps({"cell": cell.to_json(), "plugins": plugins}, indent=2))
    started = _now()
    timeout = cell.settings.get("cell_timeout_s")
    log = open(cell_dir / "log.txt", "w")
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
    proc: Any
    if server is not None:
        try:
            proc = server.start(cell_dir, log, env)
        except OSError as e:  # ConnectionError included: the server is gone; a retry starts another
            log.close()
            return {**_error_record(cell, f"the fork server is gone ({e}); see {server.log}", started),
                    "retryable": True}
    else:
        proc = subprocess.Popen([sys.executable, "-m", "boxbench.benchmarks.runner", str(cell_dir)],
                                stdout=subprocess.PIPE, stderr=log, text=True, env=env, preexec_fn=die_with_parent)
    record: dict[str, Any] | None = None
    bar = None
    phase = "start"
    fired = threading.Event()

    def on_timeout() -> None:
        fired.set()
        proc.kill()

    timer = threading.Timer(float(timeout), on_timeout) if timeout else None  # fires whatever the child is doing
    if timer is not None:
        timer.daemon = True
        timer.start()
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
        proc.wait()
    finally:
        if timer is not None:
            timer.cancel()
        if bar is not None:
            bar.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    if record is not None:
        return {**record, "cell_process": "forked" if server is not None else "fresh"}
    if fired.is_set():
        return {**_error_record(cell, f"timed out after {timeout} s while in phase {phase!r} (settings.cell_timeout_s)", started),
                "timed_out_phase": phase}
    code = proc.returncode
    why = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
    hint = " (out of memory?)" if code in (-9, 137) else ""
    return {**_error_record(cell, f"cell process {why}{hint}; see {cell_dir / 'log.txt'}", started), "retryable": True}


# ------------------------------------------------------------------ child side
def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _emit(msg: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(msg, default=str) + "\n")
    sys.stdout.flush()


def base_record(cell: Cell) -> dict[str, Any]:
    """The fields every record has, whatever happened to the cell."""
    return {
        "cell_key": cell.key, "cell_id": cell.cell_id, "method": cell.method, "label": cell.label,
        "access": cell.access.name, "protocol": None, "model": cell.model.display, "model_spec": cell.model.to_json(),
        "dataset": cell.dataset["name"], "seed": cell.seed, "params": cell.params, "limits": cell.limits,
        "settings": cell.settings, "accuracy": None, "macro_f1": None, "n": None, "invalid_rate": None,
        "tune_wall_s": None, "eval_wall_s": None, "load_wall_s": None, "peak_host_rss_bytes": None,
        "peak_accelerator_bytes": None, "model_calls": None, "prompt_tokens": None, "completion_tokens": None,
        "started_at": None, "finished_at": None, "versions": None, "device": None, "status": None, "error": None,
        "source_model": (cell.source or cell).model.display, "target_model": cell.model.display,
    }


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    with contextlib.suppress(ImportError):
        import numpy as np

        np.random.seed(seed)
    import torch

    torch.manual_seed(seed)


def component_accuracy(view: Any, gold: list[int], protocol: str) -> dict[str, float] | None:
    """Accuracy of each model a combining backend reads (its ``component_scores``), on the very
    examples the cell was scored on; None for a single model or when the rows do not line up."""
    from boxbench.benchmarks.evaluate import accuracy, argmax_labels

    parts = view.component_scores() if protocol == "logprob" else {}
    if not parts or any(len(rows) != len(gold) for rows in parts.values()):
        return None
    return {name: accuracy(gold, argmax_labels(rows)) for name, rows in parts.items()}


def write_predictions(path: Path, test: list[Any], res: dict[str, Any], prompts: list[str]) -> None:
    """One line per test example: text, gold, prediction, each label's score (logprob protocol) or
    the raw answer (generate protocol), and the prompt's sha256, so that any two cells can be
    compared example by example."""
    with open(path, "w") as f:
        for i, (ex, p) in enumerate(zip(test, res["predictions"])):
            row: dict[str, Any] = {"text": ex.text, "label": ex.label, "pred": p,
                                   "prompt_sha256": hashlib.sha256(prompts[i].encode()).hexdigest()[:16]}
            if res["scores"]:
                row["scores"] = [round(v, 6) for v in res["scores"][i]]
            if res["answers"]:
                row["answer"] = res["answers"][i]
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def per_example_record(test: list[Any], predictions: list[int | None]) -> dict[str, Any]:
    """What the report's intervals and paired tests need, in the record itself: the 95 % Wilson
    interval of the accuracy, each example's correctness ('1'/'0' in test order) and a hash of the
    test examples (paired comparisons only between cells scored on the very same examples)."""
    from boxbench.reports.stats import wilson

    correct = "".join("1" if p == ex.label else "0" for ex, p in zip(test, predictions))
    digest = hashlib.sha256(json.dumps([[ex.text, ex.label] for ex in test], ensure_ascii=False).encode()).hexdigest()[:16]
    return {"accuracy_ci95": list(wilson(correct.count("1"), len(correct))), "correct": correct, "test_sha256": digest}


def _one_line(e: BaseException) -> str:
    """An unexpected exception as the record's one-line reason (type and first line)."""
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:300]}"


def exact_check(cell: Cell, twin: dict[str, Any], device: str, artifact: Any, task: Any, test: list[Any],
                predictions: list[int | None]) -> dict[str, Any]:
    """A fast-path cell's accuracy difference: its artifact evaluated again, on the first
    ``settings.exact_check`` test examples, through the exact model it stands for (the spec with
    ``twin``'s options) on the ``device`` the fast model ran on, at the cell's access; the two
    models' predictions compared."""
    import dataclasses

    from boxbench.backends import load_backend
    from boxbench.benchmarks.evaluate import accuracy, evaluate

    n = min(cell.settings["exact_check"], len(test))
    spec = dataclasses.replace(cell.model, options={**cell.model.options, **twin})
    exact = load_backend(spec, device=device, dtype=cell.settings["dtype"], batch_size=cell.settings["batch_size"])
    ref = evaluate(artifact, artifact.attach(exact.view(cell.access)), task, test[:n], max_new_tokens=cell.settings["max_new_tokens"])
    fast = accuracy([e.label for e in test[:n]], predictions[:n])
    return {"n": n, "exact_options": twin, "accuracy": fast, "exact_accuracy": ref["accuracy"], "accuracy_delta": fast - ref["accuracy"],
            "agreement": sum(a == b for a, b in zip(predictions[:n], ref["predictions"])) / n if n else 0.0}


def execute_cell(cell: Cell, cell_dir: Path, plugins: list[str] | None = None) -> dict[str, Any]:
    """Load, tune, evaluate one cell in this process and return its record.

    Only this function holds the raw backend: the method gets the view of its access, the artifact
    gets the view of the cell's access (``Artifact.attach``) and returns the view to evaluate through.
    """
    from boxbench.backends import load_backend
    from boxbench.benchmarks.datasets import load_splits
    from boxbench.benchmarks.evaluate import evaluate
    from boxbench.benchmarks.metering import Meter, code_version, device_info, peak_accelerator_bytes, versions
    from boxbench.methods.base import Artifact, build_params, family_of
    from boxbench.methods.registry import get_method

    record = base_record(cell)
    record["started_at"] = _now()
    own_peak = 0  # set before a fast path's exact check
    meter = Meter().start()
    try:
        for plugin in plugins or []:
            load_plugin_file(plugin)
        _seed_everything(cell.seed)
        method_cls = get_method(cell.method)
        record["family"] = family_of(method_cls)
        params = build_params(method_cls, cell.params)
        splits = load_splits(cell.dataset["name"], cell.limits.get("train"), cell.limits.get("dev"),
                             cell.limits.get("test"), cell.settings.get("data_seed", 0))
        task = splits.task.with_overrides(**cell.dataset)
        record.update(data_source=splits.source, data_files=splits.files, sizes=splits.sizes)
        _emit({"event": "phase", "phase": "load"})
        with meter.phase("load"):
            backend = load_backend(cell.model, device=cell.settings["device"], dtype=cell.settings["dtype"],
                                   batch_size=cell.settings["batch_size"])
        cell_view = backend.view(cell.access)  # access errors before any work
        tune_view = backend.view(method_cls.access) if cell.source is None else None  # a transfer cell does not tune
        record["backend"] = backend.describe()
        record["device"] = device_info(backend.settings.get("device", "cpu"))

        _emit({"event": "phase", "phase": "tune"})
        if cell.source is None:
            with meter.phase("tune"):
                artifact = method_cls().tune(tune_view, task, splits.train, splits.dev, params, cell.seed)
            artifact.save(cell_dir / "artifact")
        else:  # a transfer cell: the source cell's artifact, unchanged, on this model
            with meter.phase("tune"):
                artifact = Artifact.load(cell_dir.parent / cell.source.cell_id / "artifact")
        tune_usage = backend.usage.snapshot()

        total = len(splits.test)
        _emit({"event": "progress", "phase": "eval", "n": 0, "total": total})
        eval_view = artifact.attach(cell_view)  # an adapter, a soft prompt, a proxy ... (the same view or a wrapper's)
        if eval_view.access != cell.access:
            raise UserError(f"artifact {artifact.kind}: evaluates at {eval_view.access.name} access, the cell at {cell.access.name}")
        with meter.phase("eval"):
            res = evaluate(artifact, eval_view, task, splits.test, max_new_tokens=cell.settings["max_new_tokens"],
                           progress=lambda n: _emit({"event": "progress", "phase": "eval", "n": n, "total": total}))
        usage = eval_view.usage.snapshot()
        record["backend"] = eval_view.describe()  # again: some backends count things during the run
        record["component_accuracy"] = component_accuracy(eval_view, [e.label for e in splits.test], res["protocol"])
        write_predictions(cell_dir / "predictions.jsonl", splits.test, res, res["prompts"])
        record.update(per_example_record(splits.test, res["predictions"]))
        record.update(
            {k: res[k] for k in ("accuracy", "macro_f1", "n", "invalid_rate", "protocol")},
            tune_wall_s=meter.walls["tune"], eval_wall_s=meter.walls["eval"], load_wall_s=meter.walls["load"],
            **usage,
            tune_usage=tune_usage,
            eval_usage={k: usage[k] - tune_usage[k] for k in usage},
            **{k: v for k, v in artifact.stats.items() if k not in record},  # train_steps, trainable_params, ...
            artifact=str((cell_dir.parent / (cell.source or cell).cell_id / "artifact").relative_to(cell_dir.parent.parent)),
            status="ok",
        )
        twin = backend.exact_twin()
        if twin is not None and cell.settings.get("exact_check"):
            device = backend.settings.get("device", cell.settings["device"])  # where the fast model ran
            del eval_view, cell_view, tune_view, backend  # the fast model is done with: free it first
            own_peak = meter.peak_host_rss_bytes  # the cell's own; the check's twin model is not the fast path's cost
            _emit({"event": "phase", "phase": "exact_check"})
            with meter.phase("exact_check"):
                try:
                    record["exact_check"] = exact_check(cell, twin, device, artifact, task, splits.test, res["predictions"])
                except Exception as e:  # the cell's own result stands; say why the check is missing
                    record["exact_check"] = {"error": _one_line(e)}
            record["exact_check_wall_s"] = meter.walls["exact_check"]
            record["exact_check_peak_host_rss_bytes"] = meter.peak_host_rss_bytes
    except UserError as e:
        record.update(status="error", error=str(e))
    except Exception as e:  # a failing cell must not stop the suite; the traceback goes to its log
        traceback.print_exc()
        record.update(status="error", error=_one_line(e))
    finally:
        meter.stop()
    record.update(peak_host_rss_bytes=own_peak or meter.peak_host_rss_bytes, peak_accelerator_bytes=peak_accelerator_bytes(),
                  peak_accelerator_nvml_bytes=meter.peak_accelerator_nvml_bytes,
                  versions=versions(), code=code_version(), finished_at=_now())
    return record


def child_main(cell_dir: str) -> None:
    """Entry point of a cell's process: ``python -m boxbench.benchmarks.runner CELL_DIR``."""
    spec = json.loads((Path(cell_dir) / "cell.json").read_text())
    cell = Cell.from_json(spec["cell"])
    _emit({"event": "result", "record": execute_cell(cell, Path(cell_dir), spec.get("plugins", []))})


if __name__ == "__main__":
    child_main(sys.argv[1])
