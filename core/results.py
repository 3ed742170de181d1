"""``RUN_DIR/results.jsonl``: one JSON record per cell key, written atomically. The runner is its
only writer; the reports read it (and nothing else of the runner). Every record goes through
``Record`` on the way in and on the way out: typed common fields, a schema version, and the one
reader of every schema written so far."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
from pathlib import Path
from typing import Any, ClassVar

from boxbench.core.errors import UserError, no_space

RESULTS = "results.jsonl"
PREDICTIONS = "predictions.jsonl"  # RUN_DIR/cells/CELL_ID/: one JSON object per test example, in test order

SCHEMA = 2
"""The record schema this boxbench writes. 1: records before the field existed (read the same way; a
common field they lack, such as ``sweep`` before sweeps, reads as None). 2: ``schema`` in every record."""


@dataclasses.dataclass
class Record:
    """One cell's result. The fields every record has, whatever happened to the cell, are typed here
    (None until the cell measured them, or where a cell of an older boxbench did not); what only some
    cells measure — a method's artifact stats (``best_step``, ``prompt_text``, ...), ``extra_metrics``,
    a proposer's or an API's spend, retries — is in ``extra``, by name."""

    cell_key: str
    cell_id: str
    method: str
    label: str
    access: str  # black | grey | white: the access the cell ran at
    model: str  # the model's display name (the target's, for a transfer cell)
    dataset: str
    seed: int
    status: str  # ok | error | capped
    protocol: str | None = None  # logprob | generate
    model_spec: dict[str, Any] = dataclasses.field(default_factory=dict)
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    limits: dict[str, Any] = dataclasses.field(default_factory=dict)
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    accuracy: float | None = None  # a fraction, 0-1
    macro_f1: float | None = None
    n: int | None = None  # test examples scored
    invalid_rate: float | None = None
    tune_wall_s: float | None = None
    eval_wall_s: float | None = None
    load_wall_s: float | None = None
    peak_host_rss_bytes: int | None = None
    peak_accelerator_bytes: int | None = None
    model_calls: int | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    started_at: str | None = None  # ISO 8601, UTC
    finished_at: str | None = None
    versions: dict[str, str] | None = None
    device: dict[str, Any] | None = None
    error: str | None = None  # one line, for status error / capped
    source_model: str | None = None  # where a transfer cell's artifact was tuned
    target_model: str | None = None
    sweep: dict[str, Any] | None = None  # the swept values of a calibration cell
    family: str | None = None  # access/sub-class in the survey's taxonomy (grey/module, ...)
    backend: dict[str, Any] | None = None  # what the evaluating backend said of itself (``describe()``)
    data_source: str | None = None  # where the dataset's rows came from (local files, the hub)
    sizes: dict[str, Any] | None = None  # train / test rows (and test texts also in train)
    provenance: dict[str, Any] | None = None  # the task's source, licence, citation
    correct: str | None = None  # per test example, in order: "1" right, "0" wrong (the paired tests')
    test_sha256: str | None = None  # the scored test rows' hash: records on the same rows pair up
    accuracy_ci95: list[float] | None = None  # Wilson interval over the test examples, fractions
    tune_flops: float | None = None  # estimated compute (benchmarks/compute.py), every model of the cell
    eval_flops: float | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    schema: int = SCHEMA

    REQUIRED: ClassVar[tuple[str, ...]] = ("cell_key", "cell_id", "method", "label", "access", "model", "dataset", "seed", "status")
    _TYPES: ClassVar[dict[str, type | tuple[type, ...]]] = {"seed": int, "accuracy": (int, float), "n": int, "status": str, "cell_key": str}

    @classmethod
    def from_json(cls, d: dict[str, Any], where: str = "record") -> "Record":
        """A record of any schema so far, checked: a newer schema, a missing common field or a wrong
        type is a one-line UserError naming ``where``."""
        if not isinstance(d, dict):
            raise UserError(f"{where}: not a JSON object")
        schema = d.get("schema", 1)
        if not isinstance(schema, int) or schema > SCHEMA:
            raise UserError(f"{where}: written by a newer boxbench (results schema {schema}; this one reads up to {SCHEMA}); "
                            f"upgrade boxbench to read this run")
        missing = [k for k in cls.REQUIRED if k not in d]
        if missing:
            raise UserError(f"{where}: not a boxbench record (no {', '.join(missing)})")
        for key, kind in cls._TYPES.items():
            value = d.get(key)
            if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
                raise UserError(f"{where}.{key}: expected {getattr(kind, '__name__', 'a number')}, got {value!r}")
        common = {f.name for f in dataclasses.fields(cls)} - {"extra", "schema"}
        return cls(**{k: v for k, v in d.items() if k in common},
                   extra={k: v for k, v in d.items() if k not in common and k != "schema"}, schema=SCHEMA)

    def wall_seconds(self, eval_scale: float = 1.0) -> float:
        """The cell's measured seconds: model load + tuning + evaluation (``eval_scale``: the evaluation
        scaled to another number of test rows, as ``check --estimate`` does)."""
        return (self.load_wall_s or 0.0) + (self.tune_wall_s or 0.0) + (self.eval_wall_s or 0.0) * eval_scale

    def to_json(self) -> dict[str, Any]:
        """The JSON object results.jsonl holds: the common fields, then ``extra``, then ``schema``."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("extra", "schema")}
        return {**out, **self.extra, "schema": self.schema}


class ResultStore:
    """``results.jsonl``: one record per cell key, replaced in place when a cell is re-run."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / RESULTS

    @classmethod
    def existing(cls, run_dir: Path, where: str) -> "ResultStore":
        """The store of a finished or running run; a folder without results.jsonl is a one-line
        error naming ``where`` (the flag or argument that gave the folder)."""
        store = cls(Path(run_dir))
        if not store.path.is_file():
            raise UserError(f"{where}: {str(run_dir)!r} has no {RESULTS}; give a run folder "
                            f"(boxbench run SUITE --out {run_dir})")
        return store

    def _lines(self) -> list[dict[str, Any]]:
        """The JSON objects in the file as written (a line cut short by a crash mid-write is left out:
        its cell runs again)."""
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                if line.strip():
                    out.append(json.loads(line))
        return out

    def read(self) -> list[Record]:
        """Every record, typed and checked (``Record.from_json``: any schema so far)."""
        return [Record.from_json(d, f"{self.path}: record {i + 1}") for i, d in enumerate(self._lines())]

    def put(self, record: Record | dict[str, Any]) -> None:
        """Add ``record`` (checked as a ``Record``; replacing an earlier one with the same cell key)
        atomically. The other records are written back as they were read."""
        new = (record if isinstance(record, Record) else Record.from_json(record, "the cell's record")).to_json()
        records = [r for r in self._lines() if r.get("cell_key") != new["cell_key"]] + [new]
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        try:
            with open(tmp, "w") as f:
                for r in records:
                    f.write(json.dumps(r, ensure_ascii=False) + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as e:  # the old results.jsonl stays whole; no temporary file is left
            tmp.unlink(missing_ok=True)
            if e.errno == errno.ENOSPC:
                raise no_space(e, f"{RESULTS} (the record of cell {new['cell_id']})", self.path) from None
            raise
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomically(folder: Path, files: dict[str, bytes], what: str) -> None:
    """Write several files of ``folder`` all or nothing: each under a temporary name first, then all
    renamed into place. A write that fails (a full disk: one line naming the folder, ``what`` and the
    space left) leaves no temporary file and the previous files as they were."""
    staged: list[tuple[Path, Path]] = []
    try:
        for name, data in files.items():
            staged.append((folder / f".{name}.tmp{os.getpid()}", folder / name))
            with open(staged[-1][0], "wb") as f:
                f.write(data)
        for tmp, final in staged:
            os.replace(tmp, final)
    except OSError as e:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        if e.errno == errno.ENOSPC:
            raise no_space(e, what, folder) from None
        raise


def read_predictions(run_dir: Path, cell_id: str) -> list[dict[str, Any]] | None:
    """A cell's per-example rows (``text``, ``label``, ``pred``, ``prompt_sha256`` and ``scores`` or
    ``answer``; benchmarks/cell.py writes them), or None where the cell left none."""
    path = Path(run_dir) / "cells" / cell_id / PREDICTIONS
    if not path.is_file():
        return None
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
