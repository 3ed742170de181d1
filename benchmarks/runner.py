"""Run a suite: each cell in its own process, one JSON line per finished cell, resumable.

The driver: this process owns ``RUN_DIR/results.jsonl`` (``results.ResultStore``, rewritten
atomically) and draws the progress bars; an executor (``executors``) starts each cell's process,
which runs ``cell.execute_cell`` (load, tune, evaluate) and reports progress and its record on stdout
as JSON lines. A cell that fails records ``status: "error"`` with a one-line reason and the suite
goes on; resume skips cells that are ok. Imports only downward: runner → executors → forkserver → cell.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

from boxbench.backends import BACKENDS
from boxbench.benchmarks.cell import error_record, now
from boxbench.benchmarks.compute import record_spend
from boxbench.benchmarks.executors import EXECUTORS
from boxbench.benchmarks.suite import Cell, Suite, caps_of
from boxbench.benchmarks.tracking import Tracker
from boxbench.core.errors import UserError
from boxbench.core.results import RESULTS, Record, ResultStore


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """One runner per RUN_DIR at a time."""
    with open(run_dir / ".lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"--out {run_dir}: another boxbench run is writing there; wait for it or use another folder") from None
        yield


def prepare_run_dir(run_dir: Path) -> None:
    """Create the run folder (its parent must exist) and check that it can be written and read, before
    anything is written: a UserError naming ``--out`` when it is a file, its parent is missing, it is
    read-only or full, or its results were written by a newer boxbench."""
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"--out {run_dir}: is a file, not a folder; give a folder for the run (created if missing)")
    if not run_dir.exists() and not run_dir.parent.is_dir():
        raise UserError(f"--out {run_dir}: its parent folder {run_dir.parent} does not exist; create it (mkdir -p {run_dir.parent}) "
                        f"or give another --out")
    probe = run_dir if run_dir.is_dir() else run_dir.parent
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as e:
        raise UserError(f"--out {run_dir}: cannot write in {probe} ({e.strerror or e}); give a folder you can write to") from None
    if (run_dir / RESULTS).is_file():
        ResultStore(run_dir).read()  # a newer schema or a damaged record: one line, before anything is written
    try:
        run_dir.mkdir(exist_ok=True)
    except OSError as e:
        raise UserError(f"--out {run_dir}: cannot create the folder ({e.strerror or e}); pick a writable path") from None


def drop_partial(run_dir: Path, suite: Suite, store: ResultStore) -> None:
    """After Ctrl-C or SIGTERM: the folders of this suite's cells that have no record (the one that was
    running, or one that finished as the signal came, before its record landed) go; they run again."""
    recorded = {r.cell_id for r in store.read()}
    for cell in suite.cells:
        folder = run_dir / "cells" / cell.cell_id
        if cell.cell_id not in recorded and folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)


def run_suite(suite: Suite, run_dir: Path, plugins: list[str] | None = None, quiet: bool = False, *,
              executor: str = "local", address: str | None = None, tracker: Tracker | None = None) -> dict[str, int]:
    """Run every cell not already ok in ``run_dir`` through ``executor`` (``local``: one after another;
    ``ray``: spread over a Ray cluster at ``address``); returns counts of ok / error / skipped.

    This process is the only writer of ``results.jsonl``: a record lands as its cell finishes, in
    any order. A cell waits for its source cell (transfer); a cell whose process died is run again
    up to ``settings.max_retries`` times, and is recorded once, with its ``attempts``."""
    from tqdm import tqdm

    prepare_run_dir(run_dir)
    with run_lock(run_dir):
        store = ResultStore(run_dir)
        meta = {"name": suite.name, "suite": suite.raw, "cell_keys": suite.all_keys, **({"seed_plans": suite.plans} if suite.plans else {})}
        (run_dir / "suite.json").write_text(json.dumps(meta, indent=2, default=str))
        records = store.read()  # once: the ok, the capped and the tracker's finished cells
        ok = {r.cell_key for r in records if r.status == "ok"}
        capped = {r.cell_key: r.extra.get("caps") for r in records if r.status == "capped"}
        todo = [c for c in suite.cells if c.key not in ok and not (c.key in capped and capped[c.key] == caps_of(c))]
        runner = EXECUTORS.get(executor)(run_dir, plugins or [], quiet, **({"address": address} if executor != "local" else {}))
        line = runner.start()
        if line and not quiet:
            print(line, flush=True)
        bar = tqdm(total=len(suite.cells), initial=len(suite.cells) - len(todo), desc=f"suite {suite.name}", unit="cell",
                   position=0, disable=quiet, dynamic_ncols=True)
        drive = _Drive(store, runner, bar, quiet, ok, waiting=list(todo), tracker=tracker)
        runner.precheck = drive.cannot_start
        if tracker is not None:  # the parent run, and the suite's finished cells not logged yet
            mine = set(suite.all_keys)
            tracker.begin(suite.name, [r for r in records if r.cell_key in mine])
        drive.counts["skipped"] = len(suite.cells) - len(todo)
        try:
            while drive.waiting or runner.busy():
                drive.submit_ready()
                if runner.busy():
                    drive.collect_one()
        except KeyboardInterrupt:
            runner.cancel()  # running cells stop; finished ones are in results.jsonl already
            drop_partial(run_dir, suite, store)
            raise
        finally:
            bar.close()
            runner.close()
    return drive.counts


# a record's field saying a cache could not be used, and the run's one warning about it
CACHE_WARNINGS = {"request_cache_error": "the request cache could not be used",
                  "model_cache_error": "a dequantised model could not be cached"}


@dataclasses.dataclass
class _Drive:
    """One run's loop state: the cells waiting, those running, each cell's attempts, the counts."""

    store: ResultStore
    runner: Any  # an Executor
    bar: Any  # the tqdm bar
    quiet: bool
    ok: set[str]
    waiting: list[Cell]
    active: set[str] = dataclasses.field(default_factory=set)
    attempts: dict[str, int] = dataclasses.field(default_factory=dict)
    failed_models: set[str] = dataclasses.field(default_factory=set)  # models with a failed cell: preflight their next ones
    warned: set[str] = dataclasses.field(default_factory=set)  # warnings already printed this run
    tracker: Tracker | None = None
    counts: dict[str, int] = dataclasses.field(default_factory=lambda: {"ok": 0, "error": 0, "capped": 0, "skipped": 0})

    def land(self, fields: dict[str, Any]) -> None:
        """Record a finished cell (its record's fields, as the cell process or the queue gave them)."""
        record = Record.from_json(fields, "the cell's record")
        if record.status == "error":
            self.failed_models.add(json.dumps(record.model_spec, sort_keys=True))
        for field, what in CACHE_WARNINGS.items():
            if record.extra.get(field) and field not in self.warned:
                self.warned.add(field)
                print(f"boxbench: warning: {what} ({record.extra[field]}); cells go on without it", file=sys.stderr, flush=True)
        _land(self.store, record, self.counts, self.bar, self.quiet)
        if self.tracker is not None:
            self.tracker.cell(record)

    def cannot_start(self, cell: Cell) -> str | None:
        """After a cell of this model failed: its backend's quick check (a dead server is one connection
        refused, not a cell's load with its retries and timeouts)."""
        if json.dumps(cell.model.to_json(), sort_keys=True) not in self.failed_models:
            return None
        return BACKENDS.get(cell.model.backend).preflight(cell.model.options)

    def submit_ready(self) -> None:
        """Submit what is ready; a transfer cell after its source, a cell under the run's caps alone."""
        for cell in list(self.waiting):
            if cell.source is not None and cell.source.key not in self.ok:
                if cell.source.key in self.active or any(c.key == cell.source.key for c in self.waiting):
                    continue
                self.waiting.remove(cell)
                self.land(error_record(cell, f"its source cell {cell.source.cell_id} did not finish ok; nothing to transfer", now()))
                continue
            left = budget_left(cell, self.store.read) if _run_capped(cell) else None
            if left is not None and self.active:  # under the run's caps, a cell starts with what the others left
                break
            self.waiting.remove(cell)
            if left is not None and any(v <= 0 for v in left.values()):
                record = error_record(cell, f"the run's cap is spent ({', '.join(f'{k} left {v:g}' for k, v in left.items())}); "
                                            f"raise settings.suite_max_cost / suite_max_tokens to go on", now())
                record.update(status="capped", caps=caps_of(cell), capped_in="queue")
                self.land(record)
                continue
            if left is not None:  # the cell may spend what the run's caps leave
                cell = dataclasses.replace(cell, budget_left=left)
            self.active.add(cell.key)
            self.attempts[cell.key] = self.attempts.get(cell.key, 0) + 1
            self.runner.submit(cell)

    def collect_one(self) -> None:
        """Wait for the next finished cell: land its record, or queue it again when its process died and retries are left."""
        from tqdm import tqdm

        cell, record = self.runner.next_done()
        self.active.discard(cell.key)
        if record.pop("retryable", False) and self.attempts[cell.key] <= cell.settings.max_retries:
            if not self.quiet:
                tqdm.write(f"retry {cell.cell_id} (attempt {self.attempts[cell.key] + 1}): {record['error']}")
            self.waiting.insert(0, cell)
            return
        record["attempts"] = self.attempts[cell.key]
        if record["status"] == "ok":
            self.ok.add(cell.key)
        self.land(record)


def _run_capped(cell: Cell) -> bool:
    return cell.settings.suite_max_cost is not None or cell.settings.suite_max_tokens is not None


def budget_left(cell: Cell, records: Callable[[], list[Record]]) -> dict[str, float] | None:
    """What the run's caps (``suite_max_cost`` / ``suite_max_tokens``) leave after the API spending
    of every record in the run folder; None without such caps. Under such caps the runner starts
    one cell at a time (any executor), so that each starts with what the others left."""
    max_cost, max_tokens = cell.settings.suite_max_cost, cell.settings.suite_max_tokens
    if max_cost is None and max_tokens is None:
        return None
    spent = [record_spend(r) for r in records()]  # read only here: a run without caps never rereads its results
    left: dict[str, float] = {}
    if max_cost is not None:
        left["cost"] = max_cost - sum(c for c, _ in spent)
    if max_tokens is not None:
        left["tokens"] = max_tokens - sum(t for _, t in spent)
    return left


def _land(store: ResultStore, record: Record, counts: dict[str, int], bar: Any, quiet: bool) -> None:
    """Write a finished cell's record and say so: one line per cell."""
    from tqdm import tqdm

    store.put(record)
    counts[record.status] += 1
    bar.update(1)
    if not quiet:
        if record.status == "ok":
            tqdm.write(f"ok    {record.cell_id}  accuracy {100 * (record.accuracy or 0.0):.1f}  "
                       f"tune {record.tune_wall_s or 0:.0f} s  eval {record.eval_wall_s or 0:.0f} s")
        else:
            tqdm.write(f"error {record.cell_id}: {record.error}")
