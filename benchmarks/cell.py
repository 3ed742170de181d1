"""What runs inside a cell's own process: load the model, tune, evaluate, check a fast path, and
print the record as the last JSON line on stdout (``python -m boxbench.benchmarks.cell CELL_DIR``,
or forked from the fork server). Only this module holds the raw backend: the method gets the view
of its access, the artifact the view of the cell's access (``Artifact.attach``)."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import random
import shutil
import sys
import traceback
from pathlib import Path
from typing import Any

from boxbench.backends import context, load_backend
from boxbench.backends.budget import Budget, CapReached
from boxbench.backends.context import CellContext
from boxbench.benchmarks import compute
from boxbench.benchmarks.datasets import load_splits, resolve
from boxbench.benchmarks.metering import Meter, code_version, device_info, peak_accelerator_bytes
from boxbench.benchmarks.suite import Cell, caps_of
from boxbench.core.errors import UserError, disk_full, no_space
from boxbench.core.evaluate import accuracy, evaluate, wilson
from boxbench.core.method import family_of, params_json
from boxbench.core.results import PREDICTIONS
from boxbench.core.registry import load_plugin_file
from boxbench.core.versions import versions
from boxbench.methods.registry import get_method, load_artifact


def error_record(cell: Cell, reason: str, started: str) -> dict[str, Any]:
    return {**base_record(cell), "status": "error", "error": reason, "started_at": started,
            "finished_at": now()}


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _emit(msg: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(msg, default=str) + "\n")
    sys.stdout.flush()


def base_record(cell: Cell) -> dict[str, Any]:
    """The fields every record has, whatever happened to the cell."""
    return {
        "cell_key": cell.key, "cell_id": cell.cell_id, "method": cell.method, "label": cell.label,
        "access": cell.access.name, "protocol": None, "model": cell.model.display, "model_spec": cell.model.to_json(),
        "dataset": cell.dataset["name"], "seed": cell.seed, "params": params_json(cell.params), "limits": cell.limits,
        "settings": cell.settings.to_json(), "accuracy": None, "macro_f1": None, "n": None, "invalid_rate": None,
        "tune_wall_s": None, "eval_wall_s": None, "load_wall_s": None, "peak_host_rss_bytes": None,
        "peak_accelerator_bytes": None, "model_calls": None, "prompt_tokens": None, "completion_tokens": None,
        "started_at": None, "finished_at": None, "versions": None, "device": None, "status": None, "error": None,
        "source_model": (cell.source or cell).model.display, "target_model": cell.model.display,
        "sweep": dict(cell.sweep) or None,
        **({"seed_plan": dict(cell.seed_plan)} if cell.seed_plan else {}),
    }


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    with contextlib.suppress(ImportError):
        import numpy as np

        np.random.seed(seed)
    import torch

    torch.manual_seed(seed)


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
    correct = "".join("1" if p == ex.label else "0" for ex, p in zip(test, predictions))
    digest = hashlib.sha256(json.dumps([[ex.text, ex.label] for ex in test], ensure_ascii=False).encode()).hexdigest()[:16]
    return {"accuracy_ci95": list(wilson(correct.count("1"), len(correct))), "correct": correct, "test_sha256": digest}


def _one_line(e: BaseException) -> str:
    """An unexpected exception as the record's one-line reason (type and first line)."""
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:300]}"


def exact_check(cell: Cell, twin: dict[str, Any], device: str, artifact: Any, *, task: Any, test: list[Any],
                predictions: list[int | None]) -> dict[str, Any]:
    """A fast-path cell's accuracy difference: its artifact evaluated again, on the first
    ``settings.exact_check`` test examples, through the exact model it stands for (the spec with
    ``twin``'s options) on the ``device`` the fast model ran on, at the cell's access; the two
    models' predictions compared."""
    import dataclasses

    n = min(cell.settings.exact_check, len(test))
    spec = dataclasses.replace(cell.model, options={**cell.model.options, **twin})
    exact = load_backend(spec, device=device, dtype=cell.settings.dtype, batch_size=cell.settings.batch_size)
    ref = evaluate(artifact, artifact.attach(exact.view(cell.access)), task, test[:n], max_new_tokens=cell.settings.max_new_tokens)
    fast = accuracy([e.label for e in test[:n]], predictions[:n])
    return {"n": n, "exact_options": twin, "accuracy": fast, "exact_accuracy": ref["accuracy"], "accuracy_delta": fast - ref["accuracy"],
            "agreement": sum(a == b for a, b in zip(predictions[:n], ref["predictions"])) / n if n else 0.0}


class CellRun:
    """One cell in this process, step by step (``execute_cell`` runs them in order): ``prepare`` (the
    method, its params, the data), ``load`` (the model and the two views), ``tune`` (or, for a
    transfer cell, load the source's artifact), ``evaluate`` and, for a fast-path model, ``check_exact``.
    Each step adds to ``record``; the meter times each."""

    def __init__(self, cell: Cell, cell_dir: Path, meter: Any) -> None:
        self.cell, self.cell_dir, self.meter = cell, cell_dir, meter
        self.record = base_record(cell)
        self.record["started_at"] = now()
        self.own_peak = 0  # a fast path's own peak, read before its exact check loads the twin
        self.phase = "prepare"  # the step running now (a capped cell says where it stopped)

    def prepare(self, plugins: list[str]) -> None:
        cell = self.cell
        for plugin in plugins:
            load_plugin_file(plugin)
        _seed_everything(cell.seed)
        self.method_cls = get_method(cell.method)
        self.record["family"] = family_of(self.method_cls)
        if self.method_cls.version:  # which behaviour of the method ran (its key carries it too)
            self.record["method_version"] = self.method_cls.version
        self.params = cell.params
        self.splits = load_splits(cell.dataset, cell.limits.get("train"), cell.limits.get("dev"),
                                  cell.limits.get("test"), cell.settings.data_seed, cell.settings.evaluate_on)
        self.task = self.splits.task.with_overrides(**cell.dataset)
        self.record.update(data_source=self.splits.source, data_files=self.splits.files, sizes=self.splits.sizes,
                           provenance=resolve(cell.dataset).provenance)

    def load(self) -> None:
        cell = self.cell
        context.begin(CellContext(cache=cell.settings.cache,  # the ledger, cache switch and budget are this cell's own
                                  budget=Budget.capped(cell.settings.max_cost, cell.settings.max_tokens, cell.budget_left)))
        self.phase = "load"
        _emit({"event": "phase", "phase": "load"})
        with self.meter.phase("load"):
            self.backend = load_backend(cell.model, device=cell.settings.device, dtype=cell.settings.dtype,
                                        batch_size=cell.settings.batch_size)
        self.cell_view = self.backend.view(cell.access)  # access errors before any work
        # a transfer cell does not tune
        self.tune_view = self.backend.view(self.method_cls.access) if cell.source is None else None
        self.record["backend"] = self.backend.describe()
        self.record["device"] = device_info(self.backend.settings.get("device", "cpu"))

    def tune(self) -> None:
        cell = self.cell
        self.phase = "tune"
        _emit({"event": "phase", "phase": "tune"})
        with self.meter.phase("tune"):
            if cell.source is None:
                self.artifact = self.method_cls().tune(self.tune_view, task=self.task, train=self.splits.train, dev=self.splits.dev,
                                                       params=self.params, seed=cell.seed)
            else:  # a transfer cell: the source cell's artifact, unchanged, on this model
                self.artifact = load_artifact(self.cell_dir.parent / cell.source.cell_id / "artifact")
        if cell.source is None:
            self.artifact.save(self.cell_dir / "artifact")
        self.tune_usage = self.backend.usage.snapshot()
        self.tune_ledger = compute.snapshot()
        self.tune_spend = compute.spend_snapshot()

    def evaluate(self) -> None:
        cell, test, record = self.cell, self.splits.test, self.record
        total = len(test)
        self.phase = "eval"
        _emit({"event": "progress", "phase": "eval", "n": 0, "total": total})
        eval_view = self.artifact.attach(self.cell_view)  # an adapter, a soft prompt, a proxy ... (the same view or a wrapper's)
        if eval_view.access != cell.access:
            raise UserError(f"artifact {self.artifact.kind}: evaluates at {eval_view.access.name} access, the cell at {cell.access.name}")
        with self.meter.phase("eval"):
            res = evaluate(self.artifact, eval_view, self.task, test, max_new_tokens=cell.settings.max_new_tokens,
                           progress=lambda n: _emit({"event": "progress", "phase": "eval", "n": n, "total": total}))
        usage = eval_view.usage.snapshot()
        spent = compute.estimate(self.tune_ledger, compute.snapshot())
        money = compute.spend_estimate(self.tune_spend, compute.spend_snapshot())
        if money is not None:
            record.update(spend=money, tune_cost=money["tune_cost"], eval_cost=money["eval_cost"], cache_hits=money["cache_hits"])
        record["backend"] = eval_view.describe()  # again: some backends count things during the run
        record.update(self.artifact.extra_metrics([e.label for e in test], res))  # what only this artifact knows
        write_predictions(self.cell_dir / PREDICTIONS, test, res, res["prompts"])
        record.update(per_example_record(test, res["predictions"]))
        walls = self.meter.walls
        record.update({k: res[k] for k in ("accuracy", "macro_f1", "n", "invalid_rate", "protocol")},
                      tune_wall_s=walls["tune"], eval_wall_s=walls["eval"], load_wall_s=walls["load"], **usage,
                      tune_usage=self.tune_usage, eval_usage={k: usage[k] - self.tune_usage[k] for k in usage},
                      tune_flops=spent["tune_flops"], eval_flops=spent["eval_flops"], compute=spent,
                      **{k: v for k, v in self.artifact.stats.items() if k not in record},  # train_steps, trainable_params, ...
                      artifact=str((self.cell_dir.parent / (cell.source or cell).cell_id / "artifact").relative_to(self.cell_dir.parent.parent)),
                      status="ok")
        self.predictions = res["predictions"]
        del eval_view

    def check_exact(self) -> None:
        """A fast-path model (``Backend.exact_twin``): its artifact again on the exact twin (``exact_check``)."""
        twin = self.backend.exact_twin()
        if twin is None or not self.cell.settings.exact_check:
            return
        device = self.backend.settings.get("device", self.cell.settings.device)  # where the fast model ran
        del self.cell_view, self.tune_view, self.backend  # the fast model is done with: free it first
        self.own_peak = self.meter.peak_host_rss_bytes  # the cell's own; the check's twin model is not the fast path's cost
        _emit({"event": "phase", "phase": "exact_check"})
        with self.meter.phase("exact_check"):
            try:
                self.record["exact_check"] = exact_check(self.cell, twin, device, self.artifact, task=self.task, test=self.splits.test,
                                                         predictions=self.predictions)
            except Exception as e:  # the cell's own result stands; say why the check is missing
                self.record["exact_check"] = {"error": _one_line(e)}
        self.record["exact_check_wall_s"] = self.meter.walls["exact_check"]
        self.record["exact_check_peak_host_rss_bytes"] = self.meter.peak_host_rss_bytes


def execute_cell(cell: Cell, cell_dir: Path, plugins: list[str] | None = None) -> dict[str, Any]:
    """Load, tune, evaluate one cell in this process (``CellRun``'s steps) and return its record;
    a failing step makes an error record with a one-line reason (the traceback goes to the log)."""
    meter = Meter().start()
    run = CellRun(cell, cell_dir, meter)
    record = run.record
    try:
        run.prepare(plugins or [])
        run.load()
        run.tune()
        run.evaluate()
        run.check_exact()
    except CapReached as e:  # the method stopped at its cap: say how far it got and what it spent

        record.update(status="capped", error=str(e), capped_in=run.phase, caps=caps_of(cell),
                      usage_so_far=run.backend.usage.snapshot() if hasattr(run, "backend") else None,
                      spend=compute.spend_estimate(getattr(run, "tune_spend", None) or compute.spend_snapshot(),
                                                   compute.spend_snapshot()))  # capped in tuning: all of it is tuning's
    except UserError as e:
        record.update(status="error", error=str(e))
    except Exception as e:  # a failing cell must not stop the suite; the traceback goes to its log
        if disk_full(e):  # its partial files go first, so that its log and the next cell may still fit
            for partial in (cell_dir / "artifact", cell_dir / PREDICTIONS):
                shutil.rmtree(partial, ignore_errors=True) if partial.is_dir() else partial.unlink(missing_ok=True)
            record.update(status="error", error=str(no_space(e, "the cell's artifact and predictions", cell_dir)))
        else:
            record.update(status="error", error=_one_line(e))
        with contextlib.suppress(OSError):  # a log on a full disk must not cost the cell its record
            traceback.print_exc()
    finally:
        meter.stop()
    if context.current().cache_error:  # the cell ran without its request cache: why (the run warns once)
        record["request_cache_error"] = context.current().cache_error
    if context.current().model_cache_error:  # its model loaded, but could not be cached for the next load
        record["model_cache_error"] = context.current().model_cache_error
    record.update(peak_host_rss_bytes=run.own_peak or meter.peak_host_rss_bytes, peak_accelerator_bytes=peak_accelerator_bytes(),
                  peak_accelerator_nvml_bytes=meter.peak_accelerator_nvml_bytes,
                  versions=versions(), code=code_version(), finished_at=now())
    return record


def child_main(cell_dir: str) -> None:
    """Entry point of a cell's process: ``python -m boxbench.benchmarks.cell CELL_DIR``."""
    spec = json.loads((Path(cell_dir) / "cell.json").read_text())
    for plugin in spec.get("plugins", []):  # before the cell is read: a plugin method's params are its own class
        load_plugin_file(plugin)
    cell = Cell.from_json(spec["cell"])
    _emit({"event": "result", "record": execute_cell(cell, Path(cell_dir), spec.get("plugins", []))})


if __name__ == "__main__":
    child_main(sys.argv[1])
