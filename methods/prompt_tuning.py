"""Soft prompt tuning (Lester et al., EMNLP 2021) through peft's ``PromptTuningConfig``:
n virtual token embeddings, initialised from a text, trained by the shared loop with the model
frozen. Artifact = the continuous prompt (``embedding_prompt.EmbeddingPromptArtifact``, the one BBT's
search returns too; in front of everything, as peft puts it) + the peft adapter folder (loadable by peft).

peft provides the config, the prompt-embedding module and the saved adapter; the forward pass,
in training and in evaluation, puts the embeddings in front of each input itself
(``backends.torch_utils.model_inputs``, ``Backend.set_input_prefix``): peft's forward drops ``position_ids``
for prompt learning, so with left-padded batches the real tokens' positions would shift with the
amount of padding and predictions would depend on the batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from boxbench.core.backend import Access, WhiteView
from boxbench.core.method import Method, PromptArtifact
from boxbench.core.task import Example, Task
from boxbench.methods.embedding_prompt import EmbeddingPromptArtifact
from boxbench.methods.training import TrainParams, forward_tail, freeze, train_loop


@dataclass
class PromptTuningParams(TrainParams):
    lr: float = field(default=3e-2, metadata={"help": "peak learning rate (soft prompts want a large one)"})
    num_virtual_tokens: int = field(default=20, metadata={"help": "length of the soft prompt", "min": 1})
    init_text: str = field(default="Classify the text into one of the given categories.",
                           metadata={"help": "initialise from this text's token embeddings (repeated to length); empty = random"})


class PromptTuning(Method[WhiteView, PromptTuningParams]):
    name = "prompt_tuning"
    access = Access.white
    Params = PromptTuningParams
    description = "soft prompt tuning (peft PromptTuningConfig), model frozen"
    family = "partial"

    def tune(self, view: WhiteView, *, task: Task, train: list[Example], dev: list[Example], params: PromptTuningParams, seed: int) -> EmbeddingPromptArtifact:
        import torch
        from peft import PromptTuningConfig, PromptTuningInit, get_peft_model

        base, tok = freeze(view.module), view.tokenizer
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
        stats = train_loop(peft_model, tok, task, train, params, seed, forward=fwd, instruction=task.instruction,
                      usage=view.usage, prefix_tokens=n)
        embeds = peft_model.get_prompt_embedding_to_save("default")
        art = EmbeddingPromptArtifact(embeds, PromptArtifact(task.instruction), after_bos=False, peft_model=peft_model)
        art.stats = stats
        return art
