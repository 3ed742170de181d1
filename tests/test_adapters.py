"""peft's other adapters (AdaLoRA, (IA)³, LoHa, LoKr, prefix tuning) on the real SmolLM2 model, one
contract for all: the label-word loss falls (one batch of four examples, trained on for four steps),
the base weights stay frozen, only a small share of the parameters train, and the saved adapter
re-applied to a freshly loaded model reproduces the predictions exactly (prefix tuning: also
independent of the batch it is scored in). QLoRA is refused on a CPU in one line."""

from __future__ import annotations

import pytest
import torch

from boxbench.core.backend import GenerationConfig
from boxbench.backends.hf import HFBackend
from boxbench.benchmarks.datasets import load_splits
from boxbench.core.evaluate import evaluate
from boxbench.core.method import Artifact, build_params
from boxbench.methods.registry import get_method
from boxbench.core.errors import UserError

LR = {"adalora": 3e-3, "ia3": 3e-3, "loha": 3e-3, "lokr": 3e-3, "prefix_tuning": 1e-2}  # a few steps must move the loss
PEFT_TYPE = {"adalora": "ADALORA", "ia3": "IA3", "loha": "LOHA", "lokr": "LOKR", "prefix_tuning": "PREFIX_TUNING"}


@pytest.mark.parametrize("name", sorted(LR))
def test_adapter_trains_stays_small_and_reapplies(name, tmp_path):
    torch.manual_seed(0)
    splits = load_splits("sst2", train=4, test=8)
    backend = HFBackend.load("smollm2-135m", device="cpu", dtype="float32", batch_size=8)
    before = {n: p.detach().clone() for n, p in backend.module.named_parameters()}
    cls = get_method(name)
    assert cls.access.name == "white" and cls.family == "partial"
    params = build_params(cls, {"lr": LR[name], "max_steps": 4, "batch_size": 4, "warmup_ratio": 0.0})
    art = cls().tune(backend.view("white"), task=splits.task, train=splits.train, dev=[], params=params, seed=0)
    s = art.stats
    assert s["adapter_type"] == PEFT_TYPE[name] and s["train_steps"] == 4
    assert s["loss_last"] < s["loss_first"], (s["loss_first"], s["loss_last"])
    assert 0 < s["trainable_params"] < 0.05 * s["total_params"]
    base = art.model.get_base_model()
    assert all(torch.equal(p, before[n]) for n, p in base.named_parameters() if n in before)  # frozen
    art.save(tmp_path / "artifact")
    first = evaluate(art, art.attach(backend.view("white")), splits.task, splits.test)
    fresh = HFBackend.load("smollm2-135m", device="cpu", dtype="float32", batch_size=8)
    loaded = Artifact.load(tmp_path / "artifact")
    view = loaded.attach(fresh.view("white"))
    again = evaluate(loaded, view, splits.task, splits.test)
    assert again["predictions"] == first["predictions"]
    assert sum(again["scores"], []) == pytest.approx(sum(first["scores"], []), abs=1e-4)
    if name == "prefix_tuning":  # learned keys/values in front: no shared-prefix cache, scores independent of the batch
        prompts = loaded.prompts(splits.task, [e.text for e in splits.test[:3]])
        words = [list(splits.task.label_words)]
        alone = view.score(prompts[2:], words)[0]
        assert view.score(prompts, words * 3)[2] == pytest.approx(alone, abs=1e-4)
        short = GenerationConfig(max_new_tokens=4)
        assert view.generate(prompts[:2], short) == [view.generate([p], short)[0] for p in prompts[:2]]


def test_qlora_is_refused_on_cpu_in_one_line():
    with pytest.raises(UserError, match=r"quantize: 4bit \(QLoRA\) needs a CUDA device, this cell runs on cpu") as e:
        HFBackend.load("smollm2-135m", device="cpu", quantize="4bit")
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match=r"m\.quantize: '8bit' is not supported"):
        HFBackend.check_spec("smollm2-135m", {"quantize": "8bit"}, "m")
