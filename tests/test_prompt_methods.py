"""APE, KATE (black box), USP and Proxy-Tuning (grey box) on the real SmolLM2 model and real data."""

from __future__ import annotations

import time

import pytest

from helpers import records_of, run_cli, write_suite
from boxbench.core.backend import Access, AccessError
from boxbench.core.task import Example
from boxbench.benchmarks.datasets import load_splits
from boxbench.methods.ape import Ape, ApeParams, clean_instruction
from boxbench.core.method import Artifact
from boxbench.methods.kate import Kate, KateParams
from boxbench.methods.usp import Usp, UspParams, select
from boxbench.core.errors import UserError


@pytest.fixture(scope="module")
def sst2():
    return load_splits("sst2", 120, 12, 6, 0)


def test_kate_orders_the_nearest_examples_and_reloads(sst2, smol, tmp_path):
    from boxbench.backends import context, loaded_models

    query = sst2.train[7].text  # in the pool: its own nearest neighbour
    context.begin()  # a fresh ledger, as a cell begins
    art = Kate().tune(smol.view(Access.black), task=sst2.task, train=sst2.train, dev=sst2.dev, params=KateParams(k=3, order="nearest_last"), seed=0)
    assert art.stats["index_size"] == 120 and art.stats["index_build_s"] > 0
    (name, n, usage), = [(e.name, e.n_params, e.usage) for e in loaded_models() if e.name.endswith("(encoder)")]  # the encoder's reads count as compute
    assert 2.2e7 < n < 2.4e7 and usage.model_calls == 120 and usage.prompt_tokens > 120 * 5, (name, n, usage)
    nn = art.neighbours([query])[0]
    assert usage.model_calls == 121  # the query, at evaluation
    assert len(nn) == 3 and art.pool[nn[-1]].text == query  # nearest_last: closest right before the query
    prompt = art.prompts(sst2.task, [query])[0]
    assert prompt.endswith(sst2.task.template.format(text=query)) and prompt.count("Review:") == 4
    first = Kate().tune(smol.view(Access.black), task=sst2.task, train=sst2.train, dev=sst2.dev, params=KateParams(k=3), seed=0)
    assert first.stats["order"] == "nearest_first"  # the reference's order is the default
    assert first.neighbours([query])[0] == nn[::-1] and first.pool[first.neighbours([query])[0][0]].text == query
    art.save(tmp_path / "a")
    again = Artifact.load(tmp_path / "a")
    assert again.prompts(sst2.task, [query]) == art.prompts(sst2.task, [query])


def test_ape_with_its_own_proposer_counts_its_calls_apart(sst2, smol):
    """A second model writes the instructions (here a second SmolLM2 instance on the int8 fast path, as
    the quick suite's proposer: what matters is that it is another backend); the tuned model only
    answers, and the record gets the proposer's cost, its time and its quantization."""
    params = ApeParams(num_subsamples=1, prompts_per_subsample=3, demos_per_proposal=3, eval_size=6, rounds=1, keep=1,
                       resamples_per_candidate=2, max_instruction_tokens=20,
                       proposer={"model": "smollm2-135m", "quantize": "int8"})
    t0 = time.perf_counter()
    before = smol.usage.snapshot()
    art = Ape().tune(smol.view(Access.black), task=sst2.task, train=sst2.train, dev=sst2.dev, params=params, seed=0)
    hist = art.history
    assert smol.usage.model_calls - before["model_calls"] == 6 * len(hist)  # scoring only: no proposal on the target
    assert art.stats["proposer_model"] == "smollm2-135m (int8-dynamic)" and art.stats["proposer_calls"] == 3 + 2
    assert 0 < art.stats["proposer_wall_s"] < time.perf_counter() - t0
    assert art.stats["proposer_prompt_tokens"] > 0 and 0 < art.stats["proposer_completion_tokens"] <= 5 * 20


def test_ape_proposes_scores_and_keeps_the_best_with_a_black_view_only(sst2, smol):
    black = smol.view(Access.black)
    with pytest.raises(AccessError):
        black.score  # what APE holds cannot read a logprob
    params = ApeParams(num_subsamples=1, prompts_per_subsample=3, demos_per_proposal=3, eval_size=6, rounds=1, keep=1,
                       resamples_per_candidate=2, max_instruction_tokens=20)
    calls = smol.usage.model_calls
    art = Ape().tune(black, task=sst2.task, train=sst2.train, dev=sst2.dev, params=params, seed=0)
    hist = art.history
    assert hist and all(0.0 <= h["dev_accuracy"] <= 1.0 for h in hist)
    assert art.instruction == max(hist, key=lambda h: h["dev_accuracy"])["instruction"]
    assert {h["origin"] for h in hist} <= {"proposal", "resample"} and len({h["instruction"] for h in hist}) == len(hist)
    # 3 proposals + 2 paraphrases generated; every distinct candidate scored on the 6 dev examples
    assert smol.usage.model_calls - calls == 3 + 2 + 6 * len(hist)
    assert art.stats["candidates_scored"] == len(hist)
    assert art.stats["proposer_model"] == "self" and art.stats["proposer_calls"] == 3 + 2  # no proposer: the model itself


def test_clean_instruction():
    assert clean_instruction(" classify each review by its sentiment.\nInput: x") == "Classify each review by its sentiment."
    assert clean_instruction("The instruction was to label the topic") == "Label the topic"
    assert clean_instruction("\n") == ""
    assert clean_instruction(":") == "" and clean_instruction(": .") == "" and clean_instruction("<") == ""  # no word: no candidate
    assert clean_instruction(": classify the review") == "Classify the review"


class HiddenLabel(Example):
    """A training example whose label must not be read (USP works on unlabelled texts)."""

    @property  # type: ignore[override]
    def label(self) -> int:
        raise AssertionError("USP read a training label")


def test_usp_never_reads_training_labels_and_picks_per_predicted_class(sst2, smol):
    hidden = [HiddenLabel.__new__(HiddenLabel) for _ in sst2.train]
    for h, e in zip(hidden, sst2.train):
        object.__setattr__(h, "text", e.text)
    art = Usp().tune(smol.view(Access.grey), task=sst2.task, train=hidden, dev=[], params=UspParams(pool_size=24, k=4), seed=0)
    assert len(art.demos) == 4 and art.stats["pool_size"] == 24
    counts = art.stats["pseudo_label_counts"]
    assert sum(counts) == 24
    if min(counts) >= 2:  # both classes predicted: two pseudo-demos each
        assert sorted(d.label for d in art.demos) == [0, 0, 1, 1]


def test_usp_selection_rule():
    import numpy as np

    probs = [[0.99, 0.01], [0.98, 0.02], [0.6, 0.4], [0.1, 0.9], [0.3, 0.7]]
    sims = np.eye(5)
    sims[0, 1] = sims[1, 0] = 0.99  # 0 and 1 are near-duplicates
    import random

    assert select(probs, sims, 2, "confident", 0.2, random.Random(0)) == [0, 3]
    # with the diversity term, the second class-0 pick avoids the near-duplicate of the first
    assert select(probs, sims, 4, "usp", 5.0, random.Random(0))[:2] == [0, 2]
    assert select(probs, sims, 4, "confident", 5.0, random.Random(0))[:2] == [0, 1]
    with pytest.raises(UserError):
        UspParams(selection="best")


def test_proxy_tuning_combines_large_expert_and_antiexpert(tmp_path):
    """Small = large = SmolLM2 (the only same-vocabulary pair a CI machine has): a real expert is
    trained, the record carries the three models' usage and the vocabulary check."""
    suite = write_suite(tmp_path / "s.yaml", """
name: proxy
models: [smollm2-135m]
datasets: [sst2]
methods:
  - name: proxy_tuning
    params: {small: smollm2-135m, alpha: 1.0, expert_params: {max_train_examples: 16, batch_size: 8, lr: 1.0e-3}}
  - name: zero_shot
    access: grey
  - name: lora
    params: {max_train_examples: 16, batch_size: 8, lr: 1.0e-3}
seeds: [0]
limits: {train: 40, dev: 0, test: 6}
""")
    run = tmp_path / "run"
    proc = run_cli("run", str(suite), "--out", str(run), "--quiet", "--report")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    recs = records_of(run)
    r = next(x for x in recs if x["method"] == "proxy_tuning")
    assert r["status"] == "ok" and r["protocol"] == "logprob", r["error"]
    assert r["vocabulary_check"] == "verified" and r["expert_train_steps"] == 2
    by = r["backend"]["usage_by_model"]
    assert by["large"]["model_calls"] == by["expert"]["model_calls"] == by["antiexpert"]["model_calls"] == 6
    assert r["model_calls"] == 18
    assert (run / "cells" / r["cell_id"] / "artifact" / "expert" / "adapter").is_dir()
    lora = next(x for x in recs if x["method"] == "lora")
    assert lora["loss_last"] == pytest.approx(r["expert_loss_last"])  # same params and seed: the same expert
    # the proxy's own passes give the reference numbers on the same examples: the large model alone is
    # the zero_shot cell, the expert alone is the lora cell (same adapter)
    zs = next(x for x in recs if x["method"] == "zero_shot")
    assert r["component_accuracy"]["large"] == zs["accuracy"] == r["component_accuracy"]["antiexpert"]
    assert r["component_accuracy"]["expert"] == lora["accuracy"]
    assert "component_accuracy" not in zs  # only the proxy's artifact adds it (Artifact.extra_metrics)
    report = (run / "report.md").read_text()
    assert "### Proxy-Tuning" in report and "| smollm2-135m | smollm2-135m | sst2 | 1.0 |" in report
    # compute (benchmarks.compute): every model a cell loaded, from its own token counts
    from boxbench.benchmarks.compute import flops

    n = lora["compute"]["by_model"][0]["n_params"]
    assert 1.3e8 < n < 1.4e8 and zs["tune_flops"] == 0 and zs["eval_flops"] == 2 * n * zs["prompt_tokens"]
    assert lora["tune_usage"]["backward_tokens"] > 0  # 2 steps of 8 examples, forward and backward
    assert lora["tune_usage"]["grad_param_tokens"] == lora["tune_usage"]["backward_tokens"] * lora["trainable_params"]
    assert lora["tune_flops"] == flops(n, lora["tune_usage"]) and lora["eval_flops"] == flops(n, lora["eval_usage"])
    assert [m["model"] for m in r["compute"]["by_model"]] == ["smollm2-135m", "smollm2-135m"]  # large, then the small pair
    large, small = r["compute"]["by_model"]
    assert large["tune_flops"] == 0 and small["backward_tokens"] == lora["tune_usage"]["backward_tokens"]  # the same expert's training
    assert r["eval_flops"] == 2 * n * r["eval_usage"]["prompt_tokens"]  # all three models' reads, no double count


def test_proxy_tuning_refuses_mismatched_vocabularies(smol, tmp_path):
    from transformers import AutoTokenizer

    from boxbench.backends.hf import HFBackend
    from boxbench.methods.kate import load_encoder
    from boxbench.methods.proxy_tuning import check_vocabulary

    bert_tok = AutoTokenizer.from_pretrained(load_encoder("all-MiniLM-L6-v2").tokenizer.name_or_path)
    other = HFBackend(smol.module, bert_tok, "bert-vocab")
    with pytest.raises(UserError, match="different vocabularies"):
        check_vocabulary(smol.view(Access.grey), other)
    assert check_vocabulary(smol.view(Access.grey), smol) == "verified"
    # and at `boxbench check` time for aliases of different families, before anything loads
    suite = write_suite(tmp_path / "s.yaml", """
name: bad
models: [smollm2-135m]
datasets: [sst2]
methods: [{name: proxy_tuning, params: {small: qwen2.5-coder-0.5b}}]
""")
    proc = run_cli("check", str(suite))
    assert proc.returncode == 2 and "cannot steer 'smollm2-135m'" in proc.stderr and len(proc.stderr.splitlines()) == 1


def small_with_adapter():
    """A second SmolLM2 with a real LoRA adapter whose B weights are nonzero (so expert ≠ anti-expert)."""
    import torch
    from peft import LoraConfig, get_peft_model

    from boxbench.backends.hf import HFBackend

    small = HFBackend.load("smollm2-135m", device="cpu", dtype="float32")
    small.module = get_peft_model(small.module, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    torch.manual_seed(0)
    for name, p in small.module.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.05)
    return small


def test_proxy_next_token_logprobs_reads_the_large_model_once(smol):
    """The proxy's top-k: the large model's top-k tokens, each moved by α·(expert − anti-expert); the
    large model runs once. Expert = a real LoRA adapter on a second SmolLM2 with nonzero B weights."""
    from boxbench.methods.proxy_tuning import ProxyBackend

    small = small_with_adapter()
    proxy = ProxyBackend(smol.view("grey"), small, alpha=0.5)
    prompts = ["Review: a gorgeous, moving film.\nThe sentiment of this review is", "Review: dull and long.\nThe sentiment of this review is"]
    large_top = smol.next_token_logprobs(prompts, 5)
    got = proxy.next_token_logprobs(prompts, 5)
    assert proxy.by_model["large"].snapshot()["model_calls"] == 2  # once per prompt, not twice
    for p, lt, g in zip(prompts, large_top, got):
        toks = list(lt)
        assert set(g) == set(toks)
        expert = small.score([p], [toks])[0]
        with small.module.disable_adapter():
            anti = small.score([p], [toks])[0]
        assert any(abs(e - a) > 1e-3 for e, a in zip(expert, anti))  # the adapter does move the scores
        for t, e, a in zip(toks, expert, anti):
            assert g[t] == pytest.approx(lt[t] + 0.5 * (e - a), abs=1e-4)
        assert list(g.values()) == sorted(g.values(), reverse=True)


def test_proxy_generates_with_the_steered_scores(smol):
    """α = 0: the proxy decodes exactly as the large model does greedily; α > 0 with a real (nonzero)
    adapter: every generated token is the argmax of the steered candidates."""
    from boxbench.core.backend import GenerationConfig
    from boxbench.methods.proxy_tuning import ProxyBackend

    small = small_with_adapter()
    prompts = ["Question: What is the capital of France?\nAnswer:", "Review: dull and long.\nIs this review positive or negative? Answer:"]
    cfg = GenerationConfig(max_new_tokens=5, stop=["\n"])
    plain = smol.view("black").generate(prompts, cfg)
    assert ProxyBackend(smol.view("grey"), small, alpha=0.0).view("black").generate(prompts, cfg) == plain
    for alpha in (0.5, 2.0):
        steered = ProxyBackend(smol.view("grey"), small, alpha=alpha)
        outs = steered.generate(prompts, GenerationConfig(max_new_tokens=3, stop=[]))
        assert steered.by_model["expert"].snapshot()["model_calls"] > 0
        for prompt, out in zip(prompts, outs):
            best = next(iter(steered.next_token_logprobs([prompt], ProxyBackend.DECODE_K)[0]))
            if best in small.tokenizer.all_special_tokens:  # the steered model ends at once
                assert out == ""
            else:
                assert out.startswith(best), (alpha, out, best)  # raw text: the view cuts and strips


def test_random_instruction_is_seeded_training_words_and_asks_no_model(sst2, smol):
    """The control for instruction search: ``words`` words of the training texts, the same for a seed,
    other for another seed, drawn without a single model call."""
    from boxbench.methods.random_instruction import RandomInstruction, RandomInstructionParams

    black = smol.view(Access.black)
    before = smol.usage.snapshot()
    tune = lambda seed, words=12, train=sst2.train: RandomInstruction().tune(  # noqa: E731
        black, task=sst2.task, train=train, dev=[], params=RandomInstructionParams(words=words), seed=seed)
    first = tune(0)
    vocabulary = {w for e in sst2.train for w in e.text.split()}
    assert len(first.instruction.split()) == 12 and set(first.instruction.split()) <= vocabulary and not first.demos
    assert tune(0).instruction == first.instruction and tune(1).instruction != first.instruction
    assert smol.usage.model_calls == before["model_calls"]
    with pytest.raises(UserError, match=r"^random_instruction: the training split has no words .*limits.train above 0$"):
        tune(0, train=[])
