"""The one shared scorer: every method's artifact is evaluated here, the same way.

* grey/white views — protocol ``logprob``: every label word is scored as a continuation of the
  prompt (all of an example's label words from one forward row, batched) and the argmax wins.
* black views — protocol ``generate``: greedy generation, then the one label whose word/name the
  answer names; answers naming no label, or several (e.g. listing the options), count as wrong and
  are reported as ``invalid_rate``.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Sequence

from boxbench.core.backend import Access, BlackView, GenerationConfig
from boxbench.core.task import Example, Task

CHUNK = 64  # examples per progress update


def label_patterns(task: Task) -> list[list[str]]:
    """Per label, the strings that name it in a generated answer (label word and label name)."""
    out = []
    for word, name in zip(task.label_words, task.label_names):
        forms = {word.strip().lower(), name.strip().lower()}
        out.append(sorted(f for f in forms if f))
    return out


def parse_label(answer: str, task: Task) -> int | None:
    """The one label whose word or name ``answer`` names (whole words, any case), else None.

    An answer naming several labels ("politics, sports, business") is not a classification and
    counts as invalid, as under the references' exact match: crediting its first label would give
    a model that lists the options chance-level accuracy for saying nothing.
    """
    text = answer.lower()
    named = {label for label, forms in enumerate(label_patterns(task))
             if any(re.search(r"(?<![a-z0-9])" + re.escape(f) + r"(?![a-z0-9])", text) for f in forms)}
    return named.pop() if len(named) == 1 else None


def macro_f1(gold: Sequence[int], pred: Sequence[int | None], num_labels: int) -> float:
    """Macro-averaged F1 over the gold label set; ``None`` predictions are simply wrong."""
    f1s = []
    for c in range(num_labels):
        tp = sum(1 for g, p in zip(gold, pred) if g == c and p == c)
        fp = sum(1 for g, p in zip(gold, pred) if g != c and p == c)
        fn = sum(1 for g, p in zip(gold, pred) if g == c and p != c)
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return sum(f1s) / num_labels


def with_hint(task: Task, prompt: str) -> str:
    """The generate protocol's prompt: the task's answer hint, then the artifact's prompt."""
    return f"{task.answer_hint}\n\n{prompt}" if task.answer_hint else prompt


def argmax_labels(scores: Sequence[Sequence[float]]) -> list[int]:
    """The best-scoring label index of each row of label scores."""
    return [max(range(len(s)), key=s.__getitem__) for s in scores]


def predict_with_evidence(view: BlackView, task: Task, prompts: Sequence[str],
                          max_new_tokens: int = 8) -> tuple[list[int | None], list[str], list[list[float]]]:
    """Predicted label per prompt by the view's protocol, with its evidence: the raw answers
    (black) or every label's score (grey/white).

    This is the one place a prediction is made: the final evaluation and every method that scores
    candidates on its dev set (APE, USP, ...) come here, so all are measured the same way.
    """
    if view.access >= Access.grey:
        scores = view.score(list(prompts), [list(task.label_words)] * len(prompts))
        return list(argmax_labels(scores)), [], scores
    config = GenerationConfig(max_new_tokens=max_new_tokens, temperature=0.0, stop=["\n"])
    answers = view.generate([with_hint(task, p) for p in prompts], config)
    return [parse_label(a, task) for a in answers], answers, []


def predict(view: BlackView, task: Task, prompts: Sequence[str], max_new_tokens: int = 8) -> tuple[list[int | None], list[str]]:
    """Predicted label per prompt (plus the raw answers at black access); see ``predict_with_evidence``."""
    preds, answers, _ = predict_with_evidence(view, task, prompts, max_new_tokens)
    return preds, answers


Z95 = 1.959963984540054  # the normal quantile of a two-sided 95 % interval


def wilson(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion ``correct / n`` (``(0, 1)`` when n is 0)."""
    if n <= 0:
        return 0.0, 1.0
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def accuracy(gold: Sequence[int], pred: Sequence[int | None]) -> float:
    return sum(1 for g, p in zip(gold, pred) if g == p) / len(gold) if gold else 0.0


def evaluate(artifact: Any, view: BlackView, task: Task, test: Sequence[Example], *,
             max_new_tokens: int = 8, progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Accuracy, macro-F1, n, invalid_rate and protocol of ``artifact`` on ``test`` through ``view``.

    The protocol follows the view's access: logprob scoring at grey/white, generation at black.
    Also returns ``predictions`` (label index or None per example), ``answers`` (black) and
    ``scores`` (each label's score, grey/white) for the runner to store.
    """
    prompts = artifact.prompts(task, [e.text for e in test])
    preds: list[int | None] = []
    answers: list[str] = []
    scores: list[list[float]] = []
    for start in range(0, len(prompts), CHUNK):
        chunk = prompts[start : start + CHUNK]
        p, a, sc = predict_with_evidence(view, task, chunk, max_new_tokens)
        preds += p
        answers += a
        scores += sc
        if progress:
            progress(len(chunk))
    gold = [e.label for e in test]
    n = len(gold)
    return {
        "accuracy": accuracy(gold, preds),
        "macro_f1": macro_f1(gold, preds, task.num_labels) if n else 0.0,
        "n": n,
        "invalid_rate": sum(1 for p in preds if p is None) / n if n else 0.0,
        "protocol": "logprob" if view.access >= Access.grey else "generate",
        "predictions": preds,
        "answers": answers,
        "scores": scores,
        "prompts": prompts,
    }
