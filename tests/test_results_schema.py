"""The typed record (core/results.py Record): every committed results.jsonl reads through it, a record
written by a newer boxbench or not a record at all is one line, and the store writes the current schema."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import run_cli

from boxbench.core.errors import UserError
from boxbench.core.results import SCHEMA, Record, ResultStore

COMMITTED = sorted((Path(__file__).resolve().parent.parent / "results").rglob("results.jsonl"))


def test_every_committed_record_reads_and_round_trips() -> None:
    """Schema-1 records (all committed ones) read as the current schema: every field they hold comes
    back unchanged; the only additions are a common field they lack (None) and ``schema``."""
    assert len(COMMITTED) >= 4
    n = 0
    for path in COMMITTED:
        for i, line in enumerate(path.read_text().splitlines()):
            if not line.strip():
                continue
            raw = json.loads(line)
            out = Record.from_json(raw, f"{path}:{i + 1}").to_json()
            assert {k: out[k] for k in raw} == raw, f"{path}:{i + 1}"
            assert all(out[k] is None for k in set(out) - set(raw) - {"schema"}) and out["schema"] == SCHEMA
            n += 1
    assert n >= 300


def test_the_typed_fields_are_typed_and_the_rest_is_extra() -> None:
    raw = json.loads(next(line for line in COMMITTED[0].read_text().splitlines() if line.strip()))
    rec = Record.from_json(raw)
    assert isinstance(rec.seed, int) and rec.status == "ok" and 0 <= rec.accuracy <= 1
    # the fields every finished cell writes are typed; what only some cells write stays in extra by name
    assert isinstance(rec.correct, str) and set(rec.correct) <= {"0", "1"} and len(rec.correct) == rec.n
    assert not {"correct", "accuracy", "family", "sizes", "test_sha256"} & set(rec.extra) and "data_files" in rec.extra


def test_a_newer_schema_or_a_non_record_is_one_line(tmp_path: Path) -> None:
    base = {"cell_key": "k", "cell_id": "c", "method": "zero_shot", "label": "zero_shot", "access": "black",
            "model": "m", "dataset": "sst2", "seed": 0, "status": "ok"}
    with pytest.raises(UserError, match=r"^r: written by a newer boxbench \(results schema 99; this one reads up to 2\); upgrade boxbench"):
        Record.from_json({**base, "schema": 99}, "r")
    with pytest.raises(UserError, match=r"^r: not a boxbench record \(no cell_key, seed\)$"):
        Record.from_json({k: v for k, v in base.items() if k not in ("cell_key", "seed")}, "r")
    with pytest.raises(UserError, match=r"^r.seed: expected int, got '0'$"):
        Record.from_json({**base, "seed": "0"}, "r")
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.jsonl").write_text(json.dumps({**base, "schema": 99}) + "\n")
    res = run_cli("report", str(run))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines() == [f"boxbench: error: {run / 'results.jsonl'}: record 1: written by a newer boxbench (results schema 99; "
                                               f"this one reads up to 2); upgrade boxbench to read this run"]


def test_put_writes_the_current_schema_and_leaves_the_others_as_written(tmp_path: Path) -> None:
    first = COMMITTED[0].read_text().splitlines()[0]
    (tmp_path / "results.jsonl").write_text(first + "\n")
    store = ResultStore(tmp_path)
    new = {**json.loads(first), "cell_key": "another", "cell_id": "another"}
    del new["sweep"]
    store.put(new)
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert lines[0] == json.dumps(json.loads(first), ensure_ascii=False)  # as written
    written = json.loads(lines[1])
    assert written["schema"] == SCHEMA and written["sweep"] is None and written["cell_key"] == "another"
    assert [r.cell_key for r in store.read()] == [json.loads(first)["cell_key"], "another"]
