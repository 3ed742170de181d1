"""Calibration sweeps: learning curves over a budget parameter and the rule that picks the study's budget."""

from __future__ import annotations

from typing import Any

from boxbench.core.results import Record
from boxbench.reports.comparisons import accuracy_cell
from boxbench.reports.table import Table, flops_text, fmt, is_transfer, mean_accuracy, mean_or_none


def sweep_curves(records: list[Record]) -> dict[tuple[str, str, str, str], list[tuple[Any, list[Record]]]]:
    """Budget sweeps (a suite entry's ``sweep:``): per (method, model, dataset, swept param), the swept
    values in suite order, each with its cells (the seeds). A param swept together with others is
    drawn once per combination of the others (named in the method)."""
    ok = [r for r in records if r.status == "ok" and r.sweep and not is_transfer(r) and r.accuracy is not None]
    out: dict[tuple[str, str, str, str], dict[Any, list[Record]]] = {}
    for r in ok:
        base = r.label.rsplit("[", 1)[0]
        for param, value in (r.sweep or {}).items():
            others = {k: v for k, v in (r.sweep or {}).items() if k != param}
            name = base + (f" ({', '.join(f'{k}={v}' for k, v in others.items())})" if others else "")
            out.setdefault((name, r.model, r.dataset, param), {}).setdefault(value, []).append(r)
    return {k: list(v.items()) for k, v in out.items()}


PLATEAU_PP = 1.0  # a budget "stops rising" within this many points of the curve's best


BUDGET_CAP_S = 600.0  # the tuning time one study cell may take on the machine that ran the sweep (10 minutes on 2


def choose_budget(points: list[tuple[Any, list[Record]]]) -> tuple[Any, str] | None:
    """The budget rule of the CPU study: among the swept values whose tuning stayed under
    ``BUDGET_CAP_S``, the smallest whose accuracy is within ``PLATEAU_PP`` of the best of them
    (where the curve stops rising), and why; None for a non-numeric sweep."""
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v, _ in points):
        return None
    stats = [(v, mean_accuracy(g), mean_or_none(r.tune_wall_s for r in g) or 0.0) for v, g in points]
    within = [x for x in stats if x[2] <= BUDGET_CAP_S]
    if not within:
        return min(stats, key=lambda x: x[2])[0], f"every value's tuning exceeds {BUDGET_CAP_S:.0f} s: the cheapest"
    best = max(a for _, a, _ in within)
    value = min(v for v, a, _ in within if a >= best - PLATEAU_PP / 100 - 1e-9)  # 80.5 is within 1 point of 81.5
    over = [v for v, _, t in stats if t > BUDGET_CAP_S]
    if value == max(v for v, _, _ in within) and over:
        return value, f"cap: the largest value whose tuning stays under {BUDGET_CAP_S:.0f} s"
    if value == max(v for v, _, _ in stats):
        return value, "still rising at the largest value swept"
    return value, f"within {PLATEAU_PP:g} point of the best value under the cap"


def sweep_table(records: list[Record]) -> Table | None:
    """Learning curves as a table: accuracy (mean [95 % interval]) at each swept value, with the
    tuning time and compute it took, and the budget ``choose_budget`` picks from them."""
    curves = sweep_curves(records)
    if not curves:
        return None
    t = Table("Learning curves (budget sweeps)", ["method", "model", "dataset", "swept", "value", "accuracy % [95 % CI]", "tune s",
                                                  "tune FLOPs", "chosen"],
              note=f"one row per swept value; accuracy mean over seeds with its interval; chosen: the smallest value within "
                   f"{PLATEAU_PP:g} point of the best among those whose tuning took at most {BUDGET_CAP_S:.0f} s (where the curve "
                   f"stops rising, or the cap), and why")
    for (name, model, dataset, param), points in curves.items():
        chosen = choose_budget(points)
        for value, group in points:
            mark = f"← {chosen[1]}" if chosen and chosen[0] == value else ""
            t.rows.append([name, model, dataset, param, str(value), accuracy_cell(group),
                           fmt(mean_or_none(r.tune_wall_s for r in group), digits=0),
                           flops_text(mean_or_none(r.tune_flops for r in group)), mark])
    return t
