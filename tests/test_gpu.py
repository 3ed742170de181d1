"""GPU paths: CUDA peak-memory metering, bf16 LoRA steps, QLoRA, int8 staying on the CPU. Skipped
without a CUDA device (CI has none); run on a lent GPU machine. The model is built from a config (no
download, nothing to carry)."""

from __future__ import annotations

import math

import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    from boxbench.backends.hf import HFBackend

    config = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, tie_word_embeddings=True)
    model = LlamaForCausalLM(config).to("cuda", torch.bfloat16).eval()

    tok = HFBackend.load("smollm2-135m", device="cpu").tokenizer  # the real tokenizer (same vocab)
    return HFBackend(model, tok, "tiny-llama-from-config", batch_size=8, settings={"device": "cuda", "dtype": "bfloat16"})


def test_cuda_peak_memory_and_bf16_lora_steps():
    from boxbench.benchmarks.datasets import load_splits
    from boxbench.benchmarks.metering import Meter, peak_accelerator_bytes
    from boxbench.methods.lora import LoRA, LoraParams

    meter = Meter().start()
    backend = tiny_llama()
    splits = load_splits("sst2", train=32, test=8)
    art = LoRA().tune(backend.view("white"), task=splits.task, train=splits.train, dev=[], params=LoraParams(max_steps=4, batch_size=8), seed=0)
    meter.stop()
    assert art.stats["precision"] == "bf16-autocast" and art.stats["train_steps"] == 4
    peak = peak_accelerator_bytes()
    assert peak is not None and peak > 135e6 * 2  # at least the bf16 weights
    print(f"\ncuda peak {peak / 2**20:.0f} MiB, nvml peak {meter.peak_accelerator_nvml_bytes}")


def test_qlora_loads_in_4bit_and_trains_lora(tmp_path):
    """QLoRA: a model folder loaded with quantize: 4bit (NF4 through bitsandbytes), then LoRA steps."""
    pytest.importorskip("bitsandbytes", reason="QLoRA needs bitsandbytes (pip install bitsandbytes)")
    from transformers import LlamaConfig, LlamaForCausalLM

    from boxbench.backends.hf import HFBackend
    from boxbench.benchmarks.datasets import load_splits
    from boxbench.methods.lora import LoRA, LoraParams

    config = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=4,
                         num_attention_heads=9, num_key_value_heads=3, tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(tmp_path / "tiny")
    HFBackend.load("smollm2-135m", device="cpu").tokenizer.save_pretrained(tmp_path / "tiny")
    backend = HFBackend.load(str(tmp_path / "tiny"), device="cuda", quantize="4bit")
    assert backend.module.is_loaded_in_4bit and backend.settings["quantize"] == "4bit-nf4"
    splits = load_splits("sst2", train=32, test=8)
    art = LoRA().tune(backend.view("white"), task=splits.task, train=splits.train, dev=[], params=LoraParams(max_steps=3, batch_size=8), seed=0)
    assert art.stats["train_steps"] == 3 and math.isfinite(art.stats["loss_last"])


def test_int8_loads_on_the_cpu_when_the_device_is_auto():
    """``quantize: int8`` is the CPU fast path: with ``device: auto`` it loads on the CPU even where
    CUDA is (quick.yaml's int8 proposer on a GPU machine); an explicit ``cuda`` is refused in one line."""
    from boxbench.backends.hf import HFBackend
    from boxbench.core.errors import UserError

    assert HFBackend.load("smollm2-135m", quantize="int8").settings["device"] == "cpu"
    with pytest.raises(UserError, match="int8 is the CPU fast path"):
        HFBackend.load("smollm2-135m", quantize="int8", device="cuda")
