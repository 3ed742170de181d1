"""The shared scorer on the real SmolLM2 model: padding, batching and multi-token label words."""

from __future__ import annotations

import math

import torch

from boxbench.backends.hf import HFBackend
from boxbench.benchmarks.datasets import SST2, AGNEWS, load_splits
from boxbench.core.evaluate import evaluate, macro_f1, parse_label
from boxbench.core.method import PromptArtifact, render_prompt

PROMPTS = [
    "Review: a gorgeous, witty, seductive movie.\nSentiment (positive or negative):",
    "Review: dull.\nSentiment (positive or negative):",
    "Review: the worst film of the year, tedious, badly acted and far too long for what it has to say.\nSentiment (positive or negative):",
]


def reference_logprob(backend: HFBackend, prompt: str, continuation: str) -> float:
    """log p(continuation | prompt) from one unpadded forward over prompt+continuation."""
    tok, model = backend.tokenizer, backend.module
    p = tok(prompt).input_ids
    c = tok(continuation, add_special_tokens=False).input_ids
    with torch.no_grad():
        lp = torch.log_softmax(model(torch.tensor([p + c])).logits[0].float(), -1)
    return sum(float(lp[len(p) - 1 + i, t]) for i, t in enumerate(c))


def test_scores_match_unpadded_reference_for_multi_token_words(smol):
    conts = [" positive", " negative", " Sci/Tech", " not good at all"]  # 1, 1, 3 and 4 tokens
    got = smol.score(PROMPTS, [conts] * len(PROMPTS))  # prompts of different lengths: left padding
    for prompt, row in zip(PROMPTS, got):
        for cont, value in zip(conts, row):
            assert math.isclose(value, reference_logprob(smol, prompt, cont), abs_tol=2e-3), (prompt, cont)


def test_predictions_do_not_depend_on_batch_size(smol):
    splits = load_splits("sst2", train=0, test=24)
    art = PromptArtifact()
    old = smol.batch_size
    try:
        smol.batch_size = 1
        one = evaluate(art, smol.view("grey"), splits.task, splits.test)
        smol.batch_size = 16
        many = evaluate(art, smol.view("grey"), splits.task, splits.test)
    finally:
        smol.batch_size = old
    assert one["predictions"] == many["predictions"]
    assert one["protocol"] == "logprob" and one["n"] == 24 and one["invalid_rate"] == 0.0


def test_black_protocol_generates_and_parses(smol):
    splits = load_splits("sst2", train=20, test=8)
    res = evaluate(PromptArtifact(demos=splits.train[:2]), smol.view("black"), splits.task, splits.test, max_new_tokens=4)
    assert res["protocol"] == "generate" and res["n"] == 8 and len(res["answers"]) == 8
    invalid = sum(p is None for p in res["predictions"])
    assert math.isclose(res["invalid_rate"], invalid / 8)
    assert 0.0 <= res["accuracy"] <= 1.0 - res["invalid_rate"]


def test_parse_label():
    assert parse_label(" positive", SST2) == 1
    assert parse_label("Negative, definitely", SST2) == 0
    assert parse_label("It is positive, not negative", SST2) is None  # several labels: ambiguous
    assert parse_label("politics, sports, business,", AGNEWS) is None  # listing the options is no answer
    assert parse_label("Positive. Very positive!", SST2) == 1  # one label named twice
    assert parse_label("positively", SST2) is None  # whole words only
    assert parse_label("I cannot tell", SST2) is None
    assert parse_label(" Sci/Tech news", AGNEWS) == 3
    assert parse_label("technology", AGNEWS) == 3
    assert parse_label(" politics and the world", AGNEWS) == 0 and parse_label("World news", AGNEWS) == 0


def test_macro_f1():
    assert macro_f1([0, 1, 1, 0], [0, 1, 1, 0], 2) == 1.0
    assert math.isclose(macro_f1([0, 0, 1, 1], [0, 0, 0, 0], 2), (2 * 2 / (2 * 2 + 2) + 0) / 2)
    assert macro_f1([0, 1], [None, None], 2) == 0.0


def test_render_prompt_puts_demos_before_the_query():
    from boxbench.core.task import Example

    text = render_prompt(SST2, "query text", "Classify.", [Example("good", 1)])
    assert text == ("Classify.\n\nReview: good\nThe sentiment of this review is positive\n\n"
                    "Review: query text\nThe sentiment of this review is")


def test_prompt_artifact_round_trips_and_reapplies(smol, tmp_path):
    from boxbench.core.method import Artifact
    from boxbench.methods.few_shot import FewShot, FewShotParams

    splits = load_splits("agnews", train=200, test=12)
    art = FewShot().tune(smol.view("black"), task=splits.task, train=splits.train, dev=[], params=FewShotParams(k=4, balanced=True), seed=3)
    assert sorted(d.label for d in art.demos) == [0, 1, 2, 3]
    art.save(tmp_path / "a")
    back = Artifact.load(tmp_path / "a")
    assert type(back) is PromptArtifact and back.demos == art.demos
    before = evaluate(art, smol.view("grey"), splits.task, splits.test)
    after = evaluate(back, smol.view("grey"), splits.task, splits.test)
    assert before["predictions"] == after["predictions"]


def test_shared_prefix_cache_gives_the_same_scores(smol):
    splits = load_splits("sst2", train=50, test=10)
    prompts = PromptArtifact(demos=splits.train[:4]).prompts(splits.task, [e.text for e in splits.test])
    conts = [[" negative", " positive", " Sci/Tech stuff"]] * len(prompts)
    try:
        smol.prefix_cache = False
        plain = smol.score(prompts, conts)
        smol.prefix_cache = True
        cached = smol.score(prompts, conts)
    finally:
        smol.prefix_cache = True
    assert all(smol._prefixes([smol.tokenizer(p).input_ids for p in prompts], [3] * len(prompts)))  # the cache is used
    for a, b in zip(plain, cached):
        for x, y in zip(a, b):
            assert math.isclose(x, y, abs_tol=1e-3)


def test_prefix_tree_over_a_call_reuses_each_shared_prefix_exactly(smol):
    """Rows sharing different prefixes in one call (two instructions x two demonstration sets, as
    several candidates scored together): each shared prefix is computed once, nested ones from
    their parent's keys and values; scores and generations equal those without any cache."""
    from boxbench.core.backend import GenerationConfig

    splits = load_splits("sst2", train=50, test=8)
    instructions = ["Decide whether the sentiment of each movie review below is positive or negative, reading it carefully.",
                    "Classify the review as positive or negative based on the overall tone that the writer conveys."]
    prompts = [render_prompt(splits.task, e.text, instructions[j % 2], splits.train[:2] if j % 4 < 2 else splits.train[2:4])
               for j, e in enumerate(splits.test)] + ["Hello there", "A prompt that shares nothing"]
    rows = [smol.tokenizer(p).input_ids for p in prompts]
    made: list[list[int]] = []
    extend = smol._extend
    smol._extend = lambda parent, ids: made.append(ids[len(parent.ids) if parent else 0 :]) or extend(parent, ids)
    try:
        prefixes = smol._prefixes(rows, [1] * len(rows))
    finally:
        del smol._extend
    assert prefixes[-2:] == [None, None]  # nothing shared: no cache
    assert len({id(p) for p in prefixes[:8]}) == 4  # one prefix per (instruction, demonstrations)
    for i, p in enumerate(prefixes[:8]):
        assert rows[i][: len(p.ids)] == p.ids and len(p.ids) > len(smol.tokenizer(instructions[i % 2]).input_ids)
    assert len(made) == 6  # 2 instruction nodes + 4 demonstration nodes, each extension computed once
    assert sum(map(len, made)) < sum(len(p.ids) for p in {id(p): p for p in prefixes[:8]}.values())
    conts = [list(splits.task.label_words)] * len(prompts)
    config = GenerationConfig(max_new_tokens=6, stop=[])
    try:
        smol.prefix_cache = False
        plain, plain_text = smol.score(prompts, conts), smol.generate(prompts, config)
    finally:
        smol.prefix_cache = True
    for a, b in zip(plain, smol.score(prompts, conts)):
        for x, y in zip(a, b):
            assert math.isclose(x, y, abs_tol=1e-4)
    assert smol.generate(prompts, config) == plain_text


def test_generation_stops_once_the_answer_has_ended(smol):
    """A row stops decoding once its text holds a stop string after some content: fewer tokens,
    the same answer after the view's cut."""
    from boxbench.core.backend import GenerationConfig
    from boxbench.core.tokens import finish_answer

    full = smol.generate(PROMPTS, GenerationConfig(max_new_tokens=12, stop=[]))
    before = smol.usage.snapshot()["completion_tokens"]
    cut = smol.generate(PROMPTS, GenerationConfig(max_new_tokens=12, stop=["\n", "."]))
    assert [finish_answer(t, ["\n", "."]) for t in cut] == [finish_answer(t, ["\n", "."]) for t in full]
    assert all(f.startswith(c) for f, c in zip(full, cut))
    assert smol.usage.snapshot()["completion_tokens"] - before < sum(len(smol.tokenizer(t, add_special_tokens=False).input_ids) for t in full)


def reference_greedy(backend: HFBackend, prompt: str, n: int) -> str:
    """transformers' own generate, one unpadded prompt at a time: the reference for boxbench's decoder."""
    tok, model = backend.tokenizer, backend.module
    ids = torch.tensor([tok(prompt).input_ids])
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, do_sample=False,
                             temperature=None, top_p=None, top_k=None, pad_token_id=tok.pad_token_id)
    return tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


def test_generation_matches_transformers_generate_with_and_without_the_prefix_cache(smol):
    from boxbench.core.backend import GenerationConfig

    splits = load_splits("sst2", train=50, test=6)
    shared = PromptArtifact("Answer with one word.", splits.train[:3]).prompts(splits.task, [e.text for e in splits.test])
    config = GenerationConfig(max_new_tokens=7, stop=[])
    for prompts in (PROMPTS, shared):  # different prompts (no shared prefix) / demonstrations shared
        got = smol.generate(prompts, config)
        assert got == [reference_greedy(smol, p, 7) for p in prompts]  # raw text: stop rules are the view's
    assert all(smol._prefixes([smol.tokenizer(p).input_ids for p in shared], [1] * len(shared)))
    smol.prefix_cache = False
    try:
        assert smol.generate(shared, config) == got
    finally:
        smol.prefix_cache = True
    sampled = smol.generate(PROMPTS[:1] * 4, GenerationConfig(max_new_tokens=6, temperature=1.0, seed=3, stop=[]))
    assert len(set(sampled)) > 1 and sampled == smol.generate(PROMPTS[:1] * 4, GenerationConfig(max_new_tokens=6, temperature=1.0, seed=3, stop=[]))


def test_batches_cover_every_row_once_longest_first_with_less_padding(smol):
    """The batch plan: every row exactly once, at most batch_size rows, longest first, and never
    more padded tokens plus per-batch cost than plain chunks of batch_size."""
    import random

    rng = random.Random(3)
    lengths = [rng.randint(10, 120) for _ in range(203)]
    batches = smol._batches(lengths)
    assert sorted(i for b in batches for i in b) == list(range(203))
    assert all(1 <= len(b) <= smol.batch_size for b in batches)
    firsts = [lengths[b[0]] for b in batches]
    assert firsts == sorted(firsts, reverse=True) and all(lengths[b[0]] == max(lengths[i] for i in b) for b in batches)
    order = sorted(range(203), key=lambda i: -lengths[i])
    chunks = [order[i : i + smol.batch_size] for i in range(0, 203, smol.batch_size)]

    def cost(bs: list[list[int]]) -> int:
        return sum(len(b) * max(lengths[i] for i in b) + smol.BATCH_COST for b in bs)

    assert cost(batches) <= cost(chunks)


def test_sampling_does_not_depend_on_batching_or_the_prefix_cache(smol):
    """Seeded sampling draws from one stream per prompt: the same samples whatever the batch size,
    the row order or the cache, so a speed change never changes a seeded proposer's output."""
    from boxbench.core.backend import GenerationConfig

    prompts = [PROMPTS[0], PROMPTS[0], PROMPTS[2], PROMPTS[1]]
    config = GenerationConfig(max_new_tokens=6, temperature=1.0, seed=5, stop=[])
    first = smol.generate(prompts, config)
    old = smol.batch_size
    try:
        smol.batch_size = 1
        one_by_one = smol.generate(prompts, config)
        smol.batch_size, smol.prefix_cache = old, False
        uncached = smol.generate(prompts, config)
    finally:
        smol.batch_size, smol.prefix_cache = old, True
    assert first == one_by_one == uncached and first[0] != first[1]
