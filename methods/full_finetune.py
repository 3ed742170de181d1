"""Full fine-tuning: every parameter trained on the label-word loss by the shared loop.

Refuses with a clear error when the estimated extra memory (gradients + AdamW states + activations)
does not fit what the device has free, rather than crashing part-way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from boxbench.core.backend import Access, BlackView, WhiteView, require
from boxbench.core.errors import UserError
from boxbench.core.method import Method, ModelArtifact, PromptArtifact
from boxbench.core.task import Example, Task
from boxbench.methods.training import TrainParams, train_loop

GIB = 1024**3


@dataclass
class FullFinetuneParams(TrainParams):
    lr: float = field(default=2e-5, metadata={"help": "peak learning rate (AdamW)"})
    save_weights: bool = field(default=True, metadata={"help": "write the tuned weights (safetensors) into the artifact"})


def estimate_extra_bytes(model: Any, params: TrainParams) -> int:
    """fp32 master weights (where the model was loaded in 16 bits) + fp32 gradients + AdamW (two fp32
    moments) + a rough activation term, on top of the loaded weights."""
    n = sum(p.numel() for p in model.parameters())
    grads = n * 4 + n * max(0, 4 - next(model.parameters()).element_size())
    adam = n * 8
    cfg = model.config
    hidden = getattr(cfg, "hidden_size", 1024)
    layers = getattr(cfg, "num_hidden_layers", 24)
    vocab = getattr(cfg, "vocab_size", 50000)
    tokens = params.batch_size * params.max_length
    acts = tokens * (hidden * layers * 34 + vocab * 4) * (1 if not params.gradient_checkpointing else 0.25)
    return int(grads + adam + acts)


def free_bytes(device: Any) -> int:
    if device.type == "cuda":
        import torch

        return int(torch.cuda.mem_get_info(device)[0])
    import psutil

    return int(psutil.virtual_memory().available)


class FullWeightsArtifact(ModelArtifact):
    """A fully fine-tuned model's weights. Re-applies to a model of the same architecture."""

    kind = "full_weights"

    def __init__(self, model: Any = None, folder: Path | None = None, prompt: PromptArtifact | None = None, save_weights: bool = True) -> None:
        super().__init__(prompt)
        self.model, self.folder, self.save_weights = model, folder, save_weights

    def save(self, folder: Path) -> None:
        super().save(folder)
        if self.model is not None and self.save_weights:
            from safetensors.torch import save_model

            save_model(self.model, str(folder / "model.safetensors"))
            self.folder = folder

    def to_json(self) -> dict[str, Any]:
        return {"weights": "model.safetensors" if self.save_weights else None, **super().to_json()}

    @classmethod
    def from_json(cls, data: dict[str, Any], folder: Path) -> "FullWeightsArtifact":
        return cls(None, folder if data.get("weights") else None, cls.prompt_from(data))

    def attach(self, view: BlackView) -> BlackView:
        backend = require(view, Access.white, "fine-tuned weights").backend
        if self.model is not None and backend.module is self.model:
            return view
        if self.folder is None:
            raise UserError("these fully fine-tuned weights were not saved (save_weights: false); nothing to attach")
        from safetensors.torch import load_model

        load_model(backend.module, str(self.folder / "model.safetensors"), device=str(backend.module.device))
        return view


class FullFinetune(Method[WhiteView, FullFinetuneParams]):
    name = "full_finetune"
    access = Access.white
    Params = FullFinetuneParams
    description = "all parameters trained on the label-word loss (AdamW)"
    family = "full"

    def tune(self, view: WhiteView, *, task: Task, train: list[Example], dev: list[Example], params: FullFinetuneParams, seed: int) -> FullWeightsArtifact:
        module = view.module
        device = next(module.parameters()).device
        need, have = estimate_extra_bytes(module, params), free_bytes(device)
        if need > 0.9 * have:
            raise UserError(f"full_finetune: needs about {need / GIB:.1f} GiB more {device.type} memory for gradients, "
                            f"optimizer states and activations, but only {have / GIB:.1f} GiB is free; use lora or a smaller model/batch")
        loaded = next(module.parameters()).dtype
        # fp32 master weights: AdamW updates at lr 2e-5 round away in bf16/fp16 weights (a bf16
        # weight near 1.0 moves in steps of 2^-8); on GPU the forward still runs in bf16 autocast.
        module.float()
        for p in module.parameters():
            p.requires_grad_(True)
        stats = train_loop(module, view.tokenizer, task, train, params, seed, instruction=task.instruction, usage=view.usage)
        stats.update(estimated_extra_bytes=need, master_weights="float32",
                     loaded_dtype=str(loaded).removeprefix("torch."))
        art = FullWeightsArtifact(module, prompt=PromptArtifact(task.instruction), save_weights=params.save_weights)
        art.stats = stats
        return art
