"""`boxbench export`: a real run (the smoke suite) as typed tables pandas and polars read back."""

from __future__ import annotations

import json

import pytest

from helpers import records_of, run_cli
from boxbench.reports.export import CELL_COLUMNS, ROW_COLUMNS


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_export_one_row_per_cell_and_per_example(smoke_run, tmp_path, fmt):
    import pandas as pd
    import polars as pl

    run, proc = smoke_run
    assert proc.returncode == 0, proc.stderr
    recs = {r["cell_id"]: r for r in records_of(run)}
    cells, rows = tmp_path / f"cells.{fmt}", tmp_path / f"rows.{fmt}"
    out = run_cli("export", str(run), "--format", fmt, "--to", str(cells))
    assert out.returncode == 0 and out.stdout.strip() == f"wrote {cells} (4 cell rows)", out.stderr
    out = run_cli("export", str(run), "--format", fmt, "--rows", "--to", str(rows))
    n = sum(r["n"] for r in recs.values())
    assert out.returncode == 0 and out.stdout.strip() == f"wrote {rows} ({n} test-example rows)", out.stderr
    read = {"parquet": pd.read_parquet, "csv": pd.read_csv, "jsonl": lambda p: pd.read_json(p, lines=True)}[fmt]
    df, ex = read(cells), read(rows)
    assert list(df.columns) == [c for c, _, _ in CELL_COLUMNS] and list(ex.columns) == [c for c, _, _ in ROW_COLUMNS]
    for _, c in df.iterrows():
        r = recs[c["cell_id"]]
        assert c["accuracy"] == pytest.approx(r["accuracy"]) and c["seed"] == r["seed"] and c["n"] == r["n"]
        assert json.loads(c["params"]) == r["params"] and c["backend"] == "hf"
    # per example: the record's correctness string, example by example
    for cell_id, group in ex.groupby("cell_id"):
        assert "".join("1" if x else "0" for x in group.sort_values("row")["correct"]) == recs[cell_id]["correct"]
    if fmt == "parquet":  # typed columns, as the schema says, for polars too
        schema = pl.read_parquet(cells).schema
        assert schema["seed"] == pl.Int64 and schema["accuracy"] == pl.Float64 and schema["method"] == pl.String
        assert pl.read_parquet(rows).schema["correct"] == pl.Boolean


def test_export_errors_are_one_line(tmp_path):
    out = run_cli("export", str(tmp_path), "--format", "csv")
    assert out.returncode == 2 and out.stderr.strip() == (
        f"boxbench: error: RUN: {str(tmp_path)!r} has no results.jsonl; give a run folder (boxbench run SUITE --out {tmp_path})")


def test_compare_matches_what_cells_measure_and_guards_ci(smoke_run, tmp_path):
    """`boxbench compare` on real runs: a run against itself moves nothing; AG News zero-shot read
    through log-probs (grey) against the same prompts generated and parsed (black), matched on the
    same rows by --by, is a change --fail-on-change catches."""
    run, _ = smoke_run
    same = run_cli("compare", str(run), str(run), "--fail-on-change", "--out", str(tmp_path / "same"))
    assert same.returncode == 0, same.stdout + same.stderr
    assert "4 matched cells, 0 changed significantly" in same.stdout
    rows = [line for line in same.stdout.splitlines() if line.startswith("| ") and ("| sst2 |" in line or "| agnews |" in line)]
    assert len(rows) == 4 and all("| 100.0 |" in line for line in rows)  # every prediction the same
    assert (tmp_path / "same" / "compare.md").is_file() and (tmp_path / "same" / "compare.html").is_file()
    suite = "models: [smollm2-135m]\ndatasets: [agnews]\nmethods: [{{name: zero_shot, access: {access}}}]\nlimits: {{test: 24}}\n"
    for access in ("grey", "black"):
        (tmp_path / f"{access}.yaml").write_text(suite.format(access=access))
        proc = run_cli("run", str(tmp_path / f"{access}.yaml"), "--out", str(tmp_path / access), "--quiet")
        assert proc.returncode == 0, proc.stderr
    out = run_cli("compare", str(tmp_path / "grey"), str(tmp_path / "black"), "--by", "dataset,seed,test", "--fail-on-change")
    assert out.returncode == 1 and "1 matched cells, 1 changed significantly" in out.stdout, out.stdout + out.stderr
    assert "▼" in out.stdout  # black (B) below grey (A)
    bad = run_cli("compare", str(run), str(run), "--by", "colour")
    assert bad.returncode == 2 and bad.stderr.strip().startswith("boxbench: error: --by: unknown field 'colour'; choose from method,")
