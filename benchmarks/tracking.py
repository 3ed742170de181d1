"""Experiment tracking: ``boxbench run ... --track mlflow[:URI]`` logs the run to the tracker a team
already uses — the run as a parent, each cell as a child run (params, settings, metrics, tags, the
cell's predictions; the report at the end).

``results.jsonl`` stays the source of truth: a tracker that is down, slow or refuses a call costs at
most one bounded wait (``TIMEOUT_S``, no retries), is warned about once, and is then left alone for
the rest of the run. A resumed run logs into the same parent and never logs a cell twice: what was
logged is kept in ``RUN_DIR/tracking.json``; cells finished before tracking began are logged when it
begins. Trackers are plugins (``TRACKERS``; entry-point group ``boxbench.trackers``).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from boxbench.core.errors import UserError
from boxbench.core.registry import Registry
from boxbench.core.results import PREDICTIONS, Record
from boxbench.reports.export import cell_row

TIMEOUT_S = 5
STATE = "tracking.json"


class Tracker:
    """Where a run's cells are logged besides results.jsonl. ``spec``: what follows ``NAME:`` in --track."""

    name = "tracker"

    def __init__(self, spec: str, run_dir: Path) -> None:
        self.spec, self.run_dir = spec, run_dir
        self.broken: str | None = None  # why the tracker was given up (then every call is a no-op)
        path = run_dir / STATE
        self.state: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}

    def begin(self, suite_name: str, records: list[Record]) -> None:
        """Start (or resume) the run's parent; log the finished cells not logged yet."""
        self._guard(self._begin, suite_name)
        for r in records:
            self.cell(r)

    def cell(self, record: Record) -> None:
        """Log a finished ok/capped cell once (an error cell is retried by the next run: logged when it finishes)."""
        if record.status == "error" or record.cell_key in self.state.get("logged", {}):
            return
        self._guard(self._cell, record)

    def end(self, report: Path | None = None) -> None:
        self._guard(self._end, report)

    def _guard(self, fn: Any, *args: Any) -> None:
        if self.broken:
            return
        try:
            fn(*args)
        except Exception as e:  # the tracker never fails the benchmark: warn once, go on without it
            self.broken = f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:200]}"
            print(f"boxbench: warning: {self.name} tracking stopped ({self.broken}); results.jsonl has every cell",
                  file=sys.stderr, flush=True)

    def _save(self) -> None:
        (self.run_dir / STATE).write_text(json.dumps(self.state, indent=2))

    def _begin(self, suite_name: str) -> None:
        raise NotImplementedError

    def _cell(self, record: Record) -> None:
        raise NotImplementedError

    def _end(self, report: Path | None) -> None:
        raise NotImplementedError


_METRIC_NAMES = {"accuracy_low": "accuracy_ci95_low", "accuracy_high": "accuracy_ci95_high"}
_NOT_METRICS = {"seed", "n"}  # numbers that are parameters of the cell, not its measurements


def _metrics(r: Record) -> dict[str, float]:
    """The cell's measurements: the numeric columns of its export row (``reports.export.cell_row``)."""
    return {_METRIC_NAMES.get(k, k): float(v) for k, v in cell_row(r).items()
            if k not in _NOT_METRICS and isinstance(v, (int, float)) and not isinstance(v, bool)}


def _params(r: Record) -> dict[str, str]:
    out = {"method": r.method, "label": r.label, "access": r.access, "model": r.model, "dataset": r.dataset,
           "seed": str(r.seed), "backend": str((r.model_spec or {}).get("backend"))}
    out.update({f"params.{k}": json.dumps(v)[:500] for k, v in (r.params or {}).items()})
    out.update({f"settings.{k}": json.dumps(v)[:500] for k, v in (r.settings or {}).items()})
    return out


class MlflowTracker(Tracker):
    """MLflow through its client API (no global active run): ``spec`` is a tracking URI (any server,
    ``sqlite:...``, ``file:...``); empty: a local store in ``mlruns/`` of the working directory (an
    SQLite database and the artifacts beside it: MLflow 3 refuses new plain-file stores unless
    ``MLFLOW_ALLOW_FILE_STORE`` is set, which an explicit ``file:`` URI here does). The experiment is
    named after the suite."""

    name = "mlflow"

    def __init__(self, spec: str, run_dir: Path) -> None:
        super().__init__(spec, run_dir)
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(TIMEOUT_S))  # bounded: one wait, no retries
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        if importlib.util.find_spec("mlflow") is None:
            raise UserError("--track mlflow: mlflow is not installed; pip install -e '.[track]' (or pip install mlflow)")
        for name in ("mlflow", "alembic"):  # its INFO lines (database set-up, ...) stay out of the CLI
            logging.getLogger(name).setLevel(logging.WARNING)
        self.local = Path.cwd() / "mlruns"
        self.uri = spec or self.state.get("uri") or f"sqlite:///{self.local / 'mlflow.db'}"
        if self.uri.startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client: Any = None

    def _begin(self, suite_name: str) -> None:
        from mlflow import MlflowClient

        if self.uri == f"sqlite:///{self.local / 'mlflow.db'}":
            self.local.mkdir(exist_ok=True)
        self.client = MlflowClient(tracking_uri=self.uri)
        if self.state.get("uri") == self.uri and self.state.get("parent"):
            return  # resumed: the same parent
        exp = self.client.get_experiment_by_name(f"boxbench/{suite_name}")
        where = (self.local / "artifacts").as_uri() if self.uri.startswith("sqlite:") else None
        exp_id = exp.experiment_id if exp else self.client.create_experiment(f"boxbench/{suite_name}", artifact_location=where)
        parent = self.client.create_run(exp_id, run_name=self.run_dir.name, tags={"boxbench.run_dir": str(self.run_dir.resolve())})
        self.state = {"uri": self.uri, "experiment": exp_id, "parent": parent.info.run_id, "logged": {}}
        self._save()

    def _cell(self, r: Record) -> None:
        from mlflow.entities import Metric, Param, RunTag

        code: dict[str, Any] = r.extra["code"] if isinstance(r.extra.get("code"), dict) else {}
        tags = {"mlflow.parentRunId": self.state["parent"], "boxbench.cell_key": r.cell_key, "boxbench.status": r.status,
                "boxbench.access": r.access, "boxbench.family": str(r.family), "boxbench.commit": str(code.get("commit"))}
        run = self.client.create_run(self.state["experiment"], run_name=r.cell_id, tags=tags)
        rid = run.info.run_id
        self.client.log_batch(rid, metrics=[Metric(k, v, 0, 0) for k, v in _metrics(r).items()],
                              params=[Param(k, v) for k, v in _params(r).items()], tags=[RunTag(k, v) for k, v in tags.items()])
        preds = self.run_dir / "cells" / r.cell_id / PREDICTIONS
        if preds.is_file():
            self.client.log_artifact(rid, str(preds))
        self.client.set_terminated(rid, "FINISHED" if r.status == "ok" else "KILLED")
        self.state.setdefault("logged", {})[r.cell_key] = rid
        self._save()

    def _end(self, report: Path | None) -> None:
        if self.client is None:
            return
        for name in ("report.md", "report.html"):
            if report is not None and (report / name).is_file():
                self.client.log_artifact(self.state["parent"], str(report / name))
        self.client.set_terminated(self.state["parent"], "FINISHED")


TRACKERS: Registry[type[Tracker]] = Registry("tracker", {"mlflow": f"{__name__}:MlflowTracker"}, base=Tracker)


def make_tracker(spec: str, run_dir: Path) -> Tracker:
    """``NAME[:ARG]`` from --track: the tracker, or a one-line error naming the known ones."""
    name, _, arg = spec.partition(":")
    if name not in TRACKERS:
        raise UserError(f"--track: unknown tracker {name!r}; known: {', '.join(TRACKERS.names())}")
    return TRACKERS.get(name)(arg, run_dir)
