"""The one continuous-prompt artifact: L × width input embeddings put in front of every input, however
they were tuned — by gradients through the model (prompt tuning, white) or by CMA-ES from label
log-probabilities (BBT, grey).

Where it goes: ``after_bos`` — right after the BOS token where the model's tokenizer adds one (BBT's
reference), or before everything (peft / Lester et al.'s prompt tuning). At white access the
backend's own forward pass carries it (``HFBackend.prefix_embeds``: generation and scoring, exact
with left padding); at grey access it goes through ``score_with_embeddings`` (scoring only). Either
way the model's calls and tokens count the prompt's positions as prompt tokens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from boxbench.core.backend import Access, Backend, BlackView, GenerationConfig, GreyView, require
from boxbench.core.errors import UserError
from boxbench.core.method import ARTIFACT_KINDS, ModelArtifact, PromptArtifact

FILE, LEGACY_FILE = "prompt_embeds.safetensors", "prefix_embeds.safetensors"  # the latter: prompt tuning's before


class EmbeddingPromptBackend(Backend):
    """A grey view with a continuous prompt in front of every input: scores through
    ``score_with_embeddings``; the model's own calls and tokens are this backend's."""

    name = "embedding_prompt"

    def __init__(self, grey: GreyView, prefix: Any, after_bos: bool = True) -> None:
        super().__init__()
        self.grey, self.prefix, self.after_bos = grey, prefix, after_bos
        self.name = f"{grey.model_name} + continuous prompt"
        self.max_access = Access.grey
        self.usage = grey.usage

    def generate(self, prompts: list[str], config: GenerationConfig) -> list[str]:
        raise UserError("a continuous prompt is read through log-probabilities at grey access; generation with input "
                        "embeddings in front needs white access")

    def score(self, prompts: list[str], continuations: list[list[str]]) -> list[list[float]]:
        return self.grey.score_with_embeddings(self.prefix, prompts, continuations, after_bos=self.after_bos)

    def vocabulary_id(self) -> str | None:
        return self.grey.vocabulary_id()

    def describe(self) -> dict[str, Any]:
        return {**self.grey.describe(), "input_prefix_positions": int(self.prefix.shape[0])}


class EmbeddingPromptArtifact(ModelArtifact):
    """A continuous prompt and the text prompt it was tuned with; re-applies to any model with the
    same embedding width that takes input embeddings. ``peft_model``: where the prompt was trained
    through peft, its adapter folder is saved too (``adapter/``, loadable by peft)."""

    kind = "embedding_prompt"

    def __init__(self, embeds: Any = None, prompt: PromptArtifact | None = None, after_bos: bool = True,
                 peft_model: Any = None) -> None:
        super().__init__(prompt)
        self.embeds, self.after_bos, self.peft_model = embeds, after_bos, peft_model

    def save(self, folder: Path) -> None:
        from safetensors.torch import save_file

        super().save(folder)
        save_file({"prompt_embeds": self.embeds.contiguous()}, str(folder / FILE))
        if self.peft_model is not None:
            self.peft_model.save_pretrained(folder / "adapter")

    def to_json(self) -> dict[str, Any]:
        return {"prompt_positions": int(self.embeds.shape[0]), "after_bos": self.after_bos, **super().to_json()}

    @classmethod
    def from_json(cls, data: dict[str, Any], folder: Path) -> "EmbeddingPromptArtifact":
        from safetensors.torch import load_file

        if (folder / FILE).exists():
            embeds = load_file(str(folder / FILE))["prompt_embeds"]
        else:  # a prompt-tuning artifact written before the two kinds were one
            embeds = load_file(str(folder / LEGACY_FILE))["prefix_embeds"]
        return cls(embeds, cls.prompt_from(data), bool(data.get("after_bos", False)))  # older ones: in front of all

    def attach(self, view: BlackView) -> BlackView:
        grey = require(view, Access.grey, "a continuous prompt (input embeddings)")
        width = grey.input_embeddings("a").shape[1]
        if width != self.embeds.shape[1]:
            raise UserError(f"continuous prompt width {self.embeds.shape[1]} does not match {view.model_name}'s embeddings ({width})")
        if view.access < Access.white:
            return EmbeddingPromptBackend(grey, self.embeds, self.after_bos).view(Access.grey)
        require(view, Access.white, "a continuous prompt").backend.set_input_prefix(self.embeds, self.after_bos)
        return view


ARTIFACT_KINDS["soft_prompt"] = EmbeddingPromptArtifact  # prompt tuning's artifacts written before: the same kind now
