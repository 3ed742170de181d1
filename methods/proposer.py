"""The model that writes prompts, apart from the model being tuned (DSPy's prompt_model / task_model),
and the dev score every prompt optimiser ranks its candidate instructions by (``instruction_accuracies``).

A method that asks a model to write or rewrite instructions (APE, and any later prompt optimiser)
takes a ``proposer`` param: empty — the tuned model proposes, as in a self-contained run; otherwise
any model spec (alias, ``hf:ORG/NAME``, a path, or ``{backend: openai, model: ..., base_url: ...}``)
that is loaded once per cell and used at black access only (text in, text out). Its calls and
tokens are counted apart from the tuned model's (``proposer_calls``, ``proposer_prompt_tokens``,
``proposer_completion_tokens`` in the record; with no proposer they count the tuned model's own
proposal calls, which are then also part of its ``model_calls``), and so is the time spent in its
calls (``proposer_wall_s``, part of the cell's tune time). A proposer may take the CPU fast path
(``{model: ..., quantize: int8}``): it only writes candidates, which the tuned model's own dev
score then ranks, so its numerics are the proposer's choice, not the measurement's; the record's
``proposer_model`` names the quantization.
"""

from __future__ import annotations

import time
from typing import Any

from boxbench.backends import load_backend, parse_model_spec
from boxbench.core.backend import Access, BlackView, GenerationConfig
from boxbench.core.errors import UserError
from boxbench.core.evaluate import accuracy, predict
from boxbench.core.method import render_prompt
from boxbench.core.task import Example, Task

HELP = ("model that writes the instructions (alias, hf:NAME, path or an API model spec), at black access; "
        "empty: the tuned model proposes")


def check_proposer(spec: Any, where: str) -> None:
    """Suite-time check, one line naming the field: a proposer spec that cannot be loaded (unknown
    alias, weights not installed, missing path, unknown backend or option). Black access is the
    least any backend gives, and all a proposer is handed."""
    if not spec:
        return

    if not isinstance(spec, (str, dict)):
        raise UserError(f"{where}.params.proposer: expected a model spec (alias, hf:NAME, path or mapping), got {spec!r}")
    parse_model_spec(spec, f"{where}.params.proposer")  # unknown alias, missing weights or path, bad options


class Proposer:
    """Generates through the proposer's black view and keeps count of what it cost."""

    def __init__(self, spec: Any, target: BlackView) -> None:
        if spec:
            parsed = parse_model_spec(spec, "params.proposer")
            backend = load_backend(parsed, device="auto", dtype="auto", batch_size=16)
            self.view = backend.view(Access.black)
            quantize = backend.settings.get("quantize")
            self.name = f"{parsed.display} ({quantize})" if quantize else parsed.display
        else:
            self.view, self.name = target, "self"
        self.calls = self.prompt_tokens = self.completion_tokens = 0
        self.wall_s = 0.0

    def generate(self, prompts: list[str], config: GenerationConfig) -> list[str]:
        before, t0 = self.view.usage.snapshot(), time.perf_counter()
        out = self.view.generate(prompts, config)
        self.wall_s += time.perf_counter() - t0
        after = self.view.usage.snapshot()
        self.calls += after["model_calls"] - before["model_calls"]
        self.prompt_tokens += after["prompt_tokens"] - before["prompt_tokens"]
        self.completion_tokens += after["completion_tokens"] - before["completion_tokens"]
        return out

    def stats(self) -> dict[str, Any]:
        return {"proposer_model": self.name, "proposer_calls": self.calls, "proposer_prompt_tokens": self.prompt_tokens,
                "proposer_completion_tokens": self.completion_tokens, "proposer_wall_s": round(self.wall_s, 3)}


def instruction_accuracies(model: BlackView, task: Task, instructions: list[str],
                           examples: "list[Example] | list[list[Example]]", max_new_tokens: int) -> list[float]:
    """Accuracy of each instruction in front of each example's prompt, through the shared scorer at
    ``model``'s access (black: generated answers parsed — execution accuracy). ``examples``: one
    list for every instruction, or one list per instruction. All candidates go in one call, so a
    backend that shares prefixes computes each instruction once for all its examples."""
    per = examples if examples and isinstance(examples[0], list) else [examples] * len(instructions)
    prompts = [render_prompt(task, e.text, ins) for ins, exs in zip(instructions, per) for e in exs]  # type: ignore[union-attr]
    preds, _ = predict(model, task, prompts, max_new_tokens) if prompts else ([], [])
    out, start = [], 0
    for exs in per:
        out.append(accuracy([e.label for e in exs], preds[start : start + len(exs)]))  # type: ignore[union-attr]
        start += len(exs)
    return out
