"""The prompt optimisers users already run — ProTeGi (textual gradients and beam search) and DSPy's
optimisers — on the real SmolLM2 model and real SST-2 data, in process and through the real llama.cpp
server: black access only, every call metered, the request cache, the spending cap, one-line errors."""

from __future__ import annotations

import random

import pytest

from helpers import records_of, run_cli, write_suite
from boxbench.benchmarks.datasets import load_splits
from boxbench.core.evaluate import evaluate
from boxbench.core.backend import Access, AccessError, GenerationConfig
from boxbench.core.errors import UserError
from boxbench.core.method import build_params
from boxbench.methods.dspy_optimisers import DspyBootstrap, DspyCopro, DspyMipro, DspyZeroShot, missing
from boxbench.methods.protegi import Protegi, error_string, tagged, ucb_select


@pytest.fixture(scope="module")
def sst2():
    return load_splits("sst2", 60, 8, 8, 0)


TINY = {"rounds": 1, "beam_size": 2, "minibatch_size": 8, "n_gradients": 1, "errors_per_gradient": 2, "mc_samples_per_step": 1,
        "max_expansion_factor": 3, "eval_rounds": 2, "eval_prompts_per_round": 2, "samples_per_eval": 4, "max_proposal_tokens": 24,
        "parse": "lenient"}


def test_protegi_searches_with_a_black_view_only(sst2, smol):
    black = smol.view(Access.black)
    with pytest.raises(AccessError):
        black.score(["x"], [["y"]])
    params = build_params(Protegi, TINY)
    before = smol.usage.snapshot()
    art = Protegi().tune(black, task=sst2.task, train=sst2.train, dev=sst2.dev, params=params, seed=0)
    s = art.stats
    hist = art.history
    assert hist[0] == {"instruction": "Classify the text as one of: negative, positive.", "score": hist[0]["score"],
                       "origin": "initial", "round": 0}
    successors = [h for h in hist if h["origin"] == "successor"]
    assert 1 <= len(successors) <= 3 and all(h["round"] == 1 and h["score"] is not None for h in successors)
    assert art.instruction == s["final_beam"][0] and len(s["final_beam"]) == 2
    # proposer = the tuned model: 1 gradient query, one edit query per reason found (lenient: one), and
    # one paraphrase of each edit and of the prompt
    assert s["proposer_model"] == "self" and s["gradients"] == 1 and s["proposer_calls"] == 1 + s["gradients"] + s["edits"] + 1
    # the tuned model answered the 8-example minibatch and 2 bandit rounds of 2 candidates × 4 examples
    answered = smol.usage.model_calls - before["model_calls"] - s["proposer_calls"]
    assert answered == 8 + 2 * 2 * 4


def test_protegi_follows_the_reference_text_and_bandit():
    assert tagged("a <START>too vague<END> b <START> ignores sarcasm <END> <START>open") == ["too vague", "ignores sarcasm"]
    assert tagged("no tags here") == [] and tagged(": be precise\nmore", lenient=True) == ["Be precise"]
    task = load_splits("sst2", 4, 0, 2, 0).task
    ex = load_splits("sst2", 4, 0, 2, 0).train[0]
    text = error_string(task, [(ex, 1 - ex.label), (ex, None)])
    assert text.startswith("## Example 1\nText: \"") and f"Label: {task.label_names[ex.label]}" in text
    assert "Prediction: (no label)" in text and text.count("## Example") == 2
    rng = random.Random(0)
    assert sorted(ucb_select(rng, [0, 0, 0], [0, 0, 0], 2, 0, c=1.0, mode="ucb")) in ([0, 1], [0, 2], [1, 2])  # nothing pulled: random
    # pulled: the highest upper bound — an arm pulled less wins over an equal mean
    assert ucb_select(rng, [32, 8, 32], [16, 4, 8], 1, 3, c=1.0, mode="ucb") == [1]
    assert ucb_select(rng, [32, 32, 32], [16, 4, 8], 1, 3, c=0.0, mode="ucb") == [0]  # c = 0: the best mean
    with pytest.raises(UserError, match="params.evaluator"):
        build_params(Protegi, {"evaluator": "sr"})


def test_dspy_bootstrap_tunes_the_prompt_the_shared_scorer_evaluates(sst2, smol):
    assert missing() is None  # the test extra installs dspy and optuna
    black = smol.view(Access.black)
    params = build_params(DspyBootstrap, {"max_bootstrapped_demos": 2, "max_labeled_demos": 3})
    before = smol.usage.snapshot()
    art = DspyBootstrap().tune(black, task=sst2.task, train=sst2.train, dev=sst2.dev, params=params, seed=0)
    s = art.stats
    # every DSPy call went through the black view, one generate call each, and was metered there
    assert s["task_model_calls"] == smol.usage.model_calls - before["model_calls"] >= 2
    assert 1 <= len(art.demos) <= 3 and all(d.label in (0, 1) and d.text in {e.text for e in sst2.train} for d in art.demos)
    assert art.instruction == "Classify the text as one of: negative, positive." and s["proposer_calls"] == 0
    result = evaluate(art, black, sst2.task, sst2.test)
    assert result["n"] == 8 and result["protocol"] == "generate"
    # another seed meets the training examples in another order: other demonstrations
    other = DspyBootstrap().tune(black, task=sst2.task, train=sst2.train, dev=sst2.dev, params=params, seed=1)
    assert [d.text for d in other.demos] != [d.text for d in art.demos]


def test_dspy_zero_shot_is_the_uncompiled_program_and_asks_no_model(sst2, smol):
    """The baseline a DSPy user compares a compiled program with: the signature's instruction, no
    demonstrations, no model calls; the shared scorer then evaluates it like any prompt."""
    black = smol.view(Access.black)
    before = smol.usage.snapshot()
    art = DspyZeroShot().tune(black, task=sst2.task, train=sst2.train[:4], dev=sst2.dev, params=build_params(DspyZeroShot, {}), seed=0)
    assert art.instruction == "Classify the text as one of: negative, positive." and art.demos == []
    assert art.stats["task_model_calls"] == art.stats["proposer_requests"] == 0 and smol.usage.model_calls == before["model_calls"]
    assert DspyZeroShot.family == "baseline"  # untuned: never an access class's representative


def test_dspy_mipro_asks_the_proposer_and_counts_it_apart(sst2, smol):
    black = smol.view(Access.black)
    params = build_params(DspyMipro, {"auto": "none", "num_candidates": 2, "num_trials": 1, "minibatch_size": 4,
                                      "max_proposal_tokens": 12, "max_bootstrapped_demos": 1, "max_labeled_demos": 1})
    before = smol.usage.snapshot()
    art = DspyMipro().tune(black, task=sst2.task, train=sst2.train[:12], dev=sst2.dev, params=params, seed=0)
    s = art.stats
    assert s["proposer_model"] == "self" and s["proposer_calls"] == s["proposer_requests"] >= 1
    assert s["proposer_completion_tokens"] <= 12 * s["proposer_calls"]
    # the proposer is the tuned model here: its calls are the tuned model's too, and nothing else was asked
    assert smol.usage.model_calls - before["model_calls"] == s["task_model_calls"] + s["proposer_calls"]
    assert isinstance(art.instruction, str) and art.instruction


def test_dspy_engine_gives_each_seed_sampling_streams_of_its_own(smol):
    """DSPy's proposer asks the same prompt again and again (COPRO's candidates). Each call used to sample with
    ``seed + calls``, so seed 3's draws were seed 2's shifted by one call, and two COPRO study seeds chose the
    same instruction. Now a call draws on ``seed * 1_000_003 + calls``; seed 0's streams are unchanged."""
    import dspy

    from boxbench.methods.dspy_optimisers import ViewEngine

    black = smol.view(Access.black)

    def draws(seed: int) -> tuple[list[int | None], list[str]]:
        sent: list[int | None] = []

        def generate(prompts: list[str], config: GenerationConfig) -> list[str]:
            sent.append(config.seed)
            return black.generate(prompts, config)

        lm = dspy.LM("boxbench/proposer", engine=ViewEngine(generate, GenerationConfig(max_new_tokens=16, temperature=1.0, stop=[], seed=seed)),
                     cache=False)
        return sent, [lm("Write a one-line instruction for a sentiment classification task:")[0] for _ in range(3)]

    seeds2, out2 = draws(2)
    seeds3, out3 = draws(3)
    assert seeds2 == [2 * 1_000_003 + k for k in range(3)] and not set(seeds2) & set(seeds3)
    assert out3[:2] != out2[1:], "seed 3 drew seed 2's proposals again"
    assert draws(0)[0] == [0, 1, 2]  # the calibration's seed-0 cells stand as recorded


def test_dspy_copro_scores_its_candidates_on_dev_not_the_whole_train_split(sst2, smol):
    """COPRO scores every candidate on the set given to compile: DSPy alone, the whole trainset (4,096
    SST-2 rows × each candidate: ~46 minutes a round here); boxbench's default, the dev rows."""
    black = smol.view(Access.black)
    params = build_params(DspyCopro, {"breadth": 2, "depth": 1, "max_proposal_tokens": 12})
    art = DspyCopro().tune(black, task=sst2.task, train=sst2.train, dev=sst2.dev, params=params, seed=0)
    s = art.stats
    assert 0 < s["task_model_calls"] <= 4 * len(sst2.dev) < len(sst2.train) and s["proposer_calls"] >= 1
    assert isinstance(art.instruction, str) and art.instruction and art.demos == []
    with pytest.raises(UserError, match=r"^dspy_copro: needs a dev set .*params.score_on: train\)$"):
        DspyCopro().tune(black, task=sst2.task, train=sst2.train, dev=[], params=params, seed=0)
    with pytest.raises(UserError, match="params.score_on"):
        build_params(DspyCopro, {"score_on": "test"})


def test_bad_params_and_a_missing_dspy_are_one_line(monkeypatch, tmp_path):
    from boxbench.benchmarks.suite import load_suite, machine_problems

    with pytest.raises(UserError, match=r"params.num_candidates: with auto: none, set num_candidates \(and num_trials, default 10\)"):
        build_params(DspyMipro, {"auto": "none"})
    with pytest.raises(UserError, match="params.format"):
        build_params(DspyBootstrap, {"format": "json"})
    # an optimiser that never asks DSPy's prompt_model refuses a proposer rather than load one for nothing
    for name in ("dspy_zero_shot", "dspy_bootstrap", "dspy_random_search"):
        suite = write_suite(tmp_path / f"{name}.yaml", f"name: d\nmodels: [smollm2-135m]\ndatasets: [sst2]\n"
                                                       f"methods: [{{name: {name}, params: {{proposer: smollm2-135m}}}}]\n")
        with pytest.raises(UserError, match=rf"params.proposer: {name} writes no instructions, so it asks no proposer; remove proposer$"):
            load_suite(str(suite))
    load_suite(str(write_suite(tmp_path / "m.yaml", "name: d\nmodels: [smollm2-135m]\ndatasets: [sst2]\n"
                                                    "methods: [{name: dspy_copro, params: {proposer: smollm2-135m}}]\n")))
    import importlib.util

    real = importlib.util.find_spec
    # the one fake here: this machine has dspy installed, so its absence is simulated
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "dspy" else real(name, *a))
    assert DspyBootstrap.unavailable() == "dspy is not installed; pip install -e '.[dspy]' (dspy and optuna)"
    suite = write_suite(tmp_path / "s.yaml", "name: d\nmodels: [smollm2-135m]\ndatasets: [sst2]\nmethods: [{name: dspy_bootstrap}]\n")
    # `boxbench check` warns and a local run stops before any cell, with this line
    assert machine_problems(load_suite(str(suite))) == [
        "method dspy_bootstrap: unavailable here: dspy is not installed; pip install -e '.[dspy]' (dspy and optuna)"]
    with pytest.raises(UserError, match=r"^dspy_bootstrap: dspy is not installed; pip install"):
        DspyBootstrap().tune(None, task=None, train=[], dev=[], params=build_params(DspyBootstrap, {}), seed=0)


SERVED = """name: optimisers
models:
  - {{backend: hf, model: smollm2-135m, label: smol@hf}}
  - {{backend: openai, model: smollm2-135m, base_url: "{url}", chat: false, label: smol@api, timeout: 60{price}}}
datasets: [sst2]
methods:
  - name: protegi
    params: {{rounds: 1, beam_size: 1, minibatch_size: 6, n_gradients: 1, errors_per_gradient: 2, mc_samples_per_step: 1,
              max_expansion_factor: 2, eval_rounds: 1, eval_prompts_per_round: 2, samples_per_eval: 4, max_proposal_tokens: 16,
              parse: lenient}}
  - name: dspy_bootstrap
    params: {{max_bootstrapped_demos: 1, max_labeled_demos: 2}}
seeds: [0]
limits: {{train: 24, dev: 4, test: 10}}
settings: {{max_new_tokens: 4{extra}}}
"""


def test_both_run_through_the_server_as_in_process_cached_and_capped(llama_server, tmp_path):
    from test_api_cache_faults import _requests_in

    env = {"BOXBENCH_REQUEST_CACHE": "1", "BOXBENCH_REQUEST_CACHE_DIR": str(tmp_path / "cache")}
    suite = write_suite(tmp_path / "s.yaml", SERVED.format(url=llama_server.base_url, price="", extra=""))
    proc = run_cli("run", str(suite), "--out", str(tmp_path / "a"), "--quiet", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    recs = {(r["method"], r["model"]): r for r in records_of(tmp_path / "a")}
    assert all(r["status"] == "ok" for r in recs.values()), [r["error"] for r in recs.values()]
    for method in ("protegi", "dspy_bootstrap"):
        hf, api = recs[(method, "smol@hf")], recs[(method, "smol@api")]
        assert api["model_calls"] > 0 and api["backend"]["backend"] == "openai" and api["access"] == "black"
        # the same weights served by llama.cpp (Q4_1 kernels) and in torch: the same cell within 3 of 10 rows
        assert abs(hf["accuracy"] - api["accuracy"]) <= 0.3, (method, hf["accuracy"], api["accuracy"])
    # the same suite again into a new folder: every request comes from the cache, the server is not asked
    log = llama_server.log
    before = _requests_in(log)
    again = run_cli("run", str(suite), "--out", str(tmp_path / "b"), "--quiet", "--only", "model=smol@api", env=env)
    assert again.returncode == 0 and _requests_in(log) == before, again.stdout
    cached = {r["method"]: r for r in records_of(tmp_path / "b")}
    for method, r in cached.items():
        assert r["spend"]["billed_requests"] == 0 and r["accuracy"] == recs[(method, "smol@api")]["accuracy"]
    # a spending cap stops each inside its optimiser's loop: status capped, in one line
    price = ", price: {input_per_mtok: 1000.0, output_per_mtok: 1000.0}"
    capped = write_suite(tmp_path / "c.yaml", SERVED.format(url=llama_server.base_url, price=price, extra=", max_cost: 0.05"))
    proc = run_cli("run", str(capped), "--out", str(tmp_path / "c"), "--quiet", "--only", "model=smol@api", "--no-cache")
    assert proc.returncode == 0 and "2 capped" in proc.stdout, proc.stdout + proc.stderr[-1500:]
    capped_in = {r["method"]: r["capped_in"] for r in records_of(tmp_path / "c")}
    assert all(r["status"] == "capped" and r["error"].startswith("cost cap reached: ") for r in records_of(tmp_path / "c"))
    # the cap is checked before each request: ProTeGi stops inside its loop; a bootstrap that found its one
    # demonstration with its first request (which passed the cap) finishes tuning and stops at evaluation
    assert capped_in["protegi"] == "tune" and capped_in["dspy_bootstrap"] in ("tune", "eval")
