"""USP, Universal Self-Adaptive Prompting (Wan et al., EMNLP 2023), classification variant. Grey box.

Stage 1: the model labels an unlabelled pool (``pool_size`` training *texts*; their labels are never
read) zero-shot through logprobs; each text's confidence is F = −entropy of its normalised label
distribution. Selection (``selection: usp``, the paper's rule): k/|C| pseudo-demonstrations per
predicted class (a class never predicted takes the texts with the highest P(c|x)), chosen greedily
by z(F) − λ·z(max cosine similarity to the demonstrations already chosen), λ = 0.2; similarity
from the sentence encoder KATE uses (a separate small model, not the tuned LLM). Controls:
``selection: confident`` (top-F per class, no diversity term) and ``random`` (pseudo-labelled,
random). Stage 2: the pseudo-demonstrations (text + the model's own label) form a few-shot prompt,
evaluated by the shared scorer.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any, Sequence

from boxbench.core.backend import Access, GreyView
from boxbench.core.errors import UserError
from boxbench.core.method import Checked, Method, PromptArtifact, render_prompt
from boxbench.core.task import Example, Task
from boxbench.methods.kate import embed

SELECTIONS = ("usp", "confident", "random")


@dataclass
class UspParams(Checked):
    pool_size: int = field(default=64, metadata={"help": "unlabelled training texts labelled zero-shot (paper: 64)", "min": 1})
    k: int = field(default=4, metadata={"help": "pseudo-demonstrations in the final prompt", "min": 1})
    selection: str = field(default="usp", metadata={"help": "usp | confident | random", "choices": SELECTIONS})
    lam: float = field(default=0.2, metadata={"help": "weight of the diversity (similarity) penalty"})
    encoder: str = field(default="all-MiniLM-L6-v2", metadata={"help": "sentence encoder for the similarity term"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.pool_size < self.k:
            raise UserError(f"params: need 1 <= k <= pool_size, got k={self.k}, pool_size={self.pool_size}")


def label_distribution(scores: Sequence[float]) -> list[float]:
    """Softmax of the label words' log-probabilities (normalised over the labels)."""
    top = max(scores)
    exp = [math.exp(s - top) for s in scores]
    total = sum(exp)
    return [e / total for e in exp]


def zscore(values: Sequence[float]) -> list[float]:
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    return [(v - mean) / std if std > 1e-12 else 0.0 for v in values]


def select(probs: list[list[float]], sims: Any, k: int, rule: str, lam: float, rng: random.Random) -> list[int]:
    """Indices of the chosen pseudo-demonstrations (see the module docstring)."""
    n_labels = len(probs[0])
    conf = [sum(p * math.log(p) for p in row if p > 0) for row in probs]  # F = −entropy
    pred = [max(range(n_labels), key=row.__getitem__) for row in probs]
    per = [k // n_labels + (1 if c < k % n_labels else 0) for c in range(n_labels)]
    chosen: list[int] = []
    for c in range(n_labels):
        cands = [i for i in range(len(probs)) if pred[i] == c and i not in chosen]
        if len(cands) < per[c]:  # class (almost) never predicted: the texts most likely to be c
            extra = sorted((i for i in range(len(probs)) if i not in chosen and i not in cands), key=lambda i: -probs[i][c])
            cands += extra[: per[c] - len(cands)]
        for _ in range(per[c]):
            if not cands:
                break
            if rule == "random":
                best = rng.choice(cands)
            elif rule == "confident" or not chosen:
                best = max(cands, key=lambda i: conf[i])
            else:
                z_f = zscore([conf[i] for i in cands])
                z_s = zscore([max(float(sims[i, j]) for j in chosen) for i in cands])
                best = cands[max(range(len(cands)), key=lambda j: z_f[j] - lam * z_s[j])]
            chosen.append(best)
            cands.remove(best)
    return chosen


class Usp(Method[GreyView, UspParams]):
    name = "usp"
    access = Access.grey
    Params = UspParams
    description = "zero-shot pseudo-labels on unlabelled texts; confident, diverse ones become demonstrations"
    family = "prompt"

    def tune(self, view: GreyView, *, task: Task, train: list[Example], dev: list[Example], params: UspParams, seed: int) -> PromptArtifact:
        rng = random.Random(seed)
        texts = [e.text for e in rng.sample(train, min(params.pool_size, len(train)))]  # labels are never read
        scores = view.score([render_prompt(task, t, task.instruction) for t in texts], [list(task.label_words)] * len(texts))
        probs = [label_distribution(s) for s in scores]
        sims = None
        if params.selection == "usp":
            emb = embed(params.encoder, texts)
            sims = emb @ emb.T
        chosen = select(probs, sims, params.k, params.selection, params.lam, rng)
        rng.shuffle(chosen)
        preds = [max(range(task.num_labels), key=probs[i].__getitem__) for i in chosen]
        demos = [Example(texts[i], y) for i, y in zip(chosen, preds)]
        art = PromptArtifact(task.instruction, demos)
        all_preds = [max(range(task.num_labels), key=row.__getitem__) for row in probs]
        art.stats.update(pool_size=len(texts), selection=params.selection,
                         pseudo_label_counts=[all_preds.count(c) for c in range(task.num_labels)],
                         demo_confidence=[round(max(probs[i]), 4) for i in chosen])
        return art
