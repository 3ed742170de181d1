"""Seeds until decided (``seeds: {min, max, until: decided}``): the rule that adds a seed
(reports/seeds.py, on records shaped as the runner writes them) and a real run on SmolLM2 and SST-2
rows that adds seeds in rounds, runs no cell twice, resumes, and reports why each claim stopped."""

from __future__ import annotations

import json
import random
from dataclasses import replace

from helpers import records_of, run_cli, write_suite

from boxbench.benchmarks.seeds import earned
from boxbench.benchmarks.suite import load_suite
from boxbench.core.results import Record, ResultStore
from boxbench.reports.seeds import arm, decide, seed_cost_table, seed_table


# zero-shot against few-shot whose seeds go from 2 up to ``max`` while undecided
ADAPTIVE = """
name: {name}
models: [smollm2-135m]
datasets: [sst2]
methods:
  - {{name: zero_shot, access: grey, seeds: [0]}}
  - {{name: few_shot, access: grey, params: {{k: 2}}, seeds: {{min: 2, max: {max}, until: decided}}}}
limits: {{train: 200, dev: 0, test: 24}}
settings: {{batch_size: 8}}
"""


def rec(label, method, correct, seed=0, access="grey", family="x"):
    return Record.from_json({"cell_key": f"{label}-{seed}", "cell_id": f"{label}-{seed}", "status": "ok", "label": label, "method": method, "access": access,
            "protocol": "generate" if access == "black" else "logprob",
            "model": "m", "dataset": "sst2", "seed": seed, "accuracy": correct.count("1") / len(correct), "n": len(correct),
            "correct": correct, "test_sha256": "t", "source_model": "m", "target_model": "m", "family": family})


def noisy(rng, n, acc):
    return "".join("1" if rng.random() < acc else "0" for _ in range(n))


def test_a_seed_goes_where_it_can_still_decide_a_claim():
    rng = random.Random(0)
    zs = rec("zero_shot@grey", "zero_shot", noisy(rng, 400, 0.6), family="baseline")
    wide = [rec("usp", "usp", noisy(rng, 400, a), seed=i) for i, a in enumerate((0.55, 0.75, 0.80))]  # spread: undecided at 3
    clear = [rec("lora", "lora", "1" * 380 + "0" * 20, seed=i, access="white") for i in range(3)]  # decided
    same = [rec("kate", "kate", (zs.correct or "")[:-5] + "11111", seed=i, access="black") for i in range(3)]  # identical seeds
    plans = {arm("m", "sst2", x): {"min": 3, "max": 10, "until": "decided"} for x in ("usp", "lora", "kate")}
    kate_zs = replace(zs, access="black", label="zero_shot", protocol="generate", cell_key="zs-black")
    found = {(d.a[1], d.b[1]): d for d in decide([zs, kate_zs, *wide, *clear, *same], plans)}
    assert found[("usp", "zero_shot@grey")].reason == "adding a seed" and found[("usp", "zero_shot@grey")].extend == {"m|sst2|usp"}
    assert found[("lora", "zero_shot@grey")].reason == "decided" and not found[("lora", "zero_shot@grey")].extend
    assert found[("kate", "zero_shot")].reason == "seed-independent" and found[("kate", "zero_shot")].runs == (1, 1)
    at_max = {k: dict(v, max=3) for k, v in plans.items()}
    assert {(d.a[1], d.reason) for d in decide([zs, *wide], at_max)} == {("usp", "max seeds reached")}
    flat = [rec("usp", "usp", noisy(rng, 400, a), seed=i) for i, a in enumerate((0.40, 0.60, 0.80))]  # Δ ≈ 0, huge spread
    assert {d.reason for d in decide([zs, *flat], plans)} == {"below what max seeds detect"}
    assert {d.reason for d in decide([zs, *wide], {})} == {"fixed seeds"} and seed_table([zs, *wide], {}) is None
    table = seed_table([zs, *wide], plans)
    assert table.rows[0][5] == "3 of 10 / 1" and table.rows[0][-1] == "still running: another seed was asked for"


def test_the_seed_cost_table_sets_the_seeds_run_beside_five_everywhere():
    """Hours per method entry as measured (load + tune + eval), and what 5 seeds for every entry with more
    than one seed would have cost: a planned entry that stopped at 3 is charged for 5, a deterministic
    one (one seed) stays at one, a planned entry that went to 6 costs more than 5 would have."""
    plans = {arm("m", "sst2", "usp"): {"min": 3, "max": 8, "until": "decided"}}
    timed = lambda r, s: replace(r, load_wall_s=0.0, tune_wall_s=s, eval_wall_s=0.0)  # noqa: E731
    zs = timed(rec("zero_shot", "zero_shot", "10", access="black"), 360)
    lora = [timed(rec("lora", "lora", "11", seed=i, access="white"), 720) for i in range(3)]
    usp = [timed(rec("usp", "usp", "01", seed=i), 360) for i in range(6)]
    rows = {r[0]: r for r in seed_cost_table([zs, *lora, *usp], plans).rows}
    assert rows["zero_shot"][2:] == ["fixed", "1", "1", "0.10", "0.10"]
    assert rows["lora"][2:] == ["fixed", "3", "3", "0.60", "1.00"]
    assert rows["usp"][2:] == ["3–8, until decided", "6", "6", "0.60", "0.50"]
    assert rows["all"][4:] == ["10", "1.30", "1.60"] and seed_cost_table([zs], {}) is None


def test_bad_seed_plans_are_one_line_errors(tmp_path):
    for plan, msg in (("{min: 1, max: 5, until: decided}", "suite.seeds.min: must be an integer of at least 2"),
                      ("{min: 4, max: 3, until: decided}", "suite.seeds.max: 3 is below min 4"),
                      ("{min: 2, max: 3, until: forever}", "suite.seeds.until: must be one of decided"),
                      ("{min: 2, max: 3, until: decided, step: 2}", "suite.seeds: unknown field 'step'")):
        suite = write_suite(tmp_path / "s.yaml", f"name: s\nmodels: [smollm2-135m]\ndatasets: [sst2]\nmethods: [zero_shot]\nseeds: {plan}\n")
        out = run_cli("check", str(suite))
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"boxbench: error: {msg}"), out.stderr


def test_a_run_adds_seeds_in_rounds_runs_no_cell_twice_and_resumes(tmp_path):
    """few-shot (its demonstrations drawn by the seed) against zero-shot on 24 SST-2 rows, seeds 0–1
    first and up to 4: the run adds seeds while the comparison is undecided and could be decided;
    the finished run's decision asks for nothing more; a re-run runs nothing; the report says why
    the seeds stopped; --estimate counts the seeds that may come."""
    suite = write_suite(tmp_path / "s.yaml", ADAPTIVE.format(name="adaptive", max=4))
    check = run_cli("check", str(suite))
    assert check.returncode == 0 and "suite adaptive: 3 cells" in check.stdout
    run = tmp_path / "run"
    out = run_cli("run", str(suite), "--out", str(run), "--report", "--quiet", timeout=900)
    assert out.returncode == 0, out.stderr
    recs = records_of(run)
    seeds = sorted(r["seed"] for r in recs if r["method"] == "few_shot")
    assert seeds == list(range(len(seeds))) and 2 <= len(seeds) <= 4 and len({r["cell_key"] for r in recs}) == len(recs)
    assert all(r["seed_plan"] == {"min": 2, "max": 4, "until": "decided"} for r in recs if r["method"] == "few_shot")
    decisions = decide(ResultStore(run).read(), {arm("smollm2-135m", "sst2", "few_shot@grey"): {"min": 2, "max": 4, "until": "decided"}})
    assert len(decisions) == 1 and decisions[0].reason != "adding a seed" and decisions[0].seeds == (len(seeds), 1)
    meta = json.loads((run / "suite.json").read_text())
    assert set(meta["cell_keys"]) == {r["cell_key"] for r in recs}  # every added seed is a current cell, none stale
    report = (run / "report.md").read_text()
    assert "### Seeds per claim" in report and decisions[0].reason in report and "stale" not in report
    again = run_cli("run", str(suite), "--out", str(run), "--quiet", timeout=900)
    assert again.returncode == 0 and f"0 ok, 0 error, {len(recs)} already done" in again.stdout
    assert len(records_of(run)) == len(recs)
    # the same suite split by another filter: the seeds the rounds added stay current cells
    split = run_cli("run", str(suite), "--out", str(run), "--quiet", "--only", "method=zero_shot", timeout=900)
    assert split.returncode == 0 and set(json.loads((run / "suite.json").read_text())["cell_keys"]) == {r["cell_key"] for r in recs}
    est = run_cli("check", str(suite), "--estimate", str(run))
    assert est.returncode == 0 and "seeds until decided: up to 2 more cells" in est.stdout, est.stdout


def test_a_run_split_by_only_keeps_and_resumes_the_seeds_earlier_rounds_added(tmp_path):
    """Rounds added seeds 2 and 3 to one arm; a later run of the same suite under --only (another
    method, or the same one) finds them in the run folder: they stay in the run's current cells and the
    next round starts after them, not at the plan's min."""
    suite_file = write_suite(tmp_path / "s.yaml", ADAPTIVE.format(name="split", max=6))
    planned = arm("smollm2-135m", "sst2", "few_shot@grey")
    grown = load_suite(str(suite_file)).with_seed({planned}).with_seed({planned})
    run = tmp_path / "run"
    run.mkdir()
    ResultStore(run).put({"cell_key": grown.cells[0].key, "cell_id": grown.cells[0].cell_id, "method": "zero_shot", "label": "zero_shot@grey",
                          "access": "grey", "model": "smollm2-135m", "dataset": "sst2", "seed": 0, "status": "ok"})
    for c in grown.cells[1:]:
        ResultStore(run).put({"cell_key": c.key, "cell_id": c.cell_id, "method": c.method, "label": c.label, "access": "grey",
                              "model": "smollm2-135m", "dataset": "sst2", "seed": c.seed, "status": "ok"})
    other = earned(load_suite(str(suite_file), None, ["method=zero_shot"]), run)
    assert set(other.all_keys) == set(grown.all_keys) and [c.method for c in other.cells] == ["zero_shot"]
    same = earned(load_suite(str(suite_file), None, ["method=few_shot"]), run)
    assert sorted(c.seed for c in same.cells) == [0, 1, 2, 3] and same.with_seed({planned}).cells[-1].seed == 4
    assert earned(load_suite(str(suite_file)), tmp_path / "empty").seed_counts() == {planned: 2, arm("smollm2-135m", "sst2", "zero_shot@grey"): 1}
