"""LoRA through peft (Hu et al., ICLR 2022): low-rank adapters on the attention projections,
trained on the label-word loss by the shared loop. Artifact = the saved peft adapter folder."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from boxbench.backends.base import Access, BlackView, WhiteView
from boxbench.benchmarks.datasets import Example, Task
from boxbench.methods.base import Method, ModelArtifact, PromptArtifact
from boxbench.methods.training import TrainParams, freeze, train
from boxbench.registry import UserError

# attention projections per architecture (peft's own defaults cover more; these are the classic q/v)
TARGETS = {
    "llama": ["q_proj", "v_proj"], "mistral": ["q_proj", "v_proj"], "qwen2": ["q_proj", "v_proj"],
    "qwen3": ["q_proj", "v_proj"], "gemma": ["q_proj", "v_proj"], "gemma2": ["q_proj", "v_proj"],
    "gemma3_text": ["q_proj", "v_proj"], "gemma3": ["q_proj", "v_proj"], "phi3": ["qkv_proj"],
    "gpt2": ["c_attn"], "opt": ["q_proj", "v_proj"], "gpt_neox": ["query_key_value"], "bloom": ["query_key_value"],
    "falcon": ["query_key_value"], "gptj": ["q_proj", "v_proj"],
}


def target_modules(model: Any, requested: str) -> list[str] | str:
    """``auto`` -> the architecture's attention projections; else a comma list or ``all-linear``."""
    if requested != "auto":
        return requested if requested == "all-linear" else [m.strip() for m in requested.split(",") if m.strip()]
    arch = getattr(model.config, "model_type", "")
    if arch in TARGETS:
        return TARGETS[arch]
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    for guess in (["q_proj", "v_proj"], ["c_attn"], ["query_key_value"], ["qkv_proj"]):
        if set(guess) <= names:
            return guess
    raise UserError(f"lora: no known attention projections in a {arch!r} model; set params.target_modules (e.g. all-linear)")


@dataclass
class LoraParams(TrainParams):
    r: int = field(default=8, metadata={"help": "adapter rank"})
    alpha: int = field(default=16, metadata={"help": "LoRA scaling numerator (scale = alpha / r)"})
    dropout: float = field(default=0.05, metadata={"help": "dropout on the adapter input"})
    target_modules: str = field(default="auto", metadata={"help": "auto (per architecture), all-linear, or a comma list"})


class AdapterArtifact(ModelArtifact):
    """A peft adapter (+ the prompt it was trained with). Re-applies to the same base model."""

    kind = "peft_adapter"

    def __init__(self, model: Any = None, folder: Path | None = None, prompt: PromptArtifact | None = None) -> None:
        super().__init__(prompt)
        self.model = model  # the trained PeftModel, while in the process that trained it
        self.folder = folder

    def save(self, folder: Path) -> None:
        super().save(folder)
        if self.model is not None:
            self.model.save_pretrained(folder / "adapter")
            self.folder = folder / "adapter"

    def to_json(self) -> dict[str, Any]:
        return {"adapter": "adapter", **super().to_json()}

    @classmethod
    def from_json(cls, data: dict[str, Any], folder: Path) -> "AdapterArtifact":
        return cls(None, folder / data.get("adapter", "adapter"), cls.prompt_from(data))

    def attach(self, view: BlackView) -> BlackView:
        from peft import PeftModel

        if view.access < Access.white:
            raise UserError(f"a peft adapter needs white access to {view.model_name}; this cell has {view.access.name}")
        backend = view.backend  # type: ignore[attr-defined]
        module = backend.module
        if self.model is not None and (module is self.model or module is self.model.get_base_model()):
            backend.module = self.model  # the model it was trained on, in this process
        elif isinstance(module, PeftModel):
            raise UserError("this model already carries an adapter; load a fresh model to attach another")
        else:
            if self.folder is None:
                raise UserError("the adapter was never saved; nothing to attach")
            self.model = PeftModel.from_pretrained(module, str(self.folder))
            backend.module = self.model
        backend.module.eval()
        return view


class LoRA(Method):
    name = "lora"
    access = Access.white
    Params = LoraParams
    description = "LoRA adapters (peft) trained on the label-word loss"
    family = "partial"

    def tune(self, model: WhiteView, task: Task, train_set: list[Example], dev: list[Example], params: LoraParams, seed: int) -> AdapterArtifact:  # type: ignore[override]
        import torch
        from peft import LoraConfig, get_peft_model

        torch.manual_seed(seed)  # the adapter's init and dropout depend on the seed only (proxy_tuning's expert = this)
        base = freeze(model.module)
        config = LoraConfig(r=params.r, lora_alpha=params.alpha, lora_dropout=params.dropout,
                            target_modules=target_modules(base, params.target_modules), task_type="CAUSAL_LM")
        peft_model = get_peft_model(base, config)
        stats = train(peft_model, model.tokenizer, task, train_set, params, seed, instruction=task.instruction)
        art = AdapterArtifact(peft_model, prompt=PromptArtifact(task.instruction))
        art.stats = stats
        return art
