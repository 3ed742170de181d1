"""The one shared scorer: every method's artifact is evaluated here, the same way.

* grey/white views — protocol ``logprob``: every label word is scored as a continuation of the
  prompt (all of an example's label words from one forward row, batched) and the argmax wins.
* black views — protocol ``generate``: greedy generation, then the first label word/name found in
  the answer; answers naming no label count as wrong and are reported as ``invalid_rate``.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Sequence

from boxbench.backends.base import Access, BlackView, GenerationConfig
from boxbench.benchmarks.datasets import Example, Task

CHUNK = 64  # examples per progress update


def label_patterns(task: Task) -> list[list[str]]:
    """Per label, the strings that name it in a generated answer (label word and label name)."""
    out = []
    for word, name in zip(task.label_words, task.label_names):
        forms = {word.strip().lower(), name.strip().lower()}
        out.append(sorted(f for f in forms if f))
    return out


def parse_label(answer: str, task: Task) -> int | None:
    """The label whose word or name appears first in ``answer`` (whole words, any case), or None."""
    text = answer.lower()
    best: tuple[int, int] | None = None
    for label, forms in enumerate(label_patterns(task)):
        for form in forms:
            m = re.search(r"(?<![a-z0-9])" + re.escape(form) + r"(?![a-z0-9])", text)
            if m and (best is None or m.start() < best[0]):
                best = (m.start(), label)
    return None if best is None else best[1]


def macro_f1(gold: Sequence[int], pred: Sequence[int | None], num_labels: int) -> float:
    """Macro-averaged F1 over the gold label set; ``None`` predictions are simply wrong."""
    f1s = []
    for c in range(num_labels):
        tp = sum(1 for g, p in zip(gold, pred) if g == c and p == c)
        fp = sum(1 for g, p in zip(gold, pred) if g != c and p == c)
        fn = sum(1 for g, p in zip(gold, pred) if g == c and p != c)
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return sum(f1s) / num_labels


def evaluate(artifact: Any, view: BlackView, task: Task, test: Sequence[Example], *,
             max_new_tokens: int = 8, progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Accuracy, macro-F1, n, invalid_rate and protocol of ``artifact`` on ``test`` through ``view``.

    The protocol follows the view's access: logprob scoring at grey/white, generation at black.
    Also returns ``predictions`` (label index or None per example) for the runner to store.
    """
    prompts = artifact.prompts(task, [e.text for e in test])
    preds: list[int | None] = []
    answers: list[str] = []
    grey = view.access >= Access.grey
    for start in range(0, len(prompts), CHUNK):
        chunk = prompts[start : start + CHUNK]
        if grey:
            scores = view.score(chunk, [list(task.label_words)] * len(chunk))  # type: ignore[attr-defined]
            preds += [max(range(len(s)), key=s.__getitem__) for s in scores]
        else:
            outs = view.generate(chunk, GenerationConfig(max_new_tokens=max_new_tokens, temperature=0.0, stop=["\n"]))
            answers += outs
            preds += [parse_label(o, task) for o in outs]
        if progress:
            progress(len(chunk))
    gold = [e.label for e in test]
    n = len(gold)
    correct = sum(1 for g, p in zip(gold, preds) if g == p)
    invalid = sum(1 for p in preds if p is None)
    return {
        "accuracy": correct / n if n else 0.0,
        "macro_f1": macro_f1(gold, preds, task.num_labels) if n else 0.0,
        "n": n,
        "invalid_rate": invalid / n if n else 0.0,
        "protocol": "logprob" if grey else "generate",
        "predictions": preds,
        "answers": answers,
    }
