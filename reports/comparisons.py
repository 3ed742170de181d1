"""Paired comparisons between methods on the same test rows, answered across training runs and for these trained models (``reports.stats``), Holm within each family; the marks and verdict words built on them."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

from boxbench.core.results import Record
from boxbench.reports.stats import holm, paired_test, seed_interval, seed_paired_test, wilson
from boxbench.reports.table import ACCESS_ORDER, is_transfer, main_test_sets, mean_accuracy, row_order, test_set_of


@dataclass
class Comparison:
    """A paired comparison of two methods on the same model, dataset and test examples, answered
    twice (reports/stats.py): **across training runs** (``stats.seed_paired_test``, the default:
    ``p``, ``p_holm``, the interval, P(a > b), ``significant``) and for **these trained models**
    (``stats.paired_test``: ``fixed_p``, ``fixed_p_holm``, ``fixed_significant``)."""

    dataset: str
    a: tuple[str, str]  # (access, label)
    b: tuple[str, str]
    kind: str  # "vs zero-shot", "best of class" or "verdict"
    delta: float  # mean accuracy a − b, each side averaged over its seeds
    only_a: int  # examples a gets right more often than b (one seed each: a right, b wrong)
    only_b: int
    seeds: tuple[int, int]  # seeds of a, of b
    p: float = 1.0  # across training runs
    p_holm: float = 1.0
    detectable: float = 1.0  # the difference this design finds with 80 % power at α 0.05, across training runs
    test: str = "t"
    low: float = math.nan  # 95 % interval of delta across training runs
    high: float = math.nan
    prob_improvement: float = math.nan  # P(a > b): a run of a above a run of b
    runs: tuple[int, int] = (0, 0)  # independent runs (seeds with identical predictions count once)
    fixed_p: float = 1.0  # these trained models
    fixed_p_holm: float = 1.0
    fixed_test: str = "McNemar"
    claim: str = ""  # a verdict's claim where it is not an access-class ordering (published.METHOD_CLAIMS)
    stand_in: tuple[str, str] = ("", "")  # a verdict side's note where the best here stands in for a calibration pick without cells

    @property
    def significant(self) -> bool:
        """Across training runs (the report's ▲/▼ and verdicts)."""
        return self.p_holm < 0.05

    @property
    def fixed_significant(self) -> bool:
        """For these trained models only."""
        return self.fixed_p_holm < 0.05


PAIRED_NOTE = ("paired on the same test examples and answered twice: across training runs (the default; stats.seed_paired_test: "
               "Δ of the mean per-seed accuracies, its variance from each side's seed spread plus the paired rows' sampling error, "
               "a t interval and test at the Welch–Satterthwaite degrees of freedom; seeds with identical predictions and a "
               "deterministic baseline count as one run) and for these trained models (stats.paired_test: one seed each, "
               "McNemar's exact test; several, the per-example gap averaged over each side's seeds and z-tested: the trained "
               "models taken as fixed, the seed spread left out)")


def correct_bits(r: Record) -> str | None:
    return r.correct if isinstance(r.correct, str) else None


def paired_bits(xs: list[Record], ys: list[Record]) -> tuple[list[list[bool]], list[list[bool]]] | None:
    """Each side's per-seed correctness (seeds in order) on a test set both sides were scored on
    (the same test hash and length); None when they share none."""
    def test_of(r: Record) -> tuple[Any, Any] | None:
        return test_set_of(r) if correct_bits(r) else None

    theirs = {test_of(y) for y in ys}
    shared = [t for t in dict.fromkeys(map(test_of, xs)) if t is not None and t in theirs]
    if not shared:
        return None

    def bits(rs: list[Record]) -> list[list[bool]]:
        return [[c == "1" for c in r.correct or ""] for r in sorted(rs, key=lambda r: r.seed) if test_of(r) == shared[0]]
    return bits(xs), bits(ys)


def compare(dataset: str, a: tuple[str, str], b: tuple[str, str], kind: str, xs: list[Record],
             ys: list[Record]) -> Comparison | None:
    bits = paired_bits(xs, ys)
    if bits is None:
        return None
    t, fixed = seed_paired_test(*bits), paired_test(*bits)
    return Comparison(dataset, a, b, kind, t.delta, fixed.better, fixed.worse, (len(bits[0]), len(bits[1])), t.p,
                      detectable=t.detectable, test=t.test, low=t.low, high=t.high, prob_improvement=t.prob_improvement,
                      runs=t.runs, fixed_p=fixed.p, fixed_test=fixed.test)


def _zero_shot_for(group: list[Record], ok: list[Record]) -> list[Record]:
    """The zero-shot cells a method is compared with: same protocol (generate for black, logprob else)
    and the same test rows."""
    protocol, rows = group[0].protocol, test_set_of(group[0])
    return [r for r in ok if r.method == "zero_shot" and r.protocol == protocol and test_set_of(r) == rows]


def comparisons(records: list[Record], model: str) -> list[Comparison]:
    """Every method against zero-shot at its protocol on the same test rows, and the best method of
    each access class against the others' bests on the main test set (``main_test_sets``), per
    dataset; Holm-adjusted within each dataset's test set (a side experiment on other test rows,
    compared only with its own zero-shot, is a family of its own)."""
    ok = [r for r in records if r.status == "ok" and r.model == model and not is_transfer(r) and r.accuracy is not None]
    out: list[Comparison] = []
    for d in dict.fromkeys(r.dataset for r in ok):
        mine = [r for r in ok if r.dataset == d]
        groups = {key: [r for r in mine if (r.access, r.label) == key] for key in row_order(mine)}
        family: list[Comparison] = []
        for key, group in groups.items():
            if group[0].method == "zero_shot":
                continue
            base = _zero_shot_for(group, mine)
            if base:
                c = compare(d, key, (base[0].access, base[0].label), "vs zero-shot", group, base)
                if c:
                    family.append(c)
        best: dict[str, tuple[str, str]] = {}
        main = main_test_sets(mine)[(model, d)]
        for key, group in groups.items():
            if test_set_of(group[0]) != main:
                continue
            mean = mean_accuracy(group)
            if key[0] not in best or mean > mean_accuracy(groups[best[key[0]]]):
                best[key[0]] = key
        classes = [a for a in ACCESS_ORDER if a in best]
        done = {(c.a, c.b) for c in family}
        for i, x in enumerate(classes):
            for y in classes[i + 1:]:
                if (best[y], best[x]) in done:  # already tested against zero-shot: once per family
                    continue
                c = compare(d, best[y], best[x], "best of class", groups[best[y]], groups[best[x]])
                if c:
                    family.append(c)
        by_test: dict[tuple[Any, Any], list[Comparison]] = {}
        for c in family:
            by_test.setdefault(test_set_of(groups[c.a][0]), []).append(c)
        for one in by_test.values():
            apply_holm(one)
        out += family
    return out


def apply_holm(family: list[Comparison]) -> None:
    """Holm-adjust a family of comparisons, each answer on its own (across runs; these models)."""
    for c, adj, fixed in zip(family, holm([c.p for c in family]), holm([c.fixed_p for c in family])):
        c.p_holm, c.fixed_p_holm = adj, fixed


def comparison_mark(c: Comparison) -> str:
    """▲ / ▼: a gain / loss significant across training runs (the accuracy and headline tables' mark);
    △ / ▽: significant for these trained models only; "" otherwise."""
    if c.significant:
        return "▲" if c.delta > 0 else "▼"
    if c.fixed_significant:
        return "△" if c.delta > 0 else "▽"
    return ""


MARK_NOTE = ("▲/▼ = better/worse than zero-shot with the same protocol across training runs (Holm-adjusted p < 0.05); "
             "△/▽ = only for these trained models (the seed spread left out), not across runs")


def accuracy_interval(group: list[Record]) -> tuple[float, float, float]:
    """(mean, low, high) of a method's accuracy: one seed — the Wilson interval over its test
    examples; several — over seeds and test examples together (``stats.seed_interval``)."""
    accs = [r.accuracy for r in group if r.accuracy is not None]
    n = group[0].n or 0
    if len(accs) == 1:
        lo, hi = group[0].accuracy_ci95 or wilson(round(accs[0] * n), n)
        return accs[0], lo, hi
    return seed_interval(accs, n)


def accuracy_cell(group: list[Record]) -> str:
    """'mean ± std [low, high] (n=k)' in % (``accuracy_interval``)."""
    accs = [r.accuracy for r in group if r.accuracy is not None]
    if not accs:
        return "—"
    mean, lo, hi = accuracy_interval(group)
    spread = f" ± {100 * statistics.stdev(accs):.1f}" if len(accs) > 1 else ""
    seeds = f" (n={len(accs)})" if len(accs) > 1 else ""
    return f"{100 * mean:.1f}{spread} [{100 * lo:.1f}, {100 * hi:.1f}]{seeds}"


def claim_verdict(delta: float, p: float, holds_if_positive: bool = True) -> str:
    """A claim's verdict from its paired test: 'undecided' unless p < 0.05, else 'holds' when the
    difference goes the claimed way and 'refuted' when it goes the other."""
    if p >= 0.05:
        return "undecided"
    return "holds" if (delta > 0) == holds_if_positive else "refuted"
