"""Seeds until decided: which of a run's comparisons want another seed, and why each stopped.

A suite may give a method ``seeds: {min: 3, max: 10, until: decided}`` (benchmarks/suite.py). After
each round the runner (benchmarks/seeds.py) reads the run's records and asks ``decide`` about every
paired comparison the report makes (``comparisons.comparisons``: each method against zero-shot, each
access class's best against the others'; ``verdicts.verdict_orderings``: the verdicts' orderings,
with the class representatives of ``--select-best-from`` where given), answered across training runs:

* **decided** — p (Holm) < 0.05: no more seeds;
* **seed-independent** — a side with a plan whose seeds gave identical predictions: another seed
  would repeat them;
* **max seeds reached** — every side with a plan has ``max`` seeds;
* **below what max seeds detect** — with the observed Δ and seed spreads, even ``max`` seeds on the
  planned sides would leave p ≥ 0.05 (``stats.projected_p``, unadjusted: an optimistic bar, so seeds
  are spent whenever they might decide it);
* **adding a seed** — otherwise: each planned side below ``max`` gets one more seed;
* **fixed seeds** — neither side has a plan.

The same function writes the report's "Seeds per claim" table, so the report says per claim how many
seeds it used and why it stopped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from boxbench.core.results import Record
from boxbench.reports.comparisons import Comparison, comparisons, paired_bits
from boxbench.reports.stats import projected_p
from boxbench.reports.table import Table, is_transfer, p_text
from boxbench.reports.verdicts import Orderings, verdict_orderings

REASONS = ("decided", "seed-independent", "max seeds reached", "below what max seeds detect", "adding a seed", "fixed seeds")


@dataclass
class Decision:
    """One comparison's state under the seed plans: its seeds, p, why it stopped (or goes on), and
    the arms (``Cell.arm``) that get another seed."""

    model: str
    dataset: str
    a: tuple[str, str]  # (access, label)
    b: tuple[str, str]
    kind: str
    seeds: tuple[int, int]
    runs: tuple[int, int]
    p_holm: float
    reason: str
    extend: set[str] = field(default_factory=set)


def arm(model: str, dataset: str, label: str) -> str:
    """The key of a method entry's seeds on one model and dataset (as ``suite.Cell.arm``)."""
    return f"{model}|{dataset}|{label}"


def decide(records: list[Record], plans: dict[str, dict[str, Any]],
           chosen: dict[tuple[str, str, str], str] | None = None, *, paired: dict[str, list[Comparison]] | None = None,
           orderings: Orderings | None = None) -> list[Decision]:
    """Every comparison of the run's finished cells — the report's paired comparisons and its
    verdicts' orderings (``chosen``: their class representatives, as ``report --select-best-from``) —
    with its reason (module doc) under ``plans`` (arm → ``{min, max, until}``). ``paired`` (model →
    ``comparisons``) and ``orderings`` (``verdict_orderings``): the report's, where it computed them."""
    ok = [r for r in records if r.status == "ok" and not is_transfer(r) and r.accuracy is not None]
    orderings = verdict_orderings(records, chosen) if orderings is None else orderings
    out: list[Decision] = []
    for model in dict.fromkeys(r.model for r in ok):
        verdicts = [c for (m, _), cs in orderings.items() if m == model for c in cs]
        for c in (paired[model] if paired is not None and model in paired else comparisons(ok, model)) + verdicts:
            sides = [[r for r in ok if (r.model, r.dataset, r.access, r.label) == (model, c.dataset, *key)] for key in (c.a, c.b)]
            bits = paired_bits(*sides)
            if bits is None:
                continue
            arms = [arm(model, c.dataset, key[1]) for key in (c.a, c.b)]
            planned = [(plans.get(x) or {}).get("until") == "decided" for x in arms]
            room = [p and k < plans[x]["max"] and runs > 1 for p, k, runs, x in zip(planned, c.seeds, c.runs, arms)]
            d = Decision(model, c.dataset, c.a, c.b, c.kind, c.seeds, c.runs, c.p_holm, "decided")
            if not c.significant:
                if not any(planned):
                    d.reason = "fixed seeds"
                elif not any(room):
                    d.reason = "seed-independent" if any(p and runs == 1 for p, runs in zip(planned, c.runs)) else "max seeds reached"
                else:
                    target = [plans[x]["max"] if r else k for x, r, k in zip(arms, room, c.seeds)]
                    if projected_p(*bits, *target) >= 0.05:
                        d.reason = "below what max seeds detect"
                    else:
                        d.reason, d.extend = "adding a seed", {x for x, r in zip(arms, room) if r}
            out.append(d)
    return out


def seed_table(records: list[Record], plans: dict[str, dict[str, Any]],
               chosen: dict[tuple[str, str, str], str] | None = None, *, paired: dict[str, list[Comparison]] | None = None,
               orderings: Orderings | None = None) -> Any:
    """The report's "Seeds per claim": each comparison with a planned side, its seeds and why they stopped."""
    if not plans:
        return None
    rows = []
    for d in decide(records, plans, chosen, paired=paired, orderings=orderings):
        if not {arm(d.model, d.dataset, d.a[1]), arm(d.model, d.dataset, d.b[1])} & set(plans):
            continue  # no side adds seeds
        sides = [f"{k}" + (f" ({r} run{'s' if r > 1 else ''})" if r != k else "") + (f" of {plans[x]['max']}" if x in plans else "")
                 for k, r, x in zip(d.seeds, d.runs, (arm(d.model, d.dataset, d.a[1]), arm(d.model, d.dataset, d.b[1])))]
        reason = "still running: another seed was asked for" if d.reason == "adding a seed" else d.reason
        rows.append([d.model, d.dataset, d.a[1], d.b[1], d.kind, " / ".join(sides), p_text(d.p_holm), reason])
    if not rows:
        return None
    return Table("Seeds per claim", ["model", "dataset", "method", "compared with", "kind", "seeds (of max)", "p across runs (Holm)",
                                     "why no more seeds"], rows,
                 note="methods with seeds: {min, max, until: decided} got one more seed per round while a comparison was undecided "
                      "and could still be decided; decided: p (Holm) < 0.05 across training runs; seed-independent: that side's seeds "
                      "gave identical predictions; below what max seeds detect: with the observed difference and seed spread even max "
                      "seeds would leave p ≥ 0.05 (reports/seeds.py)")


def _cell_hours(r: Record) -> float:
    """A cell's measured hours (``Record.wall_seconds``, the sum ``check --estimate`` takes of a record)."""
    return r.wall_seconds() / 3600


def seed_cost_table(records: list[Record], plans: dict[str, dict[str, Any]], everywhere: int = 5) -> Table | None:
    """What the seeds cost, for a run with seed plans: per method entry (source model, dataset, label) its
    seeds, cells (a transfer entry's targets included) and their measured hours, beside what
    ``everywhere`` seeds for every entry with more than one seed would have cost (its mean hours per
    seed × ``everywhere``); the last row sums both."""
    if not plans:
        return None
    groups: dict[tuple[str, str, str], list[Record]] = {}
    for r in records:
        if r.status == "ok":
            groups.setdefault((r.source_model or r.model, r.dataset, r.label), []).append(r)
    rows, spent, flat, cells = [], 0.0, 0.0, 0
    for (model, d, label), rs in groups.items():
        seeds = len({r.seed for r in rs})
        hours = sum(map(_cell_hours, rs))
        alt = hours / seeds * (everywhere if seeds > 1 else 1)
        plan = plans.get(arm(model, d, label))
        rows.append([label, d, f"{plan['min']}–{plan['max']}, until decided" if plan else "fixed", str(seeds), str(len(rs)),
                     f"{hours:.2f}", f"{alt:.2f}"])
        spent, flat, cells = spent + hours, flat + alt, cells + len(rs)
    rows.append(["all", "", "", "", str(cells), f"{spent:.2f}", f"{flat:.2f}"])
    return Table("What the seeds cost", ["method", "dataset", "seeds planned", "seeds run", "cells", "hours",
                                         f"hours at {everywhere} seeds everywhere"], rows,
                 note=f"hours: model load + tuning + evaluation summed over the cells as measured (cells that shared the cores "
                      f"with other jobs count their slower seconds); at {everywhere} seeds everywhere: each entry with more than one "
                      f"seed at {everywhere} seeds, its mean hours per seed; fixed: the suite's own seed list")
