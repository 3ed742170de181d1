"""How long a suite will take, from runs already made (``boxbench check SUITE --estimate RUN_DIR``).

A cell's estimate comes from a finished record of the same configuration: same method, access,
params, model (and source model, for a transfer cell) and dataset; the seed and the run do not
matter. A record written before a param existed (a method gained an option) matches on the params
it has: its budgets are the same, only the new option's default was not yet there to record. Its load and tuning seconds are taken as they were; its evaluation seconds are scaled by
the ratio of test rows (the cell's ``limits.test``, or the record's full test split). A cell with no
such record is counted as unknown, never guessed: a study's budgets are meant to be the calibrated
ones, so every study cell should find its calibration point.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from boxbench.benchmarks.suite import Cell
from boxbench.core.method import params_json
from boxbench.core.results import Record, ResultStore


def _config(method: str, access: str, params: dict[str, Any], model: str, source: str | None, dataset: str) -> str:
    return json.dumps([method, access, params, model, source, dataset], sort_keys=True, default=str)


def _cell_config(c: Cell) -> str:
    src = c.source.model.display if c.source is not None else None
    return _config(c.method, c.access.name, params_json(c.params), c.model.display, src, c.dataset["name"])


def _record_config(r: Record, params: dict[str, Any] | None = None) -> str:
    """``r``'s configuration (``params``: in place of its own)."""
    src = r.source_model if r.source_model != r.model else None
    return _config(r.method, r.access, r.params if params is None else params, r.model, src, r.dataset)


@dataclass
class Estimate:
    """One cell's expected seconds (None: no record to go by) and the records it came from."""

    cell: Cell
    seconds: float | None
    n_records: int


def estimate(cells: list[Cell], run_dirs: list[Path]) -> list[Estimate]:
    """Each cell's expected wall seconds (load + tuning + evaluation scaled to its test rows),
    the mean over the matching ok records of ``run_dirs``."""
    by_config: dict[str, list[Record]] = {}
    for d in run_dirs:
        for r in ResultStore.existing(d, "--estimate").read():
            if r.status == "ok" and r.tune_wall_s is not None:
                by_config.setdefault(_record_config(r), []).append(r)
    older = [r for rs in by_config.values() for r in rs]
    out = []
    for c in cells:
        recs = by_config.get(_cell_config(c), []) or [r for r in older if _older_match(r, c)]
        if not recs:
            out.append(Estimate(c, None, 0))
            continue
        secs = []
        for r in recs:
            n_rec = r.n or 1
            n_cell = c.limits.get("test") or (r.sizes or {}).get("test_total") or n_rec
            secs.append(r.wall_seconds(n_cell / n_rec))
        out.append(Estimate(c, statistics.fmean(secs), len(recs)))
    return out


def _older_match(r: Record, c: Cell) -> bool:
    """``r`` is of ``c``'s configuration on every param it recorded, ``c`` having more (see module doc)."""
    params = params_json(c.params)
    if not set(r.params) < set(params) or any(params[k] != v for k, v in r.params.items()):
        return False
    return _record_config(r, params) == _cell_config(c)


def tally(est: list[Estimate]) -> tuple[float, int]:
    """(known seconds, cells with no estimate)."""
    return sum(e.seconds for e in est if e.seconds is not None), sum(e.seconds is None for e in est)


def hours(seconds: float) -> str:
    """'2 h 05 min' or '7 min'."""
    m = round(seconds / 60)
    return f"{m // 60} h {m % 60:02d} min" if m >= 60 else f"{m} min"
