"""LoRA through peft (Hu et al., ICLR 2022): low-rank adapters on the attention projections,
trained on the label-word loss by the shared loop. Artifact = the saved peft adapter folder.
QLoRA (Dettmers et al., 2023) = this method on a model loaded with ``quantize: 4bit`` (CUDA only)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from boxbench.methods.adapters import TARGETS, AdapterArtifact, PeftMethod, target_modules
from boxbench.methods.training import TrainParams

__all__ = ["TARGETS", "AdapterArtifact", "LoRA", "LoraParams", "target_modules"]


@dataclass
class LoraParams(TrainParams):
    r: int = field(default=8, metadata={"help": "adapter rank", "min": 1})
    alpha: int = field(default=16, metadata={"help": "LoRA scaling numerator (scale = alpha / r)"})
    dropout: float = field(default=0.05, metadata={"help": "dropout on the adapter input", "min": 0, "max": 1})
    target_modules: str = field(default="auto", metadata={"help": "auto (per architecture), all-linear, or a comma list"})


class LoRA(PeftMethod[LoraParams]):
    name = "lora"
    Params = LoraParams
    description = "LoRA adapters (peft) trained on the label-word loss"

    def peft_config(self, base: Any, params: LoraParams, steps: int) -> Any:
        from peft import LoraConfig

        return LoraConfig(r=params.r, lora_alpha=params.alpha, lora_dropout=params.dropout,
                          target_modules=target_modules(base, params.target_modules), task_type="CAUSAL_LM")
