"""LoRA on the real SmolLM2 model: the loss falls, base weights stay frozen, and a saved adapter
re-applied to a freshly loaded base model reproduces the predictions exactly."""

from __future__ import annotations

import pytest
import torch

from boxbench.backends.hf import HFBackend
from boxbench.benchmarks.datasets import load_splits
from boxbench.core.evaluate import evaluate
from boxbench.core.method import Artifact
from boxbench.methods.lora import AdapterArtifact, LoRA, LoraParams, target_modules
from boxbench.methods.training import collate, encode_examples, forward_tail, label_loss


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """LoRA trained for a few steps on a tiny SST-2 slice (own backend: LoRA edits its model)."""
    torch.manual_seed(0)
    backend = HFBackend.load("smollm2-135m", device="cpu", dtype="float32", batch_size=8)
    splits = load_splits("sst2", train=16, test=16)
    base_before = {n: p.detach().clone() for n, p in backend.module.named_parameters()}
    batch = collate(encode_examples(backend.tokenizer, splits.task, splits.train, 128), backend.tokenizer.pad_token_id, "cpu")
    with torch.no_grad():
        loss_before = float(label_loss(forward_tail(backend.module, batch[0], batch[1], 2), batch[2]))
    params = LoraParams(lr=2e-3, max_steps=4, batch_size=8, warmup_ratio=0.0, dropout=0.0)
    art = LoRA().tune(backend.view("white"), task=splits.task, train=splits.train, dev=[], params=params, seed=0)
    with torch.no_grad():
        loss_after = float(label_loss(forward_tail(art.model, batch[0], batch[1], 2), batch[2]))
    folder = tmp_path_factory.mktemp("lora") / "artifact"
    art.save(folder)
    return backend, splits, art, folder, base_before, (loss_before, loss_after)


def test_training_loss_falls(trained):
    _, _, art, _, _, (before, after) = trained
    assert after < 0.7 * before, (before, after)
    assert art.stats["train_steps"] == 4 and art.stats["train_examples_seen"] == 32
    assert 0 < art.stats["trainable_params"] < 0.01 * art.stats["total_params"]


def test_base_parameters_stay_frozen(trained):
    _, _, art, _, base_before, _ = trained
    base = art.model.get_base_model()
    changed = [n for n, p in base.named_parameters() if "lora_" not in n and n in base_before and not torch.equal(p, base_before[n])]
    assert changed == []
    assert target_modules(base, "auto") == ["q_proj", "v_proj"]


def test_saved_adapter_reapplied_gives_identical_predictions(trained):
    backend, splits, art, folder, _, _ = trained
    first = evaluate(art, art.attach(backend.view("white")), splits.task, splits.test)
    fresh = HFBackend.load("smollm2-135m", device="cpu", dtype="float32", batch_size=8)
    prompts = art.prompts(splits.task, [e.text for e in splits.test[:4]])
    words = [list(splits.task.label_words)] * len(prompts)
    base_scores = fresh.score(prompts, words)
    loaded = Artifact.load(folder)
    assert isinstance(loaded, AdapterArtifact) and loaded.model is None
    again = evaluate(loaded, loaded.attach(fresh.view("white")), splits.task, splits.test)
    assert again["predictions"] == first["predictions"]
    assert again["accuracy"] == first["accuracy"]
    assert fresh.score(prompts, words) != base_scores  # the adapter is really attached
