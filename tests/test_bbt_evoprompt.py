"""BBT (grey box, module: a continuous prompt tuned by CMA-ES from label logprobs, no gradients) and
EvoPrompt (black box, multi-pass: a genetic algorithm over instructions) on the real SmolLM2 model
and real SST-2 data."""

from __future__ import annotations

import random

import pytest

from boxbench.backends import parse_model_spec
from boxbench.core.backend import Access, AccessError
from boxbench.benchmarks.datasets import load_splits
from boxbench.core.evaluate import evaluate
from boxbench.core.method import Artifact, build_params
from boxbench.methods.bbt import Bbt, label_cross_entropy
from boxbench.methods.evoprompt import EvoPrompt, final_prompt, roulette
from boxbench.core.errors import UserError


@pytest.fixture(scope="module")
def sst2():
    return load_splits("sst2", 120, 16, 8, 0)


def test_bbt_searches_through_embeddings_at_grey_access_and_reapplies(sst2, smol, tmp_path):
    grey = smol.view(Access.grey)
    assert not hasattr(grey, "module") and not hasattr(smol.view(Access.black), "input_embeddings")
    params = build_params(Bbt, {"prompt_tokens": 4, "intrinsic_dim": 16, "popsize": 4, "budget": 12, "shots_per_class": 4,
                                "eval_every": 4})
    before = smol.usage.snapshot()
    art = Bbt().tune(grey, task=sst2.task, train=sst2.train, dev=sst2.dev, params=params, seed=0)
    s = art.stats
    assert s["candidate_evaluations"] == 12 and s["train_batch"] == 8 and art.embeds.shape == (4, 576)
    assert s["best_at_evaluation"] in (4, 8, 12) and not s["kept_p0"]
    # 1 + 12 candidate evaluations of the 8-example batch, 3 dev checks (evaluations #4, #8, #12; P₀ is
    # never dev-scored) of the reference's dev set (4 per class from the training pool, apart from the
    # batch): one call per prompt
    assert s["dev_from"] == "train" and s["dev_checked"] == 8 and s["p0"] == "vocab_ids" and s["dev_check"] == "every_nth"
    assert smol.usage.model_calls - before["model_calls"] == 13 * 8 + 3 * 8
    art.save(tmp_path / "bbt")
    loaded = Artifact.load(tmp_path / "bbt")
    first = evaluate(art, art.attach(grey), sst2.task, sst2.test)
    again = evaluate(loaded, loaded.attach(grey), sst2.task, sst2.test)
    plain = evaluate(loaded, grey, sst2.task, sst2.test)
    assert again["predictions"] == first["predictions"] and again["scores"] == first["scores"]
    assert again["scores"] != plain["scores"]  # the continuous prompt is really read
    prompt = ["Review: fine\nThe sentiment of this review is"]
    t0, calls = smol.usage.prompt_tokens, smol.usage.model_calls
    grey.score_with_embeddings(loaded.embeds, prompt, [[" positive"]])
    t1 = smol.usage.prompt_tokens
    grey.score(prompt, [[" positive"]])
    t2 = smol.usage.prompt_tokens
    assert smol.usage.model_calls == calls + 2 and t1 - t0 == (t2 - t1) + 4  # the 4 prompt positions are read too


def test_bbt_refuses_a_model_that_takes_no_embeddings():
    spec = parse_model_spec({"backend": "openai", "model": "m", "base_url": "http://127.0.0.1:9/v1"}, "models[0]")
    with pytest.raises(UserError, match="bbt sends input embeddings, which a openai model does not take"):
        Bbt.check(build_params(Bbt, {}), spec, "cell")
    with pytest.raises(UserError, match="params.popsize"):
        build_params(Bbt, {"popsize": 1})


def test_label_cross_entropy():
    assert label_cross_entropy([[0.0, 0.0]], [1]) == pytest.approx(0.6931, abs=1e-4)
    assert label_cross_entropy([[-10.0, 0.0]], [1]) < 1e-4


def test_evoprompt_evolves_with_a_black_view_only(sst2, smol):
    params = build_params(EvoPrompt, {"popsize": 2, "iterations": 1, "init_size": 3, "eval_size": 4, "max_instruction_tokens": 24})
    black = smol.view(Access.black)
    with pytest.raises(AccessError):
        black.score(["x"], [["y"]])
    art = EvoPrompt().tune(black, task=sst2.task, train=sst2.train, dev=sst2.dev, params=params, seed=0)
    hist = art.history
    assert {h["origin"] for h in hist} <= {"initial", "paraphrase", "child"} and any(h["origin"] == "initial" for h in hist)
    assert all(len(h["parents"]) == 2 for h in hist if h["origin"] == "child")
    assert art.instruction == max(hist, key=lambda h: h["dev_accuracy"])["instruction"]
    # 3 proposals, 1 paraphrase of the best (para_topk: popsize // 2 kept), 2 children
    assert art.stats["proposer_model"] == "self" and art.stats["proposer_calls"] == 3 + 1 + 2
    assert art.stats["candidates_scored"] == len(hist) and len(art.stats["final_population"]) == 2


def test_evoprompt_parsing_and_roulette():
    assert final_prompt("1. Crossover Prompt: a\n2. <prompt>Name the topic.</prompt>") == "Name the topic."
    assert final_prompt("x\n2. Mutated Prompt: Decide the sentiment") == "Decide the sentiment"
    assert final_prompt("<prompt>") == ""
    rng = random.Random(0)
    picks = [roulette(rng, [0.0, 1.0, 0.0]) for _ in range(50)]
    assert all(len(set(p)) == 2 for p in picks) and all(p[0] == 1 for p in picks)  # the only non-zero score first
    with pytest.raises(UserError, match="params.popsize"):
        build_params(EvoPrompt, {"popsize": 1})
