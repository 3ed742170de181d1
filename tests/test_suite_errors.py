"""Bad input gives one line naming the problem and exit code 2, never a traceback."""

from __future__ import annotations

import pytest

from helpers import SUITES, run_cli, write_suite

GOOD = """name: t
models: [smollm2-135m]
datasets: [sst2]
methods: [zero_shot]
"""

CASES = {
    "unknown method": (GOOD.replace("[zero_shot]", "[no_such_method]"), "unknown method 'no_such_method'; known methods: adalora, ape, bbt"),
    "unknown top-level field": (GOOD + "seedz: [1]\n", "suite: unknown field 'seedz'"),
    "unknown method field": (GOOD.replace("[zero_shot]", "[{name: zero_shot, parms: {}}]"), "suite.methods[0]: unknown field 'parms'"),
    "unknown param": (GOOD.replace("[zero_shot]", "[{name: few_shot, params: {kk: 3}}]"), "few_shot has no parameter 'kk'; its parameters: k, balanced"),
    "wrong param type": (GOOD.replace("[zero_shot]", "[{name: few_shot, params: {k: four}}]"), "suite.methods[0].params.k: expected a whole number, got 'four'"),
    "unknown dataset": (GOOD.replace("[sst2]", "[imdb]"), "suite.datasets[0]: unknown dataset 'imdb'"),
    "missing models": (GOOD.replace("models: [smollm2-135m]\n", ""), "suite: missing required field 'models'"),
    "unknown model": (GOOD.replace("smollm2-135m", "gpt-17"), "model 'gpt-17' is not an alias, a hub name (hf:ORG/NAME) or an existing path"),
    "bad access": (GOOD.replace("[zero_shot]", "[{name: zero_shot, access: purple}]"), "suite.methods[0].access: 'purple' is not an access class"),
    "model access too low": (
        GOOD.replace("[smollm2-135m]", "[{model: smollm2-135m, access: black, label: smol-text-only}]").replace("[zero_shot]", "[{name: zero_shot, access: grey}]"),
        "zero_shot needs grey access but model 'smol-text-only' gives only black",
    ),
    "bad limits": (GOOD + "limits: {test: -3}\n", "suite.limits.test: must be a non-negative integer"),
    "bad yaml": ("name: [unclosed\n", "not valid YAML"),
    "unknown api option": (GOOD.replace("[smollm2-135m]", "[{backend: openai, model: m, temprature: 0}]"),
                           "suite.models[0]: unknown option(s) temprature for a openai model"),
    "bad api option type": (GOOD.replace("[smollm2-135m]", "[{backend: openai, model: m, concurrency: lots}]"),
                            "suite.models[0].concurrency: expected int, got 'lots'"),
    "bad method models": (GOOD.replace("[zero_shot]", "[{name: zero_shot, models: smollm2-135m}]"),
                          "suite.methods[0].models: must be a non-empty list of model specs"),
    "bad method limits": (GOOD.replace("[zero_shot]", "[{name: zero_shot, limits: {tset: 3}}]"),
                          "suite.methods[0].limits: unknown field 'tset'"),
    "bad method datasets": (GOOD.replace("[zero_shot]", "[{name: zero_shot, datasets: [agnews]}]"),
                            "suite.methods[0].datasets: must be a non-empty list of the suite's dataset names (sst2)"),
    "same label twice": (GOOD.replace("[zero_shot]", "[lora, {name: lora, params: {lr: 0.1}}]"),
                         "suite.methods: two entries are both labelled 'lora' on model 'smollm2-135m' and dataset 'sst2'"),
    "bad method seeds": (GOOD.replace("[zero_shot]", "[{name: zero_shot, seeds: 0}]"),
                         "suite.methods[0].seeds: must be a non-empty list of integers"),
    "unloadable proposer": (GOOD.replace("[zero_shot]", "[{name: ape, params: {proposer: gpt-17}}]"),
                            "suite.methods[0].params.proposer: model 'gpt-17' is not an alias"),
    "bad proposer option": (GOOD.replace("[zero_shot]", "[{name: ape, params: {proposer: {backend: openai, model: m, temprature: 1}}}]"),
                            "suite.methods[0].params.proposer: unknown option(s) temprature for a openai model"),
    "unknown resource": (GOOD + "resources: {num_gpu: 1}\n", "suite.resources: unknown field 'num_gpu'; allowed fields: num_cpus, num_gpus, memory"),
    "bad resource size": (GOOD.replace("[zero_shot]", "[{name: zero_shot, resources: {memory: lots}}]"),
                          "suite.methods[0].resources.memory: 'lots' is not a size; use bytes or e.g. 40GB"),
    "bad model resources": (GOOD.replace("[smollm2-135m]", "[{model: smollm2-135m, resources: {num_cpus: -1}}]"),
                            "suite.models[0].resources.num_cpus: must be a non-negative number, got -1"),
    "bbt on an api model": (GOOD.replace("[smollm2-135m]", "[{backend: openai, model: m}]").replace("[zero_shot]", "[bbt]"),
                            "bbt sends input embeddings, which a openai model does not take"),
    "quantize value": (GOOD.replace("[smollm2-135m]", "[{model: smollm2-135m, quantize: 3bit}]"),
                       "suite.models[0].quantize: '3bit' is not supported; use none, 4bit (QLoRA's NF4, CUDA only) or int8"),
    "white method on int8 weights": (GOOD.replace("[smollm2-135m]", "[{model: smollm2-135m, quantize: int8, label: smol-int8}]").replace("[zero_shot]", "[lora]"),
                                     "lora needs white access but model 'smol-int8' gives only grey"),
    "bad exact_check": (GOOD + "settings: {exact_check: -1}\n", "suite.settings.exact_check: must be 0 or more, got -1"),
    # settings are a typed record, checked like params (each of these once passed check)
    "zero batch": (GOOD + "settings: {batch_size: 0}\n", "suite.settings.batch_size: must be at least 1, got 0"),
    "text batch": (GOOD + "settings: {batch_size: x}\n", "suite.settings.batch_size: expected a whole number, got 'x'"),
    "negative answer length": (GOOD + "settings: {max_new_tokens: -1}\n", "suite.settings.max_new_tokens: must be at least 1, got -1"),
    "unknown device": (GOOD + "settings: {device: tpu}\n", "suite.settings.device: 'tpu' is not a device; use auto, cpu, cuda, cuda:N or mps"),
    "unknown dtype": (GOOD + "settings: {dtype: float7}\n", "suite.settings.dtype: 'float7' is not one of auto, float32, fp32, bfloat16"),
    "negative retries": (GOOD + "settings: {max_retries: -3}\n", "suite.settings.max_retries: must be 0 or more, got -3"),
    "zero timeout": (GOOD + "settings: {cell_timeout_s: 0}\n", "suite.settings.cell_timeout_s: must be positive, got 0"),
    "unknown setting": (GOOD + "settings: {batchsize: 8}\n", "suite.settings: unknown field 'batchsize'; allowed fields: batch_size"),
    "bad kate order": (GOOD.replace("[zero_shot]", "[{name: kate, params: {order: random}}]"),
                       "suite.methods[0].params.order: 'random' is not one of nearest_last, nearest_first"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_suite_one_line_exit_2(case, tmp_path):
    text, expected = CASES[case]
    suite = write_suite(tmp_path / "suite.yaml", text)
    for cmd in (["check", str(suite)], ["run", str(suite), "--out", str(tmp_path / "run")]):
        proc = run_cli(*cmd)
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert lines[0].startswith("boxbench: error: ") and expected in lines[0], lines[0]
    assert not (tmp_path / "run" / "results.jsonl").exists()  # nothing ran


def test_what_this_machine_lacks_is_said_before_any_cell(tmp_path):
    """No CUDA here: ``check`` warns (a cluster may have it), a local ``run`` stops in one line."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: nothing to refuse")
    for text, expected in ((GOOD + "settings: {device: cuda}\n", "suite.settings.device: cuda but this machine has no CUDA device"),
                           (GOOD.replace("[smollm2-135m]", "[{model: smollm2-135m, quantize: 4bit}]"),
                            "model 'smollm2-135m': quantize 4bit (QLoRA's NF4) needs CUDA and bitsandbytes")):
        suite = write_suite(tmp_path / "suite.yaml", text)
        check = run_cli("check", str(suite))
        assert check.returncode == 0 and check.stderr.strip().startswith(f"boxbench: warning: {expected}"), check.stderr
        run = run_cli("run", str(suite), "--out", str(tmp_path / "run"))
        assert run.returncode == 2 and run.stderr.strip() == (
            f"boxbench: error: {run.stderr.split('error: ')[1].strip()}") and expected in run.stderr
        assert len(run.stderr.strip().splitlines()) == 1 and not (tmp_path / "run" / "results.jsonl").exists()


def test_missing_files_are_one_line_errors(tmp_path):
    proc = run_cli("check", str(tmp_path / "nope.yaml"))
    assert proc.returncode == 2 and proc.stderr.strip() == f"boxbench: error: suite file '{tmp_path / 'nope.yaml'}' not found"
    proc = run_cli("report", str(tmp_path))
    assert proc.returncode == 2 and "has no results.jsonl" in proc.stderr
    proc = run_cli("report", "results/calibrate_cpu", "--select-best-from", str(tmp_path))
    assert proc.returncode == 2 and proc.stderr.strip().startswith("boxbench: error: --select-best-from:"), proc.stderr
    proc = run_cli("--plugin", str(tmp_path / "p.py"), "list")
    assert proc.returncode == 2 and "plugin file" in proc.stderr and "not found" in proc.stderr


def test_missing_dataset_file(tmp_path):
    proc = run_cli("check", str(SUITES / "smoke.yaml"), env={"BOXBENCH_DATA": str(tmp_path)})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("boxbench: error: suite.datasets[0]: sst2: missing data file")


def test_shipped_suites_check(tmp_path):
    for path in sorted(SUITES.glob("*.yaml")):
        proc = run_cli("check", str(path))
        assert proc.returncode == 0, proc.stderr
        assert "cells" in proc.stdout.splitlines()[0]


def test_only_selects_cells_and_names_a_bad_filter():
    suite = str(SUITES / "pez_transfer.yaml")
    every = run_cli("check", suite)
    some = run_cli("check", suite, "--only", "dataset=sst2", "--only", "seed=0,1", "--only", "method=Ours,Empty")
    assert every.returncode == some.returncode == 0, every.stderr + some.stderr
    lines = some.stdout.splitlines()[1:]
    # Ours: seeds 0 and 1, each with its 2 transfer cells; Empty: seed 0 only, with its 2
    assert len(lines) == 2 * 3 + 3 and all("dataset=sst2" in x for x in lines), some.stdout
    assert sum("-to-" in x for x in lines) == 6  # transfer cells follow their source
    assert int(every.stdout.split()[2]) > len(lines)
    for bad in ("colour=red", "seed=", "dataset=imdb"):
        proc = run_cli("check", suite, "--only", bad)
        assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1 and "--only" in proc.stderr, proc.stderr


def test_method_datasets_give_a_budget_per_dataset(tmp_path):
    """Two entries with one label, each on its own dataset: one row in the report, its own budget per
    dataset; the cells' keys are those of a suite that lists the dataset alone."""
    from boxbench.benchmarks.suite import load_suite

    both = load_suite(write_suite(tmp_path / "both.yaml", """
models: [smollm2-135m]
datasets: [sst2, agnews]
methods:
  - {name: lora, datasets: [sst2], params: {max_train_examples: 1024}}
  - {name: lora, datasets: [agnews], params: {max_train_examples: 256}}
"""))
    assert [(c.label, c.dataset["name"], c.params.max_train_examples) for c in both.cells] == [
        ("lora", "sst2", 1024), ("lora", "agnews", 256)]
    alone = load_suite(write_suite(tmp_path / "alone.yaml", """
models: [smollm2-135m]
datasets: [sst2]
methods: [{name: lora, params: {max_train_examples: 1024}}]
"""))
    assert both.cells[0].key == alone.cells[0].key


def test_estimate_from_a_calibration_run(tmp_path):
    """`check --estimate RUN_DIR`: a cell of a configuration the run has finished is estimated from
    its record (evaluation scaled to the cell's test rows); one the run lacks is unknown, not guessed."""
    import json

    calib = SUITES.parent.parent / "results" / "calibrate_cpu"
    rec = next(json.loads(x) for x in (calib / "results.jsonl").read_text().splitlines()
               if '"lora"' in x and json.loads(x).get("sweep") == {"max_train_examples": 256} and json.loads(x)["dataset"] == "sst2")
    suite = write_suite(tmp_path / "s.yaml", """
models: [smollm2-135m]
datasets: [sst2]
methods:
  - name: lora
    params: {lr: 1.0e-3, batch_size: 8}
    sweep: {max_train_examples: [256, 512]}
seeds: [0, 1]
limits: {dev: 64}
""")
    proc = run_cli("check", str(suite), "--estimate", str(calib))
    assert proc.returncode == 0, proc.stderr
    want = rec["load_wall_s"] + rec["tune_wall_s"] + rec["eval_wall_s"] * 872 / rec["n"]
    lines = proc.stdout.splitlines()
    known = [x for x in lines if "max_train_examples-256" in x]
    assert len(known) == 2 and all(abs(float(x.split()[0]) - want) < 1 for x in known), proc.stdout
    assert sum(x.strip().startswith("?") for x in lines) == 2
    assert lines[-1].startswith("total:") and "2 cells unknown" in lines[-1]
    bad = run_cli("check", str(suite), "--estimate", str(tmp_path))
    assert bad.returncode == 2 and bad.stderr.strip().startswith("boxbench: error: --estimate:"), bad.stderr
