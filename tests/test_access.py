"""Access classes are enforced by the views: a black view has no logprobs, a grey view no parameters."""

from __future__ import annotations

import pytest

from boxbench.core.backend import Access, AccessError, BlackView, GreyView, WhiteView


def test_access_order_and_parse():
    assert Access.black < Access.grey < Access.white
    assert Access.parse("GREY") is Access.grey
    with pytest.raises(Exception, match="not an access class"):
        Access.parse("gray-ish")


def test_black_view_exposes_no_logprob_score_or_module(smol):
    view = smol.view("black")
    assert type(view) is BlackView
    for name in ("score", "next_token_logprobs", "logprobs", "module", "tokenizer", "parameters"):
        assert not hasattr(view, name), name
    with pytest.raises(AccessError, match="needs grey access"):
        view.score(["x"], [[" y"]])
    with pytest.raises(AccessError, match="needs white access"):
        view.module  # noqa: B018
    public = {n for n in dir(view) if not n.startswith("_")}
    # a vocabulary fingerprint, a description of the model and a combining backend's per-model scores are no parameters
    assert public == {"access", "describe", "generate", "model_name", "usage", "vocabulary_id"}


def _reaches_backend(obj, backend, depth: int = 0) -> bool:
    """Does any attribute of ``obj`` (public or underscored, bound methods' targets included) lead
    to ``backend`` within two steps?"""
    if obj is backend:
        return True
    if depth == 2:
        return False
    for name in dir(obj):
        if name.startswith("__"):
            continue
        try:
            value = getattr(obj, name)
        except AccessError:
            continue
        if value is backend or (depth < 2 and not callable(value) and _reaches_backend(value, backend, depth + 1)):
            return True
        if getattr(value, "__self__", None) is backend:
            return True
    return False


def test_no_view_below_white_hands_out_its_backend(smol):
    """Issue 12.12: ``BlackView._backend(Access.black)`` returned the raw backend to any caller."""
    for access in (Access.black, Access.grey):
        view = smol.view(access)
        assert not hasattr(view, "_backend")
        assert not any(v is smol for v in vars(view).values())
        assert not _reaches_backend(view, smol), access
    assert smol.view("white").backend is smol  # white access is the whole model, by definition


def test_grey_view_has_logprobs_but_no_parameters(smol):
    view = smol.view(Access.grey)
    assert type(view) is GreyView
    assert callable(view.score) and callable(view.next_token_logprobs)
    for name in ("module", "tokenizer", "parameters", "backend"):
        assert not hasattr(view, name), name
    with pytest.raises(AccessError):
        view.module.parameters()  # noqa: B018
    top = view.next_token_logprobs(["Review: great fun.\nSentiment (positive or negative):"], k=5)[0]
    assert len(top) == 5 and all(v <= 0 for v in top.values())


def test_white_view_gives_the_module(smol):
    view = smol.view("white")
    assert type(view) is WhiteView
    assert sum(p.numel() for p in view.module.parameters()) > 100_000_000
    assert view.tokenizer is not None


def test_more_access_than_the_backend_gives_is_an_error(smol):
    old = smol.max_access
    smol.max_access = Access.black  # as a text-only API would be
    try:
        with pytest.raises(AccessError, match="gives black access, but grey access was asked for"):
            smol.view("grey")
        assert type(smol.view("black")) is BlackView
    finally:
        smol.max_access = old


def test_usage_is_counted_at_the_view(smol):
    view = smol.view("black")
    before = view.usage.snapshot()
    from boxbench.core.backend import GenerationConfig

    out = view.generate(["The capital of France is"], GenerationConfig(max_new_tokens=3))
    after = view.usage.snapshot()
    assert isinstance(out[0], str)
    assert after["model_calls"] == before["model_calls"] + 1
    assert after["prompt_tokens"] > before["prompt_tokens"]
    assert 1 <= after["completion_tokens"] - before["completion_tokens"] <= 3
