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

from boxbench.backends import loaded_models
from boxbench.backends.budget import money
from boxbench.core.results import Record

FORMULA = "2·N·(prompt+completion tokens) + 4·N·backward tokens + 2·Σ(tokens × trained params)"


def flops(n_params: int, usage: dict[str, int]) -> float:
    """Estimated FLOPs of ``usage`` (a ``Usage.snapshot()``) on a model of ``n_params`` parameters."""
    forward = usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0)
    return float(2 * n_params * forward + 4 * n_params * usage.get("backward_tokens", 0) + 2 * usage.get("grad_param_tokens", 0))


def snapshot() -> list[tuple[str, int | None, dict[str, int]]]:
    """Every model loaded in this process so far with its usage now."""
    return [(m.name, m.n_params, m.usage.snapshot()) for m in loaded_models()]


def spend_snapshot() -> list[dict[str, Any]]:
    """Every API model loaded in this process so far: what it billed, its price, cache hits, retries."""
    out = []
    for m in loaded_models():
        if m.billed is not None:
            d = m.billed.describe()
            out.append({"model": m.name, "price": d.get("price"), "requests": d["billed"]["requests"],
                        "prompt_tokens": d["billed"]["prompt_tokens"], "completion_tokens": d["billed"]["completion_tokens"],
                        "cache_hits": d.get("cache_hits", 0), "retries": d.get("retries", 0),
                        "retry_wait_s": d.get("retry_wait_s", 0.0), "usage_missing": d.get("usage_missing", 0)})
    return out


def spend_estimate(after_tune: list[dict[str, Any]], after_eval: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The record's ``spend``: money and billed tokens of tuning and of evaluation, per API model and
    in all (None without an API model; a total is None when some model's price is unknown)."""
    if not after_eval:
        return None
    keys = ("requests", "prompt_tokens", "completion_tokens", "cache_hits", "retries", "retry_wait_s", "usage_missing")
    by_model = []
    for i, end in enumerate(after_eval):
        start = after_tune[i] if i < len(after_tune) else {k: 0 for k in keys}
        tune = {k: start[k] for k in keys}
        ev = {k: end[k] - start[k] for k in keys}
        by_model.append({"model": end["model"], "price": end["price"], "tune": tune, "eval": ev,
                         "tune_cost": money(end["price"], tune["prompt_tokens"], tune["completion_tokens"]),
                         "eval_cost": money(end["price"], ev["prompt_tokens"], ev["completion_tokens"])})

    def total(k: str) -> float | None:
        vals = [m[k] for m in by_model]
        return None if any(v is None for v in vals) else float(sum(vals))

    return {"tune_cost": total("tune_cost"), "eval_cost": total("eval_cost"), "by_model": by_model,
            "cache_hits": sum(m["tune"]["cache_hits"] + m["eval"]["cache_hits"] for m in by_model),
            "billed_requests": sum(m["tune"]["requests"] + m["eval"]["requests"] for m in by_model),
            "retries": sum(m["tune"]["retries"] + m["eval"]["retries"] for m in by_model),
            "retry_wait_s": round(sum(m["tune"]["retry_wait_s"] + m["eval"]["retry_wait_s"] for m in by_model), 3)}


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


def record_spend(record: Record) -> tuple[float, int]:
    """(money, billed tokens) a record's API models spent, tuning and evaluation together (a capped
    cell's too); (0, 0) without API models."""
    spend = record.extra.get("spend") or {}
    cost, tokens = 0.0, 0
    for m in spend.get("by_model", []):
        for part in ("tune", "eval"):
            tokens += m[part]["prompt_tokens"] + m[part]["completion_tokens"]
        cost += (m.get("tune_cost") or 0.0) + (m.get("eval_cost") or 0.0)
    return float(cost), int(tokens)
