"""Proxy-Tuning (Liu et al., COLM 2024): a small tuned expert and its untuned anti-expert steer a
large model through its log-probabilities, never its parameters.

    score(y | x) = large(y | x) + α · (expert(y | x) − antiexpert(y | x))

The large model is the cell's model at grey access. The small model is loaded in the same process
(its cost — load, expert training, both forward passes — lands in the same cell: wall time, peak
memory, and model calls/tokens, with the split per model under ``backend.usage_by_model``).
The expert is the small model with a LoRA adapter — a saved ``lora`` artifact (``expert: FOLDER``)
or trained in this cell by the ``lora`` method with ``expert_params`` — and the anti-expert is the
same small model with the adapter switched off.

The formula is applied to the label words' log-probabilities at the answer position (the
reference applies it to raw logits; for a single-token label the two differ by a per-position
constant, so the argmax is the same; multi-token labels sum the combined per-token values without
renormalising). Where the large model is an API, its scores are the server's (top-k or echo, named
in the record). Generation decodes token by token with the same formula over the large model's
top-k candidates (``ProxyBackend.generate``). Small and large must share a vocabulary: checked at ``boxbench check`` for the
offline aliases and at the start of the cell by tokenizer fingerprint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from boxbench.backends import load_backend, parse_model_spec
from boxbench.backends.weights import ALIASES
from boxbench.core.backend import Access, Backend, BlackView, GenerationConfig, GreyView, Usage, require
from boxbench.core.errors import UserError
from boxbench.core.evaluate import accuracy, argmax_labels
from boxbench.core.method import Artifact, Checked, Method, PromptArtifact, build_params
from boxbench.core.task import Example, Task
from boxbench.core.tokens import answer_ended
from boxbench.methods.lora import LoRA
from boxbench.methods.registry import load_artifact


@dataclass
class ProxyParams(Checked):
    small: str = field(default="qwen2.5-coder-0.5b", metadata={"help": "the small model (expert + anti-expert), same vocabulary"})
    alpha: float = field(default=1.0, metadata={"help": "weight of (expert − anti-expert)"})
    expert: str = field(default="", metadata={"help": "folder of a saved lora artifact; empty: train one in this cell"})
    expert_params: dict = field(default_factory=dict, metadata={"help": "lora params for the expert trained in the cell"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.expert_params, dict):
            raise UserError(f"params.expert_params: expected a mapping of lora params, got {self.expert_params!r}")
        build_params(LoRA, self.expert_params, "params.expert_params")
        if self.expert and not (Path(self.expert) / "artifact.json").is_file():
            raise UserError(f"params.expert: {self.expert!r} has no artifact.json; give a saved lora artifact folder")


class ProxyBackend(Backend):
    """The large backend steered by a small expert/anti-expert pair (grey access at most)."""

    name = "proxy"

    def __init__(self, large: GreyView, small: Backend, alpha: float) -> None:
        super().__init__()
        self.large, self.small, self.alpha = large, small, alpha  # the large model only through its grey view
        self.name = f"proxy({large.model_name} + {small.name})"
        self.max_access = Access.grey
        self.usage = Usage(**large.usage.snapshot())  # the runner's totals: all three models' calls and tokens
        self.by_model = {"large": Usage(), "expert": Usage(), "antiexpert": Usage()}
        self.parts: dict[str, list[list[float]]] = {"large": [], "expert": [], "antiexpert": []}

    def _timed(self, who: str, backend: Any, fn: Any) -> Any:
        before = backend.usage.snapshot()
        out = fn()
        after = backend.usage.snapshot()
        delta = {k: after[k] - before[k] for k in after}
        self.by_model[who].add(delta["model_calls"], delta["prompt_tokens"], delta["completion_tokens"])
        self.usage.add(delta["model_calls"], delta["prompt_tokens"], delta["completion_tokens"])  # each model keeps its own too
        return out

    def score(self, prompts: list[str], continuations: list[list[str]]) -> list[list[float]]:
        base = self._timed("large", self.large, lambda: self.large.score(prompts, continuations))
        return self._steer(prompts, continuations, base, keep=True)

    def _steer(self, prompts: list[str], continuations: list[list[str]], base: list[list[float]], keep: bool = False) -> list[list[float]]:
        """``base`` (the large model's scores) + α · (expert − anti-expert) for the same continuations."""
        expert = self._timed("expert", self.small, lambda: self.small.score(prompts, continuations))
        with self.small.module.disable_adapter():
            anti = self._timed("antiexpert", self.small, lambda: self.small.score(prompts, continuations))
        if keep:
            for name, rows in (("large", base), ("expert", expert), ("antiexpert", anti)):
                self.parts[name] += rows
        return [[b + self.alpha * (e - a) for b, e, a in zip(br, er, ar)] for br, er, ar in zip(base, expert, anti)]

    def next_token_logprobs(self, prompts: list[str], k: int) -> list[dict[str, float]]:
        """The large model's top-k tokens, re-scored by the proxy formula (candidates = large's top-k;
        their large-model values are the top-k's own, so the large model runs once)."""
        tops = self._timed("large", self.large, lambda: self.large.next_token_logprobs(prompts, k))
        tokens = [[t for t in top if t] for top in tops]
        scores = self._steer(prompts, tokens, [[top[t] for t in ts] for top, ts in zip(tops, tokens)])
        return [dict(sorted(zip(ts, s), key=lambda kv: -kv[1])) for ts, s in zip(tokens, scores)]

    DECODE_K = 20  # candidates per decoding step: the large model's top-k

    def generate(self, prompts: list[str], config: GenerationConfig) -> list[str]:
        """Decoding with the proxy's next-token scores, one token per step, over the large model's
        top-``DECODE_K`` candidates (exact for a candidate set that holds the combined argmax, and
        the only way where the large model is an API). Greedy, or sampled at ``temperature`` from
        the candidates (seeded by ``config.seed``). The text so far is re-read as text each step."""
        import math
        import random

        rng = random.Random(config.seed)
        ends = set(getattr(getattr(self.small, "tokenizer", None), "all_special_tokens", []) or [])
        out = ["" for _ in prompts]
        live = list(range(len(prompts)))
        for _ in range(config.max_new_tokens):
            if not live:
                break
            tops = self.next_token_logprobs([prompts[i] + out[i] for i in live], self.DECODE_K)
            still = []
            for i, top in zip(live, tops):
                if not top:
                    continue
                toks, vals = list(top), list(top.values())
                if config.temperature > 0:
                    m = max(vals)
                    pick = rng.choices(toks, [math.exp((v - m) / config.temperature) for v in vals])[0]
                else:
                    pick = toks[0]  # sorted best first
                if pick in ends:  # end of sequence
                    continue
                out[i] += pick
                if not answer_ended(out[i], config.stop):
                    still.append(i)
            live = still
        return out  # raw text: the view applies the stop rule, as for every backend

    def describe(self) -> dict[str, Any]:
        return {"backend": "proxy", "alpha": self.alpha, "large": self.large.describe(), "small": self.small.describe(),
                "usage_by_model": {k: u.snapshot() for k, u in self.by_model.items()}}


class ProxyArtifact(Artifact):
    """Which small model, α, the expert adapter (saved under ``expert/``) and the prompt."""

    kind = "proxy_tuning"

    def __init__(self, small: str, alpha: float, expert: Any, prompt: PromptArtifact | None = None) -> None:
        super().__init__()
        self.small, self.alpha, self.expert = small, alpha, expert
        self.prompt = prompt or PromptArtifact()
        self.small_backend: Backend | None = None  # the loaded small model, while in the tuning process
        self.proxy: ProxyBackend | None = None  # the combining backend ``attach`` made (its passes: ``extra_metrics``)

    def prompts(self, task: Task, texts: Any) -> list[str]:
        return self.prompt.prompts(task, texts)

    def save(self, folder: Path) -> None:
        super().save(folder)
        self.expert.save(folder / "expert")

    def to_json(self) -> dict[str, Any]:
        return {"small": self.small, "alpha": self.alpha, "expert": "expert", "prompt": self.prompt.to_json()}

    @classmethod
    def from_json(cls, data: dict[str, Any], folder: Path) -> "ProxyArtifact":
        return cls(data["small"], data["alpha"], load_artifact(folder / data.get("expert", "expert")),
                   PromptArtifact.from_json(data.get("prompt", {}), folder))

    def extra_metrics(self, gold: Sequence[int], result: dict[str, Any]) -> dict[str, Any]:
        """``component_accuracy``: the large model alone, the tuned expert alone and the untuned small
        model (anti-expert), each on the very examples the cell was scored on, from the proxy's own
        passes (logprob protocol; None when the rows do not line up)."""
        parts = self.proxy.parts if self.proxy is not None and result.get("protocol") == "logprob" else {}
        if not parts or any(len(rows) != len(gold) for rows in parts.values()):
            return {"component_accuracy": None}
        return {"component_accuracy": {name: accuracy(gold, argmax_labels(rows)) for name, rows in parts.items()}}

    def attach(self, view: BlackView) -> BlackView:
        grey = require(view, Access.grey, "proxy_tuning (its log-probabilities)")
        small = self.small_backend or load_small(self.small)
        check_vocabulary(grey, small)
        self.expert.attach(small.view(Access.white))
        self.proxy = ProxyBackend(grey, small, self.alpha)
        return self.proxy.view(Access.grey)


def load_small(spec: str) -> Backend:
    return load_backend(parse_model_spec(spec, "params.small"), device="auto", dtype="auto", batch_size=16)


def check_vocabulary(large: Any, small: Backend) -> str:
    """'verified' when both fingerprints agree, 'unverified' when the large one is unknown (API);
    a UserError when they differ. ``large``: a backend or a view."""
    lv = large.vocabulary_id()
    if lv is None:
        return "unverified (the large model does not expose its vocabulary)"
    if lv != small.vocabulary_id():
        name = getattr(large, "model_name", None) or large.name
        raise UserError(f"proxy_tuning: small model {small.name!r} and large model {name!r} have different "
                        f"vocabularies; their logits cannot be combined — pick a small model of the same family")
    return "verified"


class ProxyTuning(Method[GreyView, ProxyParams]):
    name = "proxy_tuning"
    access = Access.grey
    Params = ProxyParams
    description = "a small LoRA expert minus its untuned self steers a large model's logprobs"
    family = "logprob"

    @classmethod
    def check(cls, params: ProxyParams, model: Any, where: str) -> None:
        small, large = ALIASES.get(params.small), ALIASES.get(model.model) if model.backend == "hf" else None
        if small and large and small.vocab != large.vocab:
            raise UserError(f"{where}.params.small: {params.small!r} ({small.vocab} vocabulary) cannot steer "
                            f"{model.display!r} ({large.vocab} vocabulary); pick a small model of the same family")

    def tune(self, view: GreyView, *, task: Task, train: list[Example], dev: list[Example], params: ProxyParams, seed: int) -> ProxyArtifact:
        small = load_small(params.small)
        vocab = check_vocabulary(view, small)  # before any training
        if params.expert:
            expert = load_artifact(Path(params.expert))
            stats = {f"expert_{k}": v for k, v in expert.stats.items()}
        else:
            lora_params = build_params(LoRA, params.expert_params, "params.expert_params")
            expert = LoRA().tune(small.view(Access.white), task=task, train=train, dev=dev, params=lora_params, seed=seed)
            stats = {f"expert_{k}": v for k, v in expert.stats.items()}
        if not hasattr(expert, "attach") or expert.kind != "peft_adapter":
            raise UserError(f"params.expert: {params.expert!r} is a {expert.kind} artifact; proxy_tuning needs a lora adapter")
        art = ProxyArtifact(params.small, params.alpha, expert, PromptArtifact(task.instruction))
        art.small_backend = small
        art.stats.update(stats, small_model=params.small, alpha=params.alpha, vocabulary_check=vocab)
        return art
