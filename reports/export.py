"""``boxbench export RUN --format parquet|csv|jsonl [--rows]``: a run as a table for pandas, polars,
a spreadsheet — one row per cell, or with ``rows`` one row per test example.

The columns, their types and units are ``CELL_COLUMNS`` and ``ROW_COLUMNS`` (README "Export" prints
them); a field a cell did not measure is empty (null), never 0. Nested values (params, the label
scores) are JSON text, so every format holds the same table.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from boxbench.core.results import Record
from boxbench.core.errors import UserError
from boxbench.core.results import ResultStore, read_predictions

FORMATS = ("parquet", "csv", "jsonl")

# (column, type, unit or meaning): type is one of str, int, float, bool
CELL_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("cell_key", "str", "the cell's key (method, params, model, data, seed, limits, settings hashed)"),
    ("cell_id", "str", "folder name under cells/"),
    ("method", "str", "method name"), ("label", "str", "the suite's label for the method entry"),
    ("access", "str", "black | grey | white"), ("family", "str", "access/sub-class in the survey's taxonomy"),
    ("model", "str", "the model's display name"), ("backend", "str", "hf | vllm | openai | ..."),
    ("dataset", "str", "dataset name"), ("seed", "int", "training seed"),
    ("status", "str", "ok | error | capped"), ("error", "str", "one-line reason (error, capped)"),
    ("protocol", "str", "logprob | generate"),
    ("accuracy", "float", "fraction 0-1"), ("accuracy_low", "float", "95 % Wilson interval, low (fraction)"),
    ("accuracy_high", "float", "95 % Wilson interval, high (fraction)"), ("macro_f1", "float", "fraction 0-1"),
    ("n", "int", "test examples scored"), ("invalid_rate", "float", "fraction of answers naming no label"),
    ("tune_wall_s", "float", "seconds"), ("eval_wall_s", "float", "seconds"), ("load_wall_s", "float", "seconds"),
    ("peak_host_rss_bytes", "int", "bytes"), ("peak_accelerator_bytes", "int", "bytes (torch's peak allocated)"),
    ("model_calls", "int", "calls to every model the cell loaded"), ("prompt_tokens", "int", "tokens"),
    ("completion_tokens", "int", "tokens"), ("tune_flops", "float", "FLOPs (estimate, benchmarks/compute.py)"),
    ("eval_flops", "float", "FLOPs (estimate)"), ("tune_cost", "float", "money (the price's currency; API cells)"),
    ("eval_cost", "float", "money"), ("started_at", "str", "ISO 8601, UTC"), ("finished_at", "str", "ISO 8601, UTC"),
    ("params", "str", "the method's params, JSON"), ("commit", "str", "boxbench's git commit"),
)
ROW_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("cell_id", "str", "the cell (join with the cell table)"), ("method", "str", ""), ("label", "str", ""),
    ("access", "str", ""), ("model", "str", ""), ("dataset", "str", ""), ("seed", "int", ""),
    ("row", "int", "position in the test set"), ("text", "str", "the test input"), ("gold", "int", "label index"),
    ("pred", "int", "predicted label index (null: the answer named no label)"), ("correct", "bool", "pred == gold"),
    ("answer", "str", "the generated answer (black cells)"), ("scores", "str", "each label's log-prob, JSON (grey/white cells)"),
    ("prompt_sha256", "str", "the prompt's sha256, first 16 hex digits"),
)


def cell_row(r: Record) -> dict[str, Any]:
    """A record as one flat row of typed columns (the cell table; the tracker's metrics are its numbers)."""
    low, high = r.accuracy_ci95 if r.accuracy_ci95 else (None, None)
    code = r.extra.get("code") or {}
    return {"cell_key": r.cell_key, "cell_id": r.cell_id, "method": r.method, "label": r.label, "access": r.access,
            "family": r.family, "model": r.model, "backend": (r.model_spec or {}).get("backend"),
            "dataset": r.dataset, "seed": r.seed, "status": r.status, "error": r.error, "protocol": r.protocol,
            "accuracy": r.accuracy, "accuracy_low": low, "accuracy_high": high, "macro_f1": r.macro_f1,
            "n": r.n, "invalid_rate": r.invalid_rate, "tune_wall_s": r.tune_wall_s,
            "eval_wall_s": r.eval_wall_s, "load_wall_s": r.load_wall_s,
            "peak_host_rss_bytes": r.peak_host_rss_bytes, "peak_accelerator_bytes": r.peak_accelerator_bytes,
            "model_calls": r.model_calls, "prompt_tokens": r.prompt_tokens,
            "completion_tokens": r.completion_tokens, "tune_flops": r.tune_flops, "eval_flops": r.eval_flops,
            "tune_cost": r.extra.get("tune_cost"), "eval_cost": r.extra.get("eval_cost"), "started_at": r.started_at,
            "finished_at": r.finished_at, "params": json.dumps(r.params or {}, sort_keys=True),
            "commit": code.get("commit") if isinstance(code, dict) else None}


def _example_rows(run_dir: Path, r: Record) -> list[dict[str, Any]]:
    out = []
    for i, x in enumerate(read_predictions(run_dir, r.cell_id) or []):
        out.append({"cell_id": r.cell_id, "method": r.method, "label": r.label, "access": r.access, "model": r.model,
                    "dataset": r.dataset, "seed": r.seed, "row": i, "text": x.get("text"), "gold": x.get("label"),
                    "pred": x.get("pred"), "correct": x.get("pred") == x.get("label"), "answer": x.get("answer"),
                    "scores": json.dumps(x["scores"]) if "scores" in x else None, "prompt_sha256": x.get("prompt_sha256")})
    return out


def frame(run_dir: Path, rows: bool = False) -> Any:
    """The run as a pandas DataFrame with the documented columns and nullable types."""
    import pandas as pd

    records = ResultStore.existing(run_dir, "RUN").read()
    columns = ROW_COLUMNS if rows else CELL_COLUMNS
    data = [x for r in records if r.status == "ok" for x in _example_rows(run_dir, r)] if rows else [cell_row(r) for r in records]
    df = pd.DataFrame(data, columns=[c for c, _, _ in columns])
    dtypes = {"str": "string", "int": "Int64", "float": "Float64", "bool": "boolean"}
    return df.astype({c: dtypes[t] for c, t, _ in columns})


def export(run_dir: Path, fmt: str, out: Path | None = None, rows: bool = False) -> tuple[Path, int]:
    """Write the run's table in ``fmt`` to ``out`` (default RUN/cells.FMT or RUN/rows.FMT); returns the
    path and the number of rows written."""
    if fmt not in FORMATS:
        raise UserError(f"--format: {fmt!r} is not one of {', '.join(FORMATS)}")
    df = frame(run_dir, rows)
    path = out or run_dir / f"{'rows' if rows else 'cells'}.{fmt}"
    if fmt == "parquet":
        try:
            df.to_parquet(path, index=False)
        except ImportError as e:
            raise UserError(f"--format parquet needs pyarrow ({e}); pip install pyarrow, or use --format csv") from None
    elif fmt == "csv":
        df.to_csv(path, index=False)
    else:
        df.to_json(path, orient="records", lines=True, force_ascii=False)
    return path, len(df)
