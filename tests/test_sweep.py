"""Budget sweeps: a method entry's ``sweep:`` expands to one entry per value (per combination of
several), checked as params are, and the report draws each as a learning curve — real SmolLM2, real
SST-2 rows."""

from __future__ import annotations

import pytest

from helpers import records_of, run_cli, write_suite
from boxbench.benchmarks.suite import load_suite
from boxbench.core.errors import UserError

BASE = """name: sweep
models: [smollm2-135m]
datasets: [sst2]
methods:
  - name: few_shot
    sweep: {k: [1, 2]}
"""


def test_a_sweep_expands_to_one_cell_per_value_with_its_label_and_params(tmp_path):
    suite = load_suite(write_suite(tmp_path / "s.yaml", BASE.replace("sweep: {k: [1, 2]}", "sweep: {k: [1, 2], balanced: [false, true]}")
                                   + "seeds: [0, 1]\n"))
    cells = suite.cells
    assert len(cells) == 2 * 2 * 2  # k x balanced x seeds
    assert [c.label for c in cells[::2]] == ["few_shot[k=1,balanced=False]", "few_shot[k=1,balanced=True]",
                                             "few_shot[k=2,balanced=False]", "few_shot[k=2,balanced=True]"]
    assert all(c.params.k == c.sweep["k"] and c.params.balanced == c.sweep["balanced"] for c in cells)
    plain = load_suite(write_suite(tmp_path / "p.yaml", BASE.replace("    sweep: {k: [1, 2]}\n", "    params: {k: 2}\n    label: few_shot[k=2]\n")))
    swept = [c for c in load_suite(write_suite(tmp_path / "q.yaml", BASE)).cells if c.sweep == {"k": 2}]
    assert [c.key for c in swept] == [c.key for c in plain.cells]  # the sweep is a way to write cells, not part of them


@pytest.mark.parametrize("sweep, message", [
    ("{k: [1, x]}", "suite.methods[0].sweep.k: expected a whole number, got 'x'"),
    ("{k: [0, 1]}", "suite.methods[0].sweep.k: must be at least 1, got 0"),
    ("{k: []}", "suite.methods[0].sweep.k: must be a non-empty list of values"),
    ("{k: [1, 1]}", "suite.methods[0].sweep.k: lists a value twice"),
    ("{kk: [1]}", "suite.methods[0].sweep: few_shot has no parameter 'kk'"),
    ("[1, 2]", "suite.methods[0].sweep: must be a mapping of params to lists of values"),
])
def test_a_bad_sweep_is_one_line_naming_the_field(tmp_path, sweep, message):
    with pytest.raises(UserError, match="^" + message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        load_suite(write_suite(tmp_path / "s.yaml", BASE.replace("{k: [1, 2]}", sweep)))
    with pytest.raises(UserError, match="also set in params"):
        load_suite(write_suite(tmp_path / "s.yaml", BASE.replace("    sweep:", "    params: {k: 3}\n    sweep:")))


def test_the_report_draws_each_sweep_as_a_learning_curve(tmp_path):
    suite = write_suite(tmp_path / "s.yaml", BASE + "limits: {train: 40, test: 6}\nsettings: {max_new_tokens: 3}\n")
    run = tmp_path / "run"
    proc = run_cli("run", str(suite), "--out", str(run), "--quiet", "--report")
    assert proc.returncode == 0, proc.stderr[-2000:]
    recs = sorted(records_of(run), key=lambda r: r["sweep"]["k"])
    assert [r["sweep"] for r in recs] == [{"k": 1}, {"k": 2}] and all(r["status"] == "ok" for r in recs)
    report = (run / "report.md").read_text()
    table = report.split("### Learning curves (budget sweeps)")[1].split("###")[0]
    assert "| few_shot | smollm2-135m | sst2 | k | 1 |" in table and "| few_shot | smollm2-135m | sst2 | k | 2 |" in table
    assert "![learning curves](report_curves.png)" in report and (run / "report_curves.png").stat().st_size > 1000


def test_a_dotted_sweep_sets_a_key_of_a_mapping_param(tmp_path):
    """Proxy-Tuning's budget is its expert's training set: ``expert_params.max_train_examples``."""
    text = """name: proxy-sweep
models: [smollm2-135m]
datasets: [sst2]
methods:
  - name: proxy_tuning
    params: {small: smollm2-135m, expert_params: {lr: 1.0e-3}}
    sweep: {expert_params.max_train_examples: [64, 256]}
"""
    cells = load_suite(write_suite(tmp_path / "s.yaml", text)).cells
    assert [c.params.expert_params for c in cells] == [{"lr": 1.0e-3, "max_train_examples": 64}, {"lr": 1.0e-3, "max_train_examples": 256}]
    assert [c.label for c in cells] == ["proxy_tuning[expert_params.max_train_examples=64]", "proxy_tuning[expert_params.max_train_examples=256]"]
    with pytest.raises(UserError, match=r"^suite.methods\[0\].sweep.expert_params.lr: also set in params"):
        load_suite(write_suite(tmp_path / "t.yaml", text.replace("max_train_examples: [64, 256]", "lr: [0.1, 0.2]")))
