"""BBT, Black-Box Tuning (Sun et al., ICML 2022): a continuous prompt tuned from the model's outputs
alone, no gradients. Grey box: it sends input embeddings in and reads label log-probabilities out
(``GreyView.input_embeddings`` / ``score_with_embeddings``), never the parameters.

The prompt of L positions is P = P₀ + A·z, placed right after the BOS token (as the reference's
model wrappers; first where the tokenizer adds none): P₀ the input embeddings of the fixed
vocabulary ids ``vocab_offset`` … ``vocab_offset``+L−1 (``p0: vocab_ids``, the reference's GPT data
loaders: ids 1000–1049), or of a text repeated to L (``p0: instruction``: the task instruction,
boxbench's earlier default); A a fixed random projection from R^d to R^(L×width), and z ∈ R^d
optimised by CMA-ES (the ``cma`` package) on the cross-entropy of the label words over a balanced
few-shot training batch. A is drawn N(0, σ_A²) with σ_A = std(E)/(√d · σ) as the reference, E the
input embeddings (the reference reads the whole embedding matrix; at grey access we read those of
the training texts). As the reference's serial mode (``bbt.py`` 501-532), the candidate that is
evaluation number ``eval_every``, 2·``eval_every``, … is scored on a dev set — a second balanced
draw of ``shots_per_class`` per class from the training pool, disjoint from the batch (``dev_from:
train``; ``dev``: the harness's dev split, boxbench's earlier default) — and a candidate replaces
the kept one only when its dev accuracy is higher; P₀ itself (z = 0) is never a candidate. When no
evaluation was checked (a budget below ``eval_every``; the reference then has no prompt) the
lowest-loss candidate is kept. (``dev_check: generation_best``, boxbench's earlier rule: each
generation's lowest-loss candidate is checked, once per ``eval_every`` evaluations, with z = 0
scored first and ties going to the lower training loss.) Differences from the reference, and why: docs/fidelity.md.

Budget in model calls, as the paper counts them: ``budget`` candidate evaluations, each one
forward pass of the training batch (the reference's 8,000 API calls over a 32-example batch). The
record's ``model_calls`` count one per prompt, so a candidate evaluation of a 32-example batch is 32
of them; ``candidate_evaluations`` in the record is the paper's count.

Defaults: the reference's (github.com/txsun1997/Black-Box-Tuning, ``bbt.py`` arguments and fixed
settings): L = 50 prompt tokens, d = 500, population 20, budget 8,000, σ = 1, no bound,
16 examples per class, the 'add' mode (the projection is added to P₀), cross-entropy loss,
dev evaluation every 100 calls.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

from boxbench.backends import BACKENDS
from boxbench.core.backend import Access, Backend, GreyView
from boxbench.core.errors import UserError
from boxbench.core.evaluate import accuracy, argmax_labels
from boxbench.core.method import Checked, Method, PromptArtifact, render_prompt
from boxbench.core.task import Example, Task
from boxbench.methods.embedding_prompt import EmbeddingPromptArtifact

P0S = ("vocab_ids", "instruction")
DEV_FROM = ("train", "dev")
DEV_CHECKS = ("every_nth", "generation_best")


@dataclass
class BbtParams(Checked):
    prompt_tokens: int = field(default=50, metadata={"help": "L, positions of the continuous prompt (reference: 50)", "min": 1})
    intrinsic_dim: int = field(default=500, metadata={"help": "d, dimension of the optimised vector z (reference: 500)", "min": 1})
    popsize: int = field(default=20, metadata={"help": "CMA-ES population per generation (reference: 20)"})
    budget: int = field(default=8000, metadata={"help": "candidate evaluations, each a forward pass of the training batch (reference: 8,000 API calls)", "min": 1})
    sigma: float = field(default=1.0, metadata={"help": "CMA-ES initial step size (reference: 1)", "gt": 0})
    shots_per_class: int = field(default=16, metadata={"help": "training examples per class in the batch every candidate is scored on (reference: 16)", "min": 1})
    eval_every: int = field(default=100, metadata={"help": "score the current best on dev every this many candidate evaluations (reference: 100)", "min": 1})
    dev_size: int = field(default=0, metadata={"help": "dev examples for that check; 0 = the whole dev split", "min": 0})
    p0: str = field(default="vocab_ids", metadata={"help": "vocab_ids (reference: embeddings of ids vocab_offset..+L) | instruction (init_text's embeddings repeated to L)", "choices": P0S})
    vocab_offset: int = field(default=1000, metadata={"help": "first vocabulary id of P₀ with p0 vocab_ids (reference: 1000)", "min": 0})
    init_text: str = field(default="", metadata={"help": "P₀ with p0 instruction: this text's input embeddings, repeated to L; empty = the task instruction"})
    dev_check: str = field(default="every_nth", metadata={"help": "every_nth (reference: dev-score evaluation #eval_every, #2·eval_every, …; strictly better wins; "
                                                                  "P₀ never) | generation_best (each generation's lowest-loss candidate, P₀ first, ties: lower loss)",
                                                          "choices": DEV_CHECKS})
    dev_from: str = field(default="train", metadata={"help": "train (reference: shots_per_class per class from the training pool, apart from the batch) | dev (the harness's dev split)", "choices": DEV_FROM})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.popsize < 2:
            raise UserError(f"params.popsize: CMA-ES needs at least 2 candidates per generation, got {self.popsize}")


def balanced_batch(train: list[Example], num_labels: int, per_class: int, rng: random.Random) -> list[Example]:
    """Up to ``per_class`` examples of each label, drawn with ``rng`` (the few-shot training set)."""
    out: list[Example] = []
    for label in range(num_labels):
        pool = [e for e in train if e.label == label]
        out += rng.sample(pool, min(per_class, len(pool)))
    rng.shuffle(out)
    return out


def initial_prompt(model: GreyView, task: Task, params: BbtParams) -> Any:
    """P₀ (L × width): the input embeddings of the vocabulary ids ``vocab_offset`` … +L−1
    (``p0: vocab_ids``, the reference's), or of ``init_text`` (default: the task instruction)
    repeated to L (``p0: instruction``)."""
    if params.p0 == "vocab_ids":
        return model.input_embeddings(range(params.vocab_offset, params.vocab_offset + params.prompt_tokens))
    init = model.input_embeddings(params.init_text or task.instruction or "Classify the text.")
    if init.shape[0] == 0:
        raise UserError("bbt: params.init_text encodes to no tokens; give a non-empty text")
    reps = -(-params.prompt_tokens // init.shape[0])
    return init.repeat(reps, 1)[: params.prompt_tokens]


def label_cross_entropy(scores: list[list[float]], gold: list[int]) -> float:
    """Mean cross-entropy of the gold label under the softmax over the label words' log-probabilities."""
    total = 0.0
    for row, g in zip(scores, gold):
        top = max(row)
        total += top + math.log(sum(math.exp(s - top) for s in row)) - row[g]
    return total / len(gold)


def search_data(train: list[Example], dev: list[Example], task: Task, params: BbtParams, seed: int) -> tuple[list[Example], list[Example]]:
    """The few-shot training batch (``shots_per_class`` per label) and the examples that check the
    search (``dev_from``: a second balanced batch from train, as the reference, or the dev split;
    cut to ``dev_size``)."""
    rng = random.Random(seed)
    batch = balanced_batch(train, task.num_labels, params.shots_per_class, rng)
    if not batch:
        raise UserError("bbt: the training pool is empty; raise limits.train in the suite")
    if params.dev_from == "train":
        chosen = {id(e) for e in batch}
        check = balanced_batch([e for e in train if id(e) not in chosen], task.num_labels, params.shots_per_class, rng)
    else:
        check = dev
    return batch, check[: params.dev_size] if params.dev_size else check


def subspace(view: GreyView, task: Task, params: BbtParams, seed: int, prompts: list[str]) -> tuple[Any, Any]:
    """P₀ (``initial_prompt``) and the fixed random projection A (seeded), scaled so that A·z is
    about as spread as the embeddings the model reads of ``prompts``: the prompt is P₀ + A·z."""
    import torch

    p0 = initial_prompt(view, task, params)
    seen = torch.cat([view.input_embeddings(p) for p in prompts[: min(8, len(prompts))]])  # what the model reads
    std = float(seen.std()) / (math.sqrt(params.intrinsic_dim) * params.sigma)
    gen = torch.Generator().manual_seed(seed)
    return p0, torch.randn(params.prompt_tokens * p0.shape[1], params.intrinsic_dim, generator=gen) * std  # A, fixed


class Objective:
    """What BBT's search evaluates of a point z: its prompt P₀ + A·z, that prompt's label
    cross-entropy on the training batch (minimised) and its accuracy on the check examples."""

    def __init__(self, view: GreyView, task: Task, params: BbtParams, seed: int, *, batch: list[Example], check: list[Example]) -> None:
        self.view, self.task, self.check = view, task, check
        self.prompts = [render_prompt(task, e.text, task.instruction) for e in batch]
        self.gold = [e.label for e in batch]
        self.check_prompts = [render_prompt(task, e.text, task.instruction) for e in check]
        self.p0, self.proj = subspace(view, task, params, seed, self.prompts)
        self.shape = (params.prompt_tokens, self.p0.shape[1])

    def prompt_of(self, z: Any) -> Any:
        import numpy as np
        import torch

        return self.p0 + (self.proj @ torch.as_tensor(np.asarray(z), dtype=torch.float32)).view(*self.shape)

    def loss(self, z: Any) -> float:
        words = [list(self.task.label_words)] * len(self.prompts)
        return label_cross_entropy(self.view.score_with_embeddings(self.prompt_of(z), self.prompts, words), self.gold)

    def dev_acc(self, z: Any) -> float:
        if not self.check:
            return 0.0
        scores = self.view.score_with_embeddings(self.prompt_of(z), self.check_prompts, [list(self.task.label_words)] * len(self.check))
        return accuracy([e.label for e in self.check], argmax_labels(scores))


class Bbt(Method[GreyView, BbtParams]):
    name = "bbt"
    access = Access.grey
    family = "module"
    Params = BbtParams
    description = "Black-Box Tuning: a continuous prompt P0 + A·z, z tuned by CMA-ES from label logprobs (no gradients)"

    @classmethod
    def check(cls, params: BbtParams, model: Any, where: str) -> None:
        backend = BACKENDS.get(model.backend)
        if backend.score_with_embeddings is Backend.score_with_embeddings:
            raise UserError(f"{where}: bbt sends input embeddings, which a {model.backend} model does not take; "
                            f"use a model served in process (backend: hf)")

    def tune(self, view: GreyView, *, task: Task, train: list[Example], dev: list[Example], params: BbtParams, seed: int) -> EmbeddingPromptArtifact:
        import cma
        import numpy as np

        batch, check = search_data(train, dev, task, params, seed)
        objective = Objective(view, task, params, seed, batch=batch, check=check)
        loss, dev_acc, prompt_of = objective.loss, objective.dev_acc, objective.prompt_of
        zero = [0.0] * params.intrinsic_dim
        first = loss(zero)
        nth = params.dev_check == "every_nth"
        best: dict[str, Any] = {"z": zero, "loss": first, "dev_accuracy": float("-inf") if nth else dev_acc(zero), "evaluation": 0}
        lowest: dict[str, Any] = {"z": zero, "loss": float("inf"), "evaluation": 0}  # every_nth's answer when nothing was checked
        history = [{"evaluations": 0, "best_loss": first, **({} if nth else {"dev_accuracy": best["dev_accuracy"]})}]
        es = cma.CMAEvolutionStrategy(zero, params.sigma, {"seed": seed + 1, "popsize": params.popsize, "verbose": -9,
                                                           "maxfevals": params.budget})
        done, next_check = 0, params.eval_every
        while done < params.budget and not es.stop():
            xs = es.ask()[: params.budget - done]
            fits = []
            for x in xs:
                fits.append(loss(x))
                done += 1
                if fits[-1] < lowest["loss"]:
                    lowest = {"z": list(map(float, x)), "loss": fits[-1], "evaluation": done}
                if nth and done % params.eval_every == 0:  # the reference: whichever candidate is evaluation #n
                    acc = dev_acc(x)
                    history.append({"evaluations": done, "loss": fits[-1], "dev_accuracy": acc})
                    if acc > best["dev_accuracy"]:
                        best = {"z": list(map(float, x)), "loss": fits[-1], "dev_accuracy": acc, "evaluation": done}
            if len(xs) < params.popsize:  # the budget ran out mid-generation
                break
            es.tell(xs, fits)
            i = int(np.argmin(fits))
            if not nth and (done >= next_check or done >= params.budget):
                next_check += params.eval_every
                acc = dev_acc(xs[i])
                history.append({"evaluations": done, "best_loss": fits[i], "dev_accuracy": acc})
                if (acc, -fits[i]) > (best["dev_accuracy"], -best["loss"]):
                    best = {"z": list(map(float, xs[i])), "loss": fits[i], "dev_accuracy": acc, "evaluation": done}
        if nth and best["dev_accuracy"] == float("-inf"):  # no evaluation was dev-checked
            best = {**lowest, "dev_accuracy": None}
        art = EmbeddingPromptArtifact(prompt_of(best["z"]).contiguous(), PromptArtifact(task.instruction), after_bos=True)
        art.stats.update(candidate_evaluations=done, budget=params.budget, train_batch=len(objective.prompts), loss_first=first,
                         loss_best=best["loss"], best_dev_accuracy=best["dev_accuracy"], best_at_evaluation=best["evaluation"],
                         dev_checked=len(check), dev_from=params.dev_from, dev_check=params.dev_check, p0=params.p0,
                         kept_p0=best["evaluation"] == 0, search_curve=history,
                         prompt_tokens=params.prompt_tokens, intrinsic_dim=params.intrinsic_dim)
        return art
