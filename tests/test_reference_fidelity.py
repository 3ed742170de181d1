"""Each method's reference behaviour, pinned where it is deterministic (docs/fidelity.md): PEZ's
initial prompt, label-word loss and choice of step, BBT's P₀, its place after BOS and its dev
check, EvoPrompt's one-shot GA prompt, first population and parent pool, APE's repository template,
per-prompt dev subsamples and top-p — on the real SmolLM2 model and real SST-2 / AG News rows."""

from __future__ import annotations

import random

import pytest
import torch

from boxbench.core.backend import Access
from boxbench.backends.torch_utils import model_inputs
from boxbench.benchmarks.datasets import load_splits
from boxbench.methods.ape import FORWARD_TEMPLATES, forward_query
from boxbench.core.method import build_params
from boxbench.methods.bbt import Bbt, BbtParams, initial_prompt, label_cross_entropy
from boxbench.methods.evoprompt import PARAPHRASE, TEMPLATES, EvoPrompt, final_prompt, first_population, parent_pairs
from boxbench.methods.pez import Pez, PezParams, initial_ids, label_rows, label_softmax_loss
from boxbench.methods.proposer import instruction_accuracies
from boxbench.methods.training import collate, forward_tail, label_loss


@pytest.fixture(scope="module")
def sst2():
    return load_splits("sst2", 64, 8, 4, 0)


def test_pez_starts_from_the_label_words_repeated(smol, sst2):
    tok = smol.tokenizer
    words = tok("negative positive", add_special_tokens=False).input_ids  # the reference's classes string
    assert initial_ids(tok, sst2.task, PezParams(prompt_length=5), [], 0, 49152) == (words * 3)[:5]
    ag = load_splits("agnews", 8, 0, 0, 0).task
    topic = tok("politics sports business technology", add_special_tokens=False).input_ids
    assert initial_ids(tok, ag, PezParams(prompt_length=10), [], 0, 49152) == (topic * 2)[:10]
    vocab = initial_ids(tok, sst2.task, PezParams(init="vocab", prompt_length=10), [], 0, 49152)
    assert all(4 <= i < 5004 for i in vocab) and vocab != initial_ids(tok, sst2.task, PezParams(init="vocab", prompt_length=10), [], 1, 49152)
    # no steps over the full vocabulary: the prompt is the projection of its start, the class words themselves
    art = Pez().tune(smol.view(Access.white), task=sst2.task, train=sst2.train, dev=sst2.dev, params=PezParams(steps=0, prompt_length=5), seed=0)
    assert art.token_ids == (words * 3)[:5] and art.stats["init_token_ids"] == art.token_ids
    assert art.stats["init"] == "classes" and art.stats["loss"] == "label_softmax"


def test_pez_loss_is_the_cross_entropy_over_the_label_words(smol, sst2):
    """The training loss (label_softmax) equals the cross-entropy of the shared scorer's label scores
    with the same prompt embeddings in front: two code paths, one number."""
    tok, net = smol.tokenizer, smol.module
    prompt = net.get_input_embeddings().weight[torch.tensor([17728, 2731, 17728])].detach()
    batch = sst2.train[:6]
    rows = [label_rows(tok, sst2.task, ex, "label_softmax") for ex in batch]
    flat = [r for b in rows for r in b.rows]
    ids, mask, labels = collate(flat, tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id, "cpu")
    with torch.no_grad():
        logits = forward_tail(net, ids, mask, max(n for _, n in flat) + 1, prefix_embeds=prompt)
        loss = float(label_softmax_loss(logits, labels, rows))
    scores = smol.view(Access.grey).score_with_embeddings(
        prompt, ["\n\n" + sst2.task.template.format(text=e.text) for e in batch], [list(sst2.task.label_words)] * len(batch))
    assert loss == pytest.approx(label_cross_entropy(scores, [e.label for e in batch]), abs=1e-4)
    # the earlier loss, kept as an option, is the gold word's NLL over the whole vocabulary: larger
    nll_rows = [r for ex in batch for r in label_rows(tok, sst2.task, ex, "vocab_nll").rows]
    ids, mask, labels = collate(nll_rows, tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id, "cpu")
    with torch.no_grad():
        nll = float(label_loss(forward_tail(net, ids, mask, 2, prefix_embeds=prompt), labels))
    assert nll > loss


def test_bbt_p0_is_the_reference_vocabulary_ids(smol, sst2):
    params = build_params(Bbt, {"prompt_tokens": 6})
    p0 = initial_prompt(smol.view(Access.grey), sst2.task, params)
    assert torch.equal(p0, smol.module.get_input_embeddings().weight[1000:1006].detach().float())
    own = initial_prompt(smol.view(Access.grey), sst2.task, BbtParams(prompt_tokens=6, p0="instruction", init_text="Classify"))
    assert own.shape == p0.shape and not torch.equal(own, p0)


def test_a_continuous_prompt_goes_after_bos(smol):
    """``[pads, BOS, soft, tokens]`` computed from left-padded rows equals the same row unpadded, for
    rows of different lengths that open with BOS (SmolLM2's tokenizer adds none itself, so the rows
    are built with its BOS id here; Gemma's adds one)."""
    net, bos = smol.module, smol.tokenizer.bos_token_id
    soft = torch.randn(3, net.config.hidden_size, generator=torch.Generator().manual_seed(0)) * 0.02
    rows = [[bos, 6004, 314, 253], [bos, 2731]]
    ids = torch.tensor([rows[0], [0, 0] + rows[1]])
    mask = torch.tensor([[1, 1, 1, 1], [0, 0, 1, 1]])
    with torch.no_grad():
        batched = net(**model_inputs(net, ids, mask, soft, after_bos=bos)).logits[:, -1]
        emb = net.get_input_embeddings()
        for i, row in enumerate(rows):
            t = emb(torch.tensor([row]))[0]
            alone = net(inputs_embeds=torch.cat([t[:1], soft, t[1:]])[None]).logits[0, -1]
            assert torch.allclose(batched[i], alone, atol=1e-4)
        before = net(**model_inputs(net, ids[:1], mask[:1], soft)).logits[0, -1]  # [soft, BOS, ...]: not the same
    assert not torch.allclose(before, batched[0], atol=1e-3)


def test_evoprompt_asks_with_the_reference_one_shot_prompt():
    query = TEMPLATES["one_shot"].format(a="Classify the review.", b="Say if it is positive.")
    example, task = query.split("\n\nPlease follow the instruction step-by-step to generate a better prompt.\n")
    assert example.startswith("Please follow the instruction step-by-step to generate a better prompt.\n1. Crossover")
    assert "2. <prompt>Transform the provided text into simpler language, maintaining its essence.</prompt>" in example
    assert task.endswith("Prompt 1: Classify the review.\nPrompt 2: Say if it is positive.\n2. Mutate the prompt generated "
                         "in Step 1 and generate a final prompt bracketed with <prompt> and </prompt>.\n\n1. ")
    # a completion in the example's format yields the mutated prompt
    assert final_prompt("Crossover Prompt: Classify it.\n2. <prompt>Decide if the review is positive.</prompt>") == \
        "Decide if the review is positive."


def test_ape_repository_template_and_per_prompt_dev_samples(smol, sst2):
    demos = sst2.train[:5]
    query = forward_query(sst2.task, demos)
    assert query.startswith("I gave a friend a instruction. Based on the instruction they produced the following "
                            "input-output pairs:\n\nInput: ") and query.endswith("\n\nThe instruction was to")
    assert "and five inputs." in forward_query(sst2.task, demos, "paper") and set(FORWARD_TEMPLATES) == {"repository", "paper"}
    black = smol.view(Access.black)
    a, b = sst2.dev[:2], sst2.dev[2:4]
    per = instruction_accuracies(black, sst2.task, ["Answer.", "Judge the review."], [a, b], 4)
    assert per == [instruction_accuracies(black, sst2.task, ["Answer."], a, 4)[0],
                   instruction_accuracies(black, sst2.task, ["Judge the review."], b, 4)[0]]


def test_ape_draws_a_dev_subsample_per_candidate(smol, sst2):
    from boxbench.methods.ape import Ape

    params = build_params(Ape, {"num_subsamples": 1, "prompts_per_subsample": 3, "eval_size": 2, "rounds": 0,
                                "max_instruction_tokens": 12})
    calls = []
    black = smol.view(Access.black)
    real = black.generate

    def spy(prompts, config):  # records which dev texts each scoring call read
        calls.append(list(prompts))
        return real(prompts, config)

    black.generate = spy  # type: ignore[method-assign]
    art = Ape().tune(black, task=sst2.task, train=sst2.train, dev=sst2.dev, params=params, seed=0)
    scoring = [p for batch in calls for p in batch if "Review:" in p and "I gave a friend" not in p]
    n = len(art.history)
    assert n >= 2 and len(scoring) == 2 * n
    texts = [frozenset(e.text for e in sst2.dev if any(e.text in p for p in scoring[2 * i : 2 * i + 2])) for i in range(n)]
    assert len(set(texts)) > 1  # candidates were scored on different subsamples


def test_pez_never_returns_its_start_unless_no_step_was_scored(smol, sst2):
    """The reference checks the held-out set first after eval_every steps and lets a later prompt win
    a tie: with lr 0 the prompt cannot move, every check ties, and the last step is chosen (the start's
    tokens, recorded as not moved). The earlier rule, kept as ``selection: with_start``, scores the
    start and keeps it on a tie. Without steps the start is all there is."""
    white = smol.view(Access.white)
    frozen = {"steps": 2, "eval_every": 1, "lr": 0.0, "prompt_length": 4, "batch_size": 4}
    ref = Pez().tune(white, task=sst2.task, train=sst2.train, dev=sst2.dev, params=build_params(Pez, frozen), seed=0)
    assert ref.stats["best_step"] == 2 and ref.stats["prompt_moved"] is False and ref.stats["selection"] == "reference"
    assert [h["step"] for h in ref.history] == [1, 2]  # step 0 is never scored
    old = Pez().tune(white, task=sst2.task, train=sst2.train, dev=sst2.dev, params=build_params(Pez, {**frozen, "selection": "with_start"}), seed=0)
    assert old.stats["best_step"] == 0 and [h["step"] for h in old.history] == [0, 1, 2]
    assert old.token_ids == ref.token_ids
    none = Pez().tune(white, task=sst2.task, train=sst2.train, dev=sst2.dev, params=build_params(Pez, {**frozen, "steps": 0}), seed=0)
    assert none.stats["best_step"] == 0 and none.history == [] and none.stats["best_dev_accuracy"] is None
    moved = Pez().tune(white, task=sst2.task, train=sst2.train, dev=sst2.dev, params=build_params(Pez, {**frozen, "lr": 0.3}), seed=0)
    assert moved.stats["best_step"] in (1, 2) and moved.stats["prompt_moved"] == (moved.token_ids != ref.token_ids)


def test_pez_table_marks_a_prompt_that_never_left_its_start():
    from boxbench.core.results import Record
    from boxbench.reports.pez import pez_table

    base = {"cell_key": "k", "cell_id": "k", "method": "pez", "access": "white", "status": "ok", "label": "pez", "model": "m",
            "dataset": "sst2", "pez_steps": 25, "candidate_vocab": 10}
    rows = [Record.from_json(r) for r in ({**base, "seed": 0, "best_step": 25, "prompt_moved": True},
                                          {**base, "seed": 1, "best_step": 25, "prompt_moved": False},
                                          {**base, "seed": 2, "best_step": 0})]  # a record from before prompt_moved: step 0 is the start
    table = pez_table(rows)
    row = dict(zip(table.headers, table.rows[0]))
    assert row["best step per seed"] == "25, 25 start, 0 start" and row["prompt left its start"] == "1 of 3 seeds"


def test_bbt_dev_scores_every_nth_evaluation_never_p0(smol, sst2):
    """The reference's serial mode dev-scores whichever candidate is evaluation #eval_every, #2·eval_every,
    … — here #3 and #6, mid-generation (population 4) — and never P₀; the earlier rule checks each
    generation's lowest-loss candidate at the end of a generation, P₀ first."""
    grey = smol.view(Access.grey)
    common = {"prompt_tokens": 4, "intrinsic_dim": 8, "popsize": 4, "budget": 8, "shots_per_class": 4, "eval_every": 3}
    calls = smol.usage.model_calls
    ref = Bbt().tune(grey, task=sst2.task, train=sst2.train, dev=sst2.dev, params=build_params(Bbt, common), seed=0)
    assert [h["evaluations"] for h in ref.stats["search_curve"][1:]] == [3, 6] and "dev_accuracy" not in ref.stats["search_curve"][0]
    assert ref.stats["best_at_evaluation"] in (3, 6) and not ref.stats["kept_p0"]
    assert smol.usage.model_calls - calls == (1 + 8) * 8 + 2 * 8  # batch of 8; dev draw of 8, scored twice
    calls = smol.usage.model_calls
    old = Bbt().tune(grey, task=sst2.task, train=sst2.train, dev=sst2.dev, params=build_params(Bbt, {**common, "dev_check": "generation_best"}), seed=0)
    assert [h["evaluations"] for h in old.stats["search_curve"]] == [0, 4, 8] and "dev_accuracy" in old.stats["search_curve"][0]
    assert smol.usage.model_calls - calls == (1 + 8) * 8 + 3 * 8
    few = Bbt().tune(grey, task=sst2.task, train=sst2.train, dev=sst2.dev, params=build_params(Bbt, {**common, "eval_every": 100}), seed=0)
    assert few.stats["best_dev_accuracy"] is None and few.stats["best_at_evaluation"] > 0  # none checked: the lowest loss


def test_evoprompt_first_population_is_the_best_half_and_their_paraphrases():
    scored = [{"instruction": f"p{i}", "dev_accuracy": a} for i, a in enumerate([0.5, 0.9, 0.7, 0.6, 0.8])]
    para = [{"instruction": "q1", "dev_accuracy": 0.1}, {"instruction": "q4", "dev_accuracy": 0.95}]
    assert [h["instruction"] for h in first_population(scored, para, 4)] == ["p1", "p4", "q1", "q4"]
    # a paraphrase that repeats a prompt (or was empty) leaves a place the next best fills
    assert [h["instruction"] for h in first_population(scored, [para[0], scored[1]], 4)] == ["p1", "p4", "q1", "p2"]
    assert len(first_population(scored, para, 5)) == 5  # odd sizes are filled too (the reference asserts even)
    assert PARAPHRASE.format(s="Classify it.") == ("Generate a variation of the following instruction while keeping the "
                                                   "semantic meaning.\nInput:Classify it.\nOutput:")


def test_evoprompt_parents_come_from_a_pool_drawn_with_replacement():
    rng = random.Random(0)
    pairs = parent_pairs(rng, [1.0, 0.0, 0.0, 0.0], 10, "pool")
    assert pairs == [(0, 0)] * 10  # the pool is all the one prompt with a score: it meets itself
    pairs = parent_pairs(random.Random(1), [0.5, 0.5, 0.5, 0.5], 200, "pool")
    assert any(a == b for a, b in pairs) and any(a != b for a, b in pairs)
    assert all(a != b for a, b in parent_pairs(random.Random(1), [0.5, 0.5, 0.5, 0.5], 200, "distinct"))


def test_evoprompt_paraphrases_enter_the_first_population(smol, sst2):
    params = build_params(EvoPrompt, {"popsize": 4, "iterations": 0, "init_size": 4, "eval_size": 4, "max_instruction_tokens": 24})
    art = EvoPrompt().tune(smol.view(Access.black), task=sst2.task, train=sst2.train, dev=sst2.dev, params=params, seed=0)
    initial = sorted((h for h in art.history if h["origin"] == "initial"), key=lambda h: -h["dev_accuracy"])
    start = art.stats["initial_population"]
    assert start[:2] == [h["instruction"] for h in initial[:2]] and len(start) == 4
    paraphrases = [h["instruction"] for h in art.history if h["origin"] == "paraphrase"]
    assert paraphrases and set(paraphrases) <= set(start[2:])
    old = EvoPrompt().tune(smol.view(Access.black), task=sst2.task, train=sst2.train, dev=sst2.dev,
                           params=build_params(EvoPrompt, {**params.__dict__, "init_population": "topk"}), seed=0)
    assert old.stats["initial_population"] == [h["instruction"] for h in initial[:4]]
    assert all(h["origin"] == "initial" for h in old.history)


def test_ape_proposals_sample_with_the_reference_top_p(smol, sst2, monkeypatch):
    from boxbench.methods.ape import Ape

    seen = []
    real = smol.generate

    def spy(prompts, config):  # what the backend is asked for
        seen.append((prompts[0], config.top_p, config.temperature))
        return real(prompts, config)

    monkeypatch.setattr(smol, "generate", spy)
    params = {"num_subsamples": 1, "prompts_per_subsample": 2, "eval_size": 2, "rounds": 1, "keep": 1,
              "resamples_per_candidate": 1, "max_instruction_tokens": 12}
    Ape().tune(smol.view(Access.black), task=sst2.task, train=sst2.train, dev=sst2.dev, params=build_params(Ape, params), seed=0)
    writing = [(top_p, t) for p, top_p, t in seen if "I gave a friend" in p or "Generate a variation" in p]
    assert len(writing) == 2 and set(writing) == {(0.9, 0.9)}  # the proposals and the round's paraphrases
    seen.clear()
    Ape().tune(smol.view(Access.black), task=sst2.task, train=sst2.train, dev=sst2.dev, params=build_params(Ape, {**params, "top_p": 1.0}), seed=0)
    assert {c[1] for c in seen if "I gave a friend" in c[0]} == {1.0}
    with pytest.raises(Exception, match="params.top_p"):
        build_params(Ape, {"top_p": 1.5})
