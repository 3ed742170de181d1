"""In-process vLLM: runs only where vLLM and a CUDA GPU exist (never in CI); skips with the reason."""

from __future__ import annotations

import pytest

from boxbench.backends.vllm import unavailable_reason

pytestmark = pytest.mark.gpu


def test_vllm_black_and_grey_views_on_a_real_model():
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    from boxbench.backends import load_backend, parse_model_spec
    from boxbench.core.backend import Access, AccessError, GenerationConfig

    b = load_backend(parse_model_spec({"backend": "vllm", "model": "hf:HuggingFaceTB/SmolLM2-135M-Instruct",
                                       "gpu_memory_utilization": 0.3}))
    black = b.view(Access.black)
    with pytest.raises(AccessError):
        black.score
    assert black.generate(["The capital of France is"], GenerationConfig(max_new_tokens=4))[0]
    grey = b.view(Access.grey)
    s = grey.score(["Review: a wonderful, moving film\nThe sentiment of this review is"], [[" negative", " positive"]])
    assert s[0][1] > s[0][0]
    assert len(grey.next_token_logprobs(["Hello"], 5)[0]) == 5
    assert b.usage.model_calls >= 3
