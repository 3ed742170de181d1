"""What tuning cost: time, memory, calls, tokens, money, FLOPs, the training curves, the fast paths, and accuracy against compute (the frontier)."""

from __future__ import annotations

import statistics
from typing import Any

from boxbench.core.results import Record
from boxbench.reports import published
from boxbench.reports.comparisons import accuracy_interval
from boxbench.reports.table import Table, flops_text, fmt, gib, is_transfer, mean_or_none, mean_std, on_main_test, row_order


def cost_table(records: list[Record], model: str) -> Table:
    """The survey's Table 2 layout: memory, wall time, calls and tokens per method and dataset."""
    ok = [r for r in records if r.status == "ok" and r.model == model and not is_transfer(r)]
    paper = any(published.cost(r.method, r.dataset) for r in ok)
    proposing = any(r.extra.get("proposer_model") for r in ok)
    paying = any(r.extra.get("spend") for r in ok)
    t = Table(f"Cost — {model}", ["method", "access", "dataset", "tune s", "eval s", "tune FLOPs", "eval FLOPs", "peak RSS GiB",
                                  "peak GPU GiB", "calls", "prompt tok", "gen tok", "invalid %", "n"]
              + (["proposer", "proposer calls", "proposer s", "proposer tok in / out"] if proposing else [])
              + (["cost tune / eval", "billed requests", "cache hits", "retries"] if paying else [])
              + ([f"{published.SOURCE}: memory · time"] if paper else []),
              note="means over seeds; FLOPs estimated from tokens (benchmarks/compute.py; '—': a record from before the estimate "
                   "or a model of unknown size); peak RSS sampled over the whole cell (model load included)"
                   + ("; proposer: the model that wrote the instructions ('self': the tuned model, whose calls then "
                      "include these) and what it cost, apart from the tuned model's calls (its seconds are part of tune s)" if proposing else "")
                   + ("; the published column: peak GPU memory and wall time of one SST-2 run (another model and hardware)" if paper else ""))
    for access, label in row_order(ok):
        for d in dict.fromkeys(r.dataset for r in ok):
            mine = [r for r in ok if r.label == label and r.access == access and r.dataset == d]
            if not mine:
                continue
            rss = mean_or_none(r.peak_host_rss_bytes for r in mine)
            gpu = mean_or_none(r.peak_accelerator_bytes for r in mine)
            t.rows.append([
                label, access, d, fmt(mean_or_none(r.tune_wall_s for r in mine)), fmt(mean_or_none(r.eval_wall_s for r in mine)),
                flops_text(mean_or_none(r.tune_flops for r in mine)), flops_text(mean_or_none(r.eval_flops for r in mine)),
                gib(rss, digits=2), gib(gpu, digits=2),
                fmt(mean_or_none(r.model_calls for r in mine), digits=0), fmt(mean_or_none(r.prompt_tokens for r in mine), digits=0),
                fmt(mean_or_none(r.completion_tokens for r in mine), digits=0),
                mean_std([r.invalid_rate for r in mine], 100),
                str(mine[0].n),
            ] + (_proposer_cells(mine) if proposing else []) + (_spend_cells(mine) if paying else [])
              + ([published.cost(mine[0].method, d) or "—"] if paper else []))
    return t


def _spend_cells(mine: list[Record]) -> list[str]:
    """Money (tuning / evaluation: every API model of the cell, the proposer's included), billed
    requests, cache hits and retries, means over seeds; '—' without an API model."""
    spends = [r.extra["spend"] for r in mine if r.extra.get("spend")]
    if not spends:
        return ["—"] * 4

    def money(k: str) -> str:
        vals = [s[k] for s in spends]
        return "unknown price" if any(v is None for v in vals) else f"{statistics.fmean(vals):.4g}"

    return [f"{money('tune_cost')} / {money('eval_cost')}", fmt(mean_or_none(s["billed_requests"] for s in spends), digits=0),
            fmt(mean_or_none(s["cache_hits"] for s in spends), digits=0), fmt(mean_or_none(s["retries"] for s in spends), digits=0)]


def _proposer_cells(mine: list[Record]) -> list[str]:
    if not mine[0].extra.get("proposer_model"):
        return ["—", "—", "—", "—"]
    return [str(mine[0].extra["proposer_model"]), fmt(mean_or_none(r.extra.get("proposer_calls") for r in mine), digits=0),
            fmt(mean_or_none(r.extra.get("proposer_wall_s") for r in mine)),
            f"{fmt(mean_or_none(r.extra.get('proposer_prompt_tokens') for r in mine), digits=0)} / "
            f"{fmt(mean_or_none(r.extra.get('proposer_completion_tokens') for r in mine), digits=0)}"]


def training_table(records: list[Record], model: str) -> Table | None:
    """Budgets and training figures of the trained methods (so cells can be compared fairly)."""
    ok = [r for r in records if r.status == "ok" and r.model == model and r.extra.get("train_steps") is not None]
    if not ok:
        return None
    t = Table(f"Training — {model}", ["method", "dataset", "seed", "examples seen", "steps", "trainable params", "total params",
                                       "train ex/s", "loss first → last", "stopped by", "precision"])
    for r in ok:
        t.rows.append([r.label, r.dataset, str(r.seed), f"{r.extra['train_examples_seen']:,}", str(r.extra["train_steps"]),
                       f"{r.extra.get('trainable_params', 0):,}", f"{r.extra.get('total_params', 0):,}", fmt(r.extra.get("train_examples_per_s"), digits=2),
                       f"{r.extra.get('loss_first', float('nan')):.3f} → {r.extra.get('loss_last', float('nan')):.3f}",
                       str(r.extra.get("stopped_by", "")), str(r.extra.get("precision", ""))])
    return t


def fast_path_table(records: list[Record]) -> Table | None:
    """Cells on a fast path (e.g. int8 weights): their accuracy against the exact model's, both
    read on the same first test examples with the same artifact (``exact_check``)."""
    checked = [r for r in records if r.status == "ok" and r.extra.get("exact_check")]
    if not checked:
        return None
    t = Table("Fast path against the exact model", ["method", "model", "dataset", "seed", "fast path", "n", "fast %", "exact %",
                                                    "difference (pp)", "agreement %", "eval s (fast)"],
              note="The same artifact evaluated on the fast model and on the exact model it stands for, on the "
                   "first n test examples (settings.exact_check).")
    for r in checked:
        c = r.extra["exact_check"]
        if "error" in c:
            t.rows.append([r.label, r.model, r.dataset, str(r.seed), str((r.backend or {}).get("quantize", "?")), "", "", "",
                           f"check failed: {c['error']}", "", ""])
            continue
        t.rows.append([r.label, r.model, r.dataset, str(r.seed), str((r.backend or {}).get("quantize", "?")), str(c["n"]),
                       f"{100 * c['accuracy']:.1f}", f"{100 * c['exact_accuracy']:.1f}", f"{100 * c['accuracy_delta']:+.1f}",
                       f"{100 * c['agreement']:.1f}", f"{r.eval_wall_s:.1f}"])
    return t


def frontier_points(records: list[Record]) -> dict[str, list[dict[str, Any]]]:
    """Per dataset, one point per (model, access, method label): mean tuning FLOPs (the record's
    ``tune_flops``, benchmarks/compute.py), accuracy with its 95 % interval, and whether the point is on
    the Pareto front — no other point reaches at least its mean accuracy with less tuning compute,
    or a higher one with as little. Cells without a compute estimate, transfer cells and cells on
    another test set than their dataset's main one (``main_test_sets``) are left out."""
    ok = on_main_test([r for r in records if r.status == "ok" and r.accuracy is not None and r.tune_flops is not None
                       and not is_transfer(r)])
    out: dict[str, list[dict[str, Any]]] = {}
    for d in dict.fromkeys(r.dataset for r in ok):
        points: list[dict[str, Any]] = []
        for model in dict.fromkeys(r.model for r in ok if r.dataset == d):
            mine = [r for r in ok if r.dataset == d and r.model == model]
            for access, label in row_order(mine):
                group = [r for r in mine if (r.access, r.label) == (access, label)]
                mean, lo, hi = accuracy_interval(group)
                points.append({"model": model, "access": access, "label": label, "seeds": len(group),
                               "tune_flops": statistics.fmean(r.tune_flops or 0.0 for r in group),
                               "eval_flops": statistics.fmean(r.eval_flops or 0.0 for r in group),
                               "accuracy": mean, "low": lo, "high": hi})
        for p in points:
            p["pareto"] = not any(q is not p and q["tune_flops"] <= p["tune_flops"] and q["accuracy"] >= p["accuracy"]
                                  and (q["tune_flops"] < p["tune_flops"] or q["accuracy"] > p["accuracy"]) for q in points)
        out[d] = sorted(points, key=lambda p: (p["tune_flops"], -p["accuracy"]))
    return out


def frontier_table(records: list[Record]) -> Table | None:
    """The headline: accuracy against tuning compute, the Pareto front marked (``frontier_points``)."""
    points = frontier_points(records)
    if not any(points.values()):
        return None
    t = Table("Accuracy against tuning compute (Pareto front)",
              ["dataset", "method", "access", "model", "tune FLOPs", "eval FLOPs", "accuracy % [95 % interval]", "on the front"],
              note="compute estimated from the tokens each model processed (benchmarks/compute.py: 2·N per token forward, "
                   "+4·N per token of a backward pass, +2 per token per trained parameter), tuning and evaluation apart, every model a "
                   "cell loaded (target, proposer, proxy pair); on the front: no method here reaches at least its mean accuracy "
                   "with less tuning compute, or a higher one with as little (means over seeds; the intervals say which gaps are real)")
    for d, pts in points.items():
        for p in pts:
            t.rows.append([d, p["label"], p["access"], p["model"], flops_text(p["tune_flops"]), flops_text(p["eval_flops"]),
                           f"{100 * p['accuracy']:.1f} [{100 * p['low']:.1f}, {100 * p['high']:.1f}]", "yes" if p["pareto"] else ""])
    return t
