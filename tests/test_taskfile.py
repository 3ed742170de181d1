"""Tasks as data files: the built-ins are task files that give the same examples and cell keys as the
Python loaders did; a user's task (tests/data/news3.yaml, 240 real AG News rows with string labels in
one CSV) runs end to end through zero-shot, KATE and LoRA on the real SmolLM2; bad task files fail
in one line naming the field and the fix."""

from __future__ import annotations

import csv
import html
import json
import re
import shutil
from pathlib import Path

import pytest

from helpers import records_of, run_cli, write_suite
from boxbench.benchmarks.datasets import load_raw, load_splits
from boxbench.benchmarks.taskfile import local_data_dir
from boxbench.benchmarks.suite import load_suite
from boxbench.benchmarks.taskfile import TaskFile
from boxbench.core.errors import UserError

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).resolve().parents[1]


def _agnews_as_before(title: str, description: str) -> str:
    # the Python loader's rule before task files (benchmarks/datasets.py at 11eb3bf), written out again
    text = f"{title.strip()} {description.strip()}" if title.strip() else description.strip()
    text = re.sub(r"#(\d+);", lambda m: chr(int(m.group(1))), text.replace("\\", " "))
    return re.sub(r"\s+", " ", html.unescape(text)).strip()


def test_builtin_task_files_read_the_same_examples_as_the_python_loaders():
    root = local_data_dir()
    assert root is not None
    tr, te, _ = load_raw("sst2")
    for rows, name in ((tr, "train.tsv"), (te, "validation.tsv")):
        with open(root / "sst2" / name, newline="") as f:
            want = [(r["sentence"].strip(), int(r["label"])) for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]
        assert [(e.text, e.label) for e in rows] == want
    tr, te, _ = load_raw("agnews")
    for rows, name in ((tr, "train.csv"), (te, "test.csv")):
        with open(root / "agnews" / name, newline="") as f:
            want = [(_agnews_as_before(r["title"], r["description"]), int(r["label"])) for r in csv.DictReader(f)]
        assert [(e.text, e.label) for e in rows] == want


def test_builtin_cell_keys_are_unchanged():
    """The records committed before task files existed carry keys the same suite still produces —
    for the methods whose params have not changed since (the second reference audit gave PEZ, BBT,
    APE and EvoPrompt new params, which are part of a key: their cells are new experiments)."""
    run = REPO / "results" / "fidelity_defaults"
    keys = {c.key for c in load_suite(REPO / "benchmarks" / "suites" / "fidelity_defaults.yaml").cells}
    records = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    recorded = [r["cell_key"] for r in records if r["method"] in ("zero_shot", "kate")]
    assert len(recorded) == 8 and set(recorded) <= keys


def test_a_methods_version_is_part_of_its_cells_keys(monkeypatch):
    """A fix that changes what a method returns for the same params raises its ``version``: its
    cells become new experiments (a resumed run re-runs them; the report lists the old records as
    stale), every other method's keys stay; version 0 keeps the keys of before versions (above)."""
    from boxbench.methods.zero_shot import ZeroShot

    suite = REPO / "benchmarks" / "suites" / "fidelity_defaults.yaml"

    def keys() -> dict[tuple, str]:
        return {(c.label, c.model.display, c.dataset["name"], c.seed): c.key for c in load_suite(suite).cells}

    before = keys()
    monkeypatch.setattr(ZeroShot, "version", 1)
    after = keys()
    changed = {k for k in before if before[k] != after[k]}
    assert changed and {k[0] for k in changed} == {c.label for c in load_suite(suite).cells if c.method == "zero_shot"}


def test_a_user_task_runs_end_to_end_with_its_provenance_in_the_report(tmp_path):
    shutil.copytree(DATA, tmp_path / "data", ignore=shutil.ignore_patterns("*.py"))
    suite = write_suite(tmp_path / "s.yaml", """
name: own-task
models: [smollm2-135m]
datasets: [data/news3.yaml]
methods:
  - name: zero_shot
    access: grey
  - name: kate
    access: grey
    params: {k: 4}
  - name: lora
    params: {max_train_examples: 32, batch_size: 8, lr: 1.0e-3}
seeds: [0]
limits: {dev: 0, test: 24}
""")
    run = tmp_path / "run"
    proc = run_cli("run", str(suite), "--out", str(run), "--quiet", "--report")
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    recs = records_of(run)
    assert {r["method"] for r in recs} == {"zero_shot", "kate", "lora"} and all(r["status"] == "ok" for r in recs)
    assert all(r["dataset"] == "news3" and r["n"] == 24 and r["sizes"]["train_total"] == 180 for r in recs)
    kate = next(r for r in recs if r["method"] == "kate")  # its encoder's reads are compute: indexing the pool, embedding the queries
    encoder = next(m for m in kate["compute"]["by_model"] if m["model"].endswith("(encoder)"))
    assert kate["tune_flops"] >= encoder["tune_flops"] > 0 and encoder["eval_flops"] > 0, kate["compute"]
    assert recs[0]["provenance"]["source"].startswith("240 articles of the AG News test set")
    assert recs[0]["data_files"] == {"news3.csv": recs[0]["data_files"]["news3.csv"]}
    report = (run / "report.md").read_text()
    data = report.split("### Data")[1].split("###")[0]
    assert "| news3 |" in data and "240 articles of the AG News test set" in data and "Zhang, Zhao and LeCun (2015)" in data

    # the key covers the task's definition, not where the file lies
    moved = tmp_path / "elsewhere"
    shutil.copytree(tmp_path / "data", moved / "data")
    shutil.copy(suite, moved / "s.yaml")
    assert [c.key for c in load_suite(moved / "s.yaml").cells] == [c.key for c in load_suite(suite).cells]
    spec = (moved / "data" / "news3.yaml").read_text().replace("This article is about", "The topic is")
    (moved / "data" / "news3.yaml").write_text(spec)
    assert not {c.key for c in load_suite(moved / "s.yaml").cells} & {c.key for c in load_suite(suite).cells}


def test_an_inline_task_is_the_task_file(tmp_path):
    import yaml

    spec = yaml.safe_load((DATA / "news3.yaml").read_text())
    spec["file"] = str(DATA / "news3.csv")
    inline = write_suite(tmp_path / "i.yaml", "name: x\nmodels: [smollm2-135m]\nmethods: [zero_shot]\ndatasets:\n  - "
                         + json.dumps({**spec, "limits": {"test": 10}}) + "\n")
    cells = load_suite(inline).cells
    assert cells[0].dataset["name"] == "news3" and cells[0].limits["test"] == 10
    splits = load_splits(cells[0].dataset, test=10)
    assert [e.label for e in splits.test] == [e.label for e in load_splits({"name": "news3", "task": spec, "base": ""}, test=10).test]


def test_duplicates_between_train_and_test_are_counted_and_can_be_dropped(tmp_path):
    rows = [("good film", "pos"), ("bad film", "neg"), ("Good  FILM", "pos"), ("dull", "neg"), ("fine", "pos"), ("awful", "neg")]
    (tmp_path / "train.csv").write_text("text,y\n" + "\n".join(f"{t},{y}" for t, y in rows) + "\n")
    (tmp_path / "test.csv").write_text("text,y\ngood film,pos\nawful,neg\nnew one,pos\n")
    spec = {"name": "dups", "files": {"train": "train.csv", "test": "test.csv"}, "text": "text", "label": "y",
            "labels": {"neg": " negative", "pos": " positive"}, "template": "{text} is"}
    ref = {"name": "dups", "task": spec, "base": str(tmp_path)}
    assert load_splits(ref).sizes["test_in_train"] == 2 and load_splits(ref).sizes["train_total"] == 6
    dedup = {**ref, "task": {**spec, "dedup": True}}
    s = load_splits(dedup)
    assert s.sizes["test_in_train"] == 0 and s.sizes["train_total"] == 3  # "good film" (twice, case aside) and "awful" dropped


BASE = {"name": "t", "files": {"train": "train.csv", "test": "test.csv"}, "text": "{title} {body}", "label": "y",
        "labels": [{"value": 0, "word": " no"}, {"value": 1, "word": " yes"}], "template": "{text} ->"}


@pytest.mark.parametrize("change, message", [
    ({"files": {"train": "missing.csv", "test": "test.csv"}}, r"t\.files\.train: file .*missing\.csv is missing; fix the path"),
    ({"text": "{title} {summary}"}, r"no column 'summary' in the data \(columns: title, body, y\); fix text/label or the file"),
    ({"label": "z"}, r"no column 'z' in the data"),
    ({"labels": [{"value": 0, "word": " no"}, {"value": 2, "word": " yes"}]},
     r"t\.labels: data file .*train\.csv: line 3 \(header = line 1\) has label 1, which no label lists \(listed: 0, 2\); add it to labels"),
    ({"labels": [{"value": 0, "word": " yes"}, {"value": 1, "word": "Yes"}]},
     r"t\.labels\[1\]\.word: 'Yes' is also label 0's; give every label its own word"),
    ({"labels": [{"value": 0, "word": " "}, {"value": 1, "word": " yes"}]}, r"t\.labels\[0\]\.word: ' ' is empty; a label word must have"),
    ({"files": {"train": "train.csv", "test": "empty.csv"}}, r"t\.files\.test: is empty; give a file with rows"),
    ({"template": "{txt} ->"}, r"t\.template: must contain the \{text\} slot"),
    ({"clean": ["lower"]}, r"t\.clean: unknown cleaner 'lower'; known: "),
    ({"format": "xml"}, r"t\.format: 'xml' is not one of csv, json, jsonl, parquet, tsv"),
    ({"file": "train.csv"}, r"t\.file: give files \(one per split\) or file \(split by seed\), not both"),
    ({"colour": 1}, r"t: unknown key\(s\) colour; a task file has "),
])
def test_a_bad_task_is_one_line_naming_the_field(tmp_path, change, message):
    (tmp_path / "train.csv").write_text("title,body,y\na,b,0\nc,d,1\n")
    (tmp_path / "test.csv").write_text("title,body,y\ne,f,1\n")
    (tmp_path / "empty.csv").write_text("title,body,y\n")
    with pytest.raises(UserError, match=message) as err:
        TaskFile({**BASE, **change}, tmp_path, "t").load_local()
    assert "\n" not in str(err.value)


def test_boxbench_tasks_and_check_show_sources_sizes_and_balance():
    proc = run_cli("tasks", str(DATA / "news3.yaml"))
    assert proc.returncode == 0, proc.stderr
    out = " ".join(proc.stdout.split())
    assert "sst2: " in out and "test 872 rows · negative 428 (49 %), positive 444 (51 %)" in out
    assert "news3: local:" in out and "train 180 rows · world 60 (33 %), sports 61 (34 %), business 59 (33 %)" in out
    proc = run_cli("check", str(DATA / "news3.yaml"))
    assert proc.returncode == 0 and "task file" in proc.stdout and proc.stdout.rstrip().endswith(": ok")
    bad = run_cli("check", str(DATA / "make_news3.py"))
    assert bad.returncode == 2 and bad.stderr.startswith("boxbench: error: suite ") and bad.stderr.count("\n") == 1


def test_check_reads_a_user_tasks_label_words_with_each_models_tokenizer(tmp_path):
    from boxbench.benchmarks.cli import label_word_problems

    suite = load_suite(write_suite(tmp_path / "s.yaml", f"name: x\nmodels: [smollm2-135m]\nmethods: [zero_shot]\n"
                                                       f"datasets: [{DATA / 'news3.yaml'}, sst2]\n"))
    assert label_word_problems(suite) == []  # SmolLM2's byte-level BPE gives every visible word a token
    assert run_cli("check", str(tmp_path / "s.yaml")).returncode == 0
