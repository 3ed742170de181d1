"""peft adapters on the one training loop: the base every adapter method shares, and peft's other
adapters beside LoRA (methods/lora.py) — AdaLoRA, (IA)³, LoHa, LoKr and prefix tuning.

Each method is a peft config on the frozen model, trained by ``training.train_loop`` on the label-word
loss; the artifact is the saved peft adapter folder (``AdapterArtifact``), attached at white access.
Defaults are the papers' where a paper gives one that applies to a decoder LM; each field's help says
where it comes from. QLoRA is LoRA on a model loaded in 4 bits: the model spec's ``quantize: 4bit``
(CUDA + bitsandbytes; refused on CPU), then peft's ``prepare_model_for_kbit_training``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, TypeVar

from boxbench.core.backend import Access, BlackView, WhiteView, require
from boxbench.core.errors import UserError
from boxbench.core.method import Method, ModelArtifact, PromptArtifact
from boxbench.core.task import Example, Task
from boxbench.methods.training import TrainParams, freeze, planned_steps, train_loop

# attention projections per architecture (peft's own defaults cover more; these are the classic q/v)
TARGETS = {
    "llama": ["q_proj", "v_proj"], "mistral": ["q_proj", "v_proj"], "qwen2": ["q_proj", "v_proj"],
    "qwen3": ["q_proj", "v_proj"], "gemma": ["q_proj", "v_proj"], "gemma2": ["q_proj", "v_proj"],
    "gemma3_text": ["q_proj", "v_proj"], "gemma3": ["q_proj", "v_proj"], "phi3": ["qkv_proj"],
    "gpt2": ["c_attn"], "opt": ["q_proj", "v_proj"], "gpt_neox": ["query_key_value"], "bloom": ["query_key_value"],
    "falcon": ["query_key_value"], "gptj": ["q_proj", "v_proj"],
}


def target_modules(model: Any, requested: str, who: str = "lora") -> list[str] | str:
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
    raise UserError(f"{who}: no known attention projections in a {arch!r} model; set params.target_modules (e.g. all-linear)")


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

        backend = require(view, Access.white, "a peft adapter").backend
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


TP = TypeVar("TP", bound=TrainParams)


class PeftMethod(Method[WhiteView, TP]):
    """Base of the peft adapter methods: ``peft_config`` on the frozen model, then the shared loop.
    A subclass may add a loss term (``regulariser``) or a per-step hook (``after_step``)."""

    access = Access.white
    family = "partial"

    def peft_config(self, base: Any, params: TP, steps: int) -> Any:  # base and the config: peft/torch objects
        """The peft config for ``base`` (``steps``: optimizer steps the loop will run)."""
        raise NotImplementedError

    def regulariser(self, model: Any, params: TP) -> Callable[[], Any] | None:
        return None

    def after_step(self, model: Any, params: TP) -> Callable[[int], None] | None:
        return None

    def tune(self, view: WhiteView, *, task: Task, train: list[Example], dev: list[Example], params: TP, seed: int) -> AdapterArtifact:
        import torch
        from peft import get_peft_model

        torch.manual_seed(seed)  # the adapter's init and dropout depend on the seed only (proxy_tuning's expert = LoRA's)
        base = freeze(view.module)
        if getattr(base, "is_loaded_in_4bit", False) or getattr(base, "is_loaded_in_8bit", False):
            from peft import prepare_model_for_kbit_training  # QLoRA: norms in fp32, inputs require grad

            base = prepare_model_for_kbit_training(base, use_gradient_checkpointing=params.gradient_checkpointing)
        try:
            peft_model = get_peft_model(base, self.peft_config(base, params, planned_steps(len(train), params)))
        except ValueError as e:  # e.g. target modules not found in this architecture
            first = (str(e).strip().splitlines() or [""])[0][:200]
            raise UserError(f"{self.name}: peft refused the config ({first}); set params.target_modules") from None
        stats = train_loop(peft_model, view.tokenizer, task, train, params, seed, instruction=task.instruction,
                      extra_loss=self.regulariser(peft_model, params), after_step=self.after_step(peft_model, params),
                      usage=view.usage)
        stats["adapter_type"] = str(peft_model.peft_config["default"].peft_type.value)
        art = AdapterArtifact(peft_model, prompt=PromptArtifact(task.instruction))
        art.stats = stats
        return art


def _auto(base: Any, requested: str) -> list[str] | str | None:
    """``auto`` -> None (peft's per-architecture default for that adapter); else as ``target_modules``."""
    return None if requested == "auto" else target_modules(base, requested)


# ----------------------------------------------------------------------------------- AdaLoRA
@dataclass
class AdaLoraParams(TrainParams):
    init_r: int = field(default=12, metadata={"help": "initial rank of every adapted matrix (peft default; the paper's b(0) = 1.5 × target)", "min": 1})
    target_r: int = field(default=8, metadata={"help": "average rank after pruning (the budget)", "min": 1})
    alpha: int = field(default=32, metadata={"help": "scaling numerator (peft default)"})
    dropout: float = field(default=0.0, metadata={"help": "dropout on the adapter input"})
    target_modules: str = field(default="all-linear", metadata={
        "help": "the paper adapts every weight matrix (q, k, v, o, both FFN ones): all-linear; auto = peft's per-architecture default"})
    tinit_ratio: float = field(default=0.1, metadata={"help": "share of steps before pruning starts (boxbench's choice; the paper sets t_i in steps per task)"})
    tfinal_ratio: float = field(default=0.3, metadata={"help": "share of final steps at the target budget (boxbench's choice, as above)"})
    delta_t: int = field(default=1, metadata={"help": "steps between rank re-allocations (peft default)", "min": 1})
    beta1: float = field(default=0.85, metadata={"help": "EMA of importance (paper and peft: 0.85)"})
    beta2: float = field(default=0.85, metadata={"help": "EMA of uncertainty (paper and peft: 0.85)"})
    orth_reg_weight: float = field(default=0.1, metadata={"help": "orthogonality regulariser γ (the paper's 0.1)"})


class AdaLora(PeftMethod[AdaLoraParams]):
    name = "adalora"
    Params = AdaLoraParams
    description = "AdaLoRA (peft): SVD-form low-rank adapters whose ranks are pruned to a budget while training"

    def peft_config(self, base: Any, params: AdaLoraParams, steps: int) -> Any:
        from peft import AdaLoraConfig

        tinit, tfinal = int(params.tinit_ratio * steps), int(params.tfinal_ratio * steps)
        if tinit + tfinal >= steps:  # peft needs a budgeting phase
            tinit, tfinal = 0, 0
        return AdaLoraConfig(init_r=params.init_r, target_r=params.target_r, lora_alpha=params.alpha, lora_dropout=params.dropout,
                             target_modules=_auto(base, params.target_modules), tinit=tinit, tfinal=tfinal, deltaT=params.delta_t,
                             beta1=params.beta1, beta2=params.beta2, orth_reg_weight=params.orth_reg_weight,
                             total_step=steps, task_type="CAUSAL_LM")

    def regulariser(self, model: Any, params: AdaLoraParams) -> Callable[[], Any] | None:
        """γ · mean ‖PᵀP − I‖_F over the adapters' P (lora_A rows) and Q (lora_B columns), as peft's
        forward adds it when it computes the loss itself (here the shared loop does)."""
        import torch

        mats = [(n, p) for n, p in model.named_parameters() if p.requires_grad and ("lora_A" in n or "lora_B" in n)]
        if not params.orth_reg_weight or not mats:
            return None

        def orth() -> Any:
            total = 0.0
            for n, p in mats:
                cov = p @ p.T if "lora_A" in n else p.T @ p
                total = total + torch.linalg.matrix_norm(cov - torch.eye(cov.shape[0], device=cov.device, dtype=cov.dtype))
            return params.orth_reg_weight * total / len(mats)

        return orth

    def after_step(self, model: Any, params: AdaLoraParams) -> Callable[[int], None] | None:
        return lambda step: model.base_model.update_and_allocate(step)


# ----------------------------------------------------------------------------------- (IA)³
@dataclass
class IA3Params(TrainParams):
    lr: float = field(default=3e-3, metadata={"help": "peak learning rate (T-Few, Liu et al. 2022: 3e-3)"})
    target_modules: str = field(default="auto", metadata={"help": "auto: peft's per-architecture keys, values and FFN down projection"})
    feedforward_modules: str = field(default="auto", metadata={"help": "the targets scaled on their input (FFN); auto: peft's default"})


class IA3(PeftMethod[IA3Params]):
    name = "ia3"
    Params = IA3Params
    description = "(IA)³ (peft): learned vectors rescaling keys, values and FFN activations"

    def peft_config(self, base: Any, params: IA3Params, steps: int) -> Any:
        from peft import IA3Config

        return IA3Config(target_modules=_auto(base, params.target_modules), feedforward_modules=_auto(base, params.feedforward_modules),
                         task_type="CAUSAL_LM")


# ----------------------------------------------------------------------------------- LoHa / LoKr
@dataclass
class LycorisParams(TrainParams):
    r: int = field(default=8, metadata={"help": "rank (peft default)", "min": 1})
    alpha: int = field(default=8, metadata={"help": "scaling numerator (peft default)"})
    dropout: float = field(default=0.0, metadata={"help": "rank dropout (peft default)"})
    target_modules: str = field(default="auto", metadata={"help": "auto: peft's per-architecture default, else all-linear or a comma list"})


class _Lycoris(PeftMethod[LycorisParams]):
    """LoHa and LoKr: the same parameters, peft's ``CONFIG`` class differs."""

    Params = LycorisParams
    CONFIG: ClassVar[str]

    def peft_config(self, base: Any, params: LycorisParams, steps: int) -> Any:
        import peft

        return getattr(peft, self.CONFIG)(r=params.r, alpha=params.alpha, rank_dropout=params.dropout,
                                          target_modules=_auto(base, params.target_modules), task_type="CAUSAL_LM")


class LoHa(_Lycoris):
    name = "loha"
    CONFIG = "LoHaConfig"
    description = "LoHa (peft, LyCORIS): low-rank Hadamard-product adapters"


class LoKr(_Lycoris):
    name = "lokr"
    CONFIG = "LoKrConfig"
    description = "LoKr (peft, LyCORIS): low-rank Kronecker-product adapters"


# ----------------------------------------------------------------------------------- prefix tuning
@dataclass
class PrefixParams(TrainParams):
    lr: float = field(default=5e-5, metadata={"help": "peak learning rate (Li & Liang 2021, table-to-text: 5e-5)"})
    num_virtual_tokens: int = field(default=10, metadata={"help": "prefix length per layer (Li & Liang, table-to-text: 10)", "min": 1})
    projection: bool = field(default=True, metadata={"help": "reparameterise the prefix through an MLP while training (the paper's)"})


class PrefixTuning(PeftMethod[PrefixParams]):
    name = "prefix_tuning"
    Params = PrefixParams
    description = "prefix tuning (peft): learned keys and values in front of every layer, model frozen"

    def peft_config(self, base: Any, params: PrefixParams, steps: int) -> Any:
        from peft import PrefixTuningConfig

        return PrefixTuningConfig(num_virtual_tokens=params.num_virtual_tokens, prefix_projection=params.projection,
                                  task_type="CAUSAL_LM")
