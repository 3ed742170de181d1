"""Soft prompt tuning (Lester et al., EMNLP 2021) through peft's ``PromptTuningConfig``:
n virtual token embeddings, initialised from a text, trained by the shared loop with the model
frozen. Artifact = the peft adapter folder (loadable by peft) + the prompt embeddings.

peft provides the config, the prompt-embedding module and the saved adapter; the forward pass,
in training and in evaluation, puts the embeddings in front of each input itself
(``backends.torch_utils.model_inputs``, ``HFBackend.prefix_embeds``): peft's forward drops ``position_ids``
for prompt learning, so with left-padded batches the real tokens' positions would shift with the
amount of padding and predictions would depend on the batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from boxbench.backends.base import Access, BlackView, WhiteView, require
from boxbench.benchmarks.datasets import Example, Task
from boxbench.methods.base import Method, ModelArtifact, PromptArtifact
from boxbench.methods.training import TrainParams, forward_tail, freeze, train
from boxbench.registry import UserError


@dataclass
class PromptTuningParams(TrainParams):
    lr: float = field(default=3e-2, metadata={"help": "peak learning rate (soft prompts want a large one)"})
    num_virtual_tokens: int = field(default=20, metadata={"help": "length of the soft prompt", "min": 1})
    init_text: str = field(default="Classify the text into one of the given categories.",
                           metadata={"help": "initialise from this text's token embeddings (repeated to length); empty = random"})


class SoftPromptArtifact(ModelArtifact):
    """Learned prompt embeddings (n x hidden). Re-applies to models with the same embedding size."""

    kind = "soft_prompt"

    def __init__(self, embeds: Any = None, peft_model: Any = None, prompt: PromptArtifact | None = None) -> None:
        super().__init__(prompt)
        self.embeds = embeds
        self.peft_model = peft_model

    def save(self, folder: Path) -> None:
        from safetensors.torch import save_file

        super().save(folder)
        save_file({"prefix_embeds": self.embeds.contiguous()}, str(folder / "prefix_embeds.safetensors"))
        if self.peft_model is not None:
            self.peft_model.save_pretrained(folder / "adapter")

    def to_json(self) -> dict[str, Any]:
        return {"num_virtual_tokens": int(self.embeds.shape[0]), **super().to_json()}

    @classmethod
    def from_json(cls, data: dict[str, Any], folder: Path) -> "SoftPromptArtifact":
        from safetensors.torch import load_file

        return cls(load_file(str(folder / "prefix_embeds.safetensors"))["prefix_embeds"], None,
                   cls.prompt_from(data))

    def attach(self, view: BlackView) -> BlackView:
        backend = require(view, Access.white, "a soft prompt").backend
        if not hasattr(backend, "prefix_embeds"):
            raise UserError(f"a soft prompt needs a backend that takes input embeddings; {backend.name} does not")
        hidden = backend.module.get_input_embeddings().weight.shape[1]
        if self.embeds.shape[1] != hidden:
            raise UserError(f"soft prompt width {self.embeds.shape[1]} does not match {backend.name}'s embeddings ({hidden})")
        backend.prefix_embeds = self.embeds
        return view


class PromptTuning(Method[WhiteView]):
    name = "prompt_tuning"
    access = Access.white
    Params = PromptTuningParams
    description = "soft prompt tuning (peft PromptTuningConfig), model frozen"
    family = "partial"

    def tune(self, model: WhiteView, task: Task, train_set: list[Example], dev: list[Example], params: PromptTuningParams, seed: int) -> SoftPromptArtifact:
        import torch
        from peft import PromptTuningConfig, PromptTuningInit, get_peft_model

        base, tok = freeze(model.module), model.tokenizer
        n = params.num_virtual_tokens
        config = PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=n, prompt_tuning_init=PromptTuningInit.RANDOM)
        peft_model = get_peft_model(base, config)
        if params.init_text:  # peft's TEXT init, without its need for a tokenizer path: the text's
            ids = tok(params.init_text, add_special_tokens=False).input_ids  # token embeddings, repeated
            ids = (ids * (n // max(1, len(ids)) + 1))[:n]
            with torch.no_grad():
                init = base.get_input_embeddings()(torch.tensor(ids, device=base.device))
                peft_model.prompt_encoder["default"].embedding.weight.copy_(init)
        soft = peft_model.prompt_encoder["default"].embedding.weight  # the trainable n x hidden prompt
        fwd = lambda m, ids, mask, keep: forward_tail(base, ids, mask, keep, soft)  # noqa: E731
        stats = train(peft_model, tok, task, train_set, params, seed, forward=fwd, instruction=task.instruction)
        embeds = peft_model.get_prompt_embedding_to_save("default")
        art = SoftPromptArtifact(embeds, peft_model, PromptArtifact(task.instruction))
        art.stats = stats
        return art
