"""Prompt tuning and full fine-tuning on the real SmolLM2 model (tiny budgets)."""

from __future__ import annotations

import pytest
import torch

from boxbench.backends.hf import HFBackend
from boxbench.benchmarks.datasets import load_splits
from boxbench.core.evaluate import evaluate
from boxbench.core.method import Artifact
from boxbench.methods.full_finetune import FullFinetune, FullFinetuneParams
from boxbench.methods.embedding_prompt import EmbeddingPromptArtifact
from boxbench.methods.prompt_tuning import PromptTuning, PromptTuningParams
from boxbench.core.errors import UserError


def test_prompt_tuning_trains_only_the_prompt_and_reapplies(tmp_path):
    backend = HFBackend.load("smollm2-135m", device="cpu", dtype="float32", batch_size=8)
    before = {n: p.detach().clone() for n, p in backend.module.named_parameters()}
    splits = load_splits("sst2", train=16, test=12)
    art = PromptTuning().tune(backend.view("white"), task=splits.task, train=splits.train, dev=[],
                              params=PromptTuningParams(num_virtual_tokens=4, max_steps=3, batch_size=8), seed=0)
    assert art.embeds.shape == (4, 576) and art.stats["trainable_params"] == 4 * 576
    assert art.stats["train_steps"] == 3 and art.stats["train_examples_seen"] == 24
    for n, p in backend.module.named_parameters():
        assert torch.equal(p, before[n]), n
    art.save(tmp_path / "a")
    assert (tmp_path / "a" / "adapter" / "adapter_config.json").exists()  # a peft adapter folder too
    backend.batch_size = 1
    one = evaluate(art, art.attach(backend.view("white")), splits.task, splits.test)
    fresh = HFBackend.load("smollm2-135m", device="cpu", dtype="float32", batch_size=8)
    loaded = Artifact.load(tmp_path / "a")
    assert isinstance(loaded, EmbeddingPromptArtifact)
    many = evaluate(loaded, loaded.attach(fresh.view("white")), splits.task, splits.test)
    assert one["predictions"] == many["predictions"]  # batch 1 vs 8, reloaded: same predictions
    gen = fresh.view("black").generate(art.prompts(splits.task, [splits.test[0].text]))
    assert isinstance(gen[0], str)  # generation works with the soft prompt in front
    # a prompt-tuning artifact written before prompt tuning and BBT shared one artifact still loads
    import json
    import shutil

    legacy = tmp_path / "legacy"
    shutil.copytree(tmp_path / "a", legacy)
    meta = json.loads((legacy / "artifact.json").read_text())
    (legacy / "artifact.json").write_text(json.dumps({**{k: v for k, v in meta.items() if k != "after_bos"}, "kind": "soft_prompt"}))
    from safetensors.torch import load_file, save_file

    save_file({"prefix_embeds": load_file(str(legacy / "prompt_embeds.safetensors"))["prompt_embeds"]}, str(legacy / "prefix_embeds.safetensors"))
    (legacy / "prompt_embeds.safetensors").unlink()
    old = Artifact.load(legacy)
    assert isinstance(old, EmbeddingPromptArtifact) and not old.after_bos and torch.equal(old.embeds, loaded.embeds)


def test_full_finetune_refuses_when_memory_does_not_fit():
    backend = HFBackend.load("smollm2-135m", device="cpu", dtype="float32")
    splits = load_splits("sst2", train=8, test=4)
    with pytest.raises(UserError, match=r"full_finetune: needs about .* GiB more cpu memory .* use lora"):
        FullFinetune().tune(backend.view("white"), task=splits.task, train=splits.train, dev=[],
                            params=FullFinetuneParams(batch_size=100_000, max_length=4096), seed=0)
    art = FullFinetune().tune(backend.view("white"), task=splits.task, train=splits.train, dev=[],
                              params=FullFinetuneParams(max_steps=1, batch_size=4, save_weights=False), seed=0)
    assert art.stats["trainable_params"] == art.stats["total_params"] > 100_000_000
    with pytest.raises(UserError, match="not saved"):
        type(art)(None, None).attach(backend.view("white"))
