"""Compute on a hardware-independent axis: FLOPs estimated from the tokens each model processed.

Per model of N parameters (every parameter once, tied embeddings once: the output head's product
is real work on every token), from its ``Usage`` counts:

* forward: 2·N per token read or generated (``prompt_tokens + completion_tokens``);
* backward: 2·N per token for the activation gradients, plus 2 per token for every parameter that
  takes a weight gradient (``grad_param_tokens``), on top of the pass's own forward (2·N): so
  training every weight ≈ 6·N per token (Kaplan et al., 2020), a frozen model with LoRA ≈ 4·N (+ 2·N_lora),
  and a gradient to the inputs only (PEZ) ≈ 4·N.

Left out, and small at these lengths: attention's context term (2·n_layer·n_ctx·d_attn per token:
under 10 % of 2·N below 256 tokens for SmolLM2-135M), optimizer updates (a few FLOPs per trained
parameter per step), KATE's sentence encoder (22 M parameters over the pool and the test texts once)
and the neighbour vocabulary's search over embedding rows. Token counts are the method's demand:
a prefix a backend computes once and reuses is still counted for every prompt that reads it, so
the estimate does not depend on the engine (or on a cache) that served the calls.
"""

from __future__ import annotations

from typing import Any

FORMULA = "2·N·(prompt+completion tokens) + 4·N·backward tokens + 2·Σ(tokens × trained params)"


def flops(n_params: int, usage: dict[str, int]) -> float:
    """Estimated FLOPs of ``usage`` (a ``Usage.snapshot()``) on a model of ``n_params`` parameters."""
    forward = usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0)
    return float(2 * n_params * forward + 4 * n_params * usage.get("backward_tokens", 0) + 2 * usage.get("grad_param_tokens", 0))


def snapshot() -> list[tuple[str, int | None, dict[str, int]]]:
    """Every model loaded in this process so far with its usage now."""
    from boxbench.backends import loaded_models

    return [(name, n, usage.snapshot()) for name, n, usage in loaded_models()]


def estimate(after_tune: list[tuple[str, int | None, dict[str, int]]],
             after_eval: list[tuple[str, int | None, dict[str, int]]]) -> dict[str, Any]:
    """The record's ``compute``: FLOPs of tuning and of evaluation, in all and per model. A model
    whose size is unknown (an API model without ``n_params``) is listed in ``unknown`` and its
    share left out, so the totals are then lower bounds."""
    zero: dict[str, int] = {}
    by_model, unknown = [], []
    tune_total = eval_total = 0.0
    for i, (name, n, end) in enumerate(after_eval):
        start = after_tune[i][2] if i < len(after_tune) else zero
        tuned = start if i < len(after_tune) else zero
        spent = {k: end[k] - start.get(k, 0) for k in end}
        if not any(tuned.values()) and not any(spent.values()):
            continue  # loaded and never called (e.g. a model only checked)
        if n is None:
            unknown.append(name)
            continue
        t, e = flops(n, tuned), flops(n, spent)
        tune_total, eval_total = tune_total + t, eval_total + e
        by_model.append({"model": name, "n_params": n, "tune_flops": t, "eval_flops": e,
                         "backward_tokens": end.get("backward_tokens", 0)})
    return {"tune_flops": tune_total, "eval_flops": eval_total, "by_model": by_model, "unknown": unknown, "formula": FORMULA}
