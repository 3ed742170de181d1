"""The survey's orderings (white ≥ grey ≥ black, the gap) tested per dataset between each access class's representative, chosen on held-out calibration rows, and the claims between groups of methods (``published.METHOD_CLAIMS``)."""

from __future__ import annotations

from boxbench.core.results import Record
from boxbench.reports import published
from boxbench.reports.comparisons import PAIRED_NOTE, Comparison, apply_holm, claim_verdict, compare, correct_bits, paired_bits
from boxbench.reports.stats import Z95, Z_POWER80, across_seeds, gap_difference, per_example_gap
from boxbench.reports.sweep import choose_budget, sweep_curves
from boxbench.reports.table import ACCESS_ORDER, Table, is_transfer, mean_accuracy, on_main_test, p_text, prob_text, row_order, seeds_text


def _best_of_class(mine: list[Record], access: str, method: str | None = None,
                   methods: tuple[str, ...] | None = None) -> list[Record]:
    """The cells of the access class's best tuning method in ``mine`` (of ``methods`` only, where
    given): ``method`` where it was chosen beforehand (``best_by_class`` of a calibration run; its row
    of the method's own label first), else the highest mean accuracy here; also where the chosen
    method has no cells here (``stand_in`` says so). The survey's claims are about what tuning buys,
    so the untuned rows (family ``baseline``) are not candidates, unless ``methods`` names them (a
    method claim's control, e.g. ``random_instruction``)."""
    tuned = [r for r in mine if (r.method in methods if methods is not None else r.family != "baseline")]
    keys = [k for k in row_order(tuned) if k[0] == access]
    groups = [[r for r in tuned if (r.access, r.label) == k] for k in keys]
    named = [g for g in groups if g[0].method == method]
    if named:
        named.sort(key=lambda g: g[0].label not in (method, f"{method}@{access}"))
        return named[0]
    return max(groups, key=mean_accuracy) if groups else []


def stand_in(chosen: str | None, cells: list[Record]) -> str:
    """' (for X: no cells)' where the calibration chose X but X has no cells here, so the best here stands in; else ''."""
    return f" (for {chosen}: no cells)" if chosen and cells and cells[0].method != chosen else ""


def best_by_class(calibration: list[Record]) -> dict[tuple[str, str, str], str]:
    """(model, dataset, access) → the tuning method with the best held-out accuracy in a calibration
    run, each swept method at the budget ``choose_budget`` picks: the verdicts' class representatives
    chosen before the test set is seen (choosing them on test favours the class with more methods);
    and, under ``claim_key``, each method claim group's best by the same scores."""
    ok = [r for r in calibration if r.status == "ok" and r.accuracy is not None and r.family != "baseline"
          and not is_transfer(r)]
    score: dict[tuple[str, str, str], dict[str, float]] = {}
    for (name, model, dataset, _), points in sweep_curves(ok).items():
        budget = choose_budget(points)
        group = dict(points)[budget[0]] if budget else max((g for _, g in points), key=mean_accuracy)
        score.setdefault((model, dataset, group[0].access), {})[group[0].method] = mean_accuracy(group)
    unswept: dict[tuple[str, str, str, str], list[Record]] = {}
    for r in ok:
        if not r.sweep:
            unswept.setdefault((r.model, r.dataset, r.access, r.label), []).append(r)
    for (model, dataset, access, _), group in unswept.items():
        score.setdefault((model, dataset, access), {}).setdefault(group[0].method, mean_accuracy(group))
    picked = {k: max(v, key=lambda m: v[m]) for k, v in score.items()}
    for model, dataset in dict.fromkeys((m, d) for m, d, _ in score):  # each group of a method claim: its best, by the same scores
        mine = {m: a for (m2, d2, _), v in score.items() if (m2, d2) == (model, dataset) for m, a in v.items()}
        for claim, *groups in published.METHOD_CLAIMS:
            for i, methods in enumerate(groups):
                if ours := {m: a for m, a in mine.items() if m in methods}:
                    picked[(model, dataset, claim_key(claim, i))] = max(ours, key=lambda m: ours[m])
    return picked


def claim_key(claim: str, side: int) -> str:
    """The key ``best_by_class`` files a method claim group's chosen representative under (beside the access classes')."""
    return f"{claim}|{side}"


def claim_comparisons(mine: list[Record], chosen: dict[tuple[str, str, str], str] | None = None) -> list[Comparison]:
    """``published.METHOD_CLAIMS`` on one model's cells of one dataset's main test set: each group's
    representative (chosen beforehand, else the best here) against the other's; the claims are a
    Holm family of their own, apart from the access-class orderings."""
    if not mine:
        return []
    model, d = mine[0].model, mine[0].dataset
    family = []
    for claim, *groups in published.METHOD_CLAIMS:
        sides, notes = [], []
        for i, group in enumerate(groups):
            pick = (chosen or {}).get((model, d, claim_key(claim, i)))
            accesses = sorted({r.access for r in mine if r.method in group})
            found = [p for a in accesses if (p := _best_of_class(mine, a, pick, group))]  # the pick, else each access's best
            side = max([p for p in found if p[0].method == pick] or found, key=mean_accuracy, default=[])
            sides.append(side)
            notes.append(stand_in(pick, side))
        a, b = sides
        c = compare(d, (a[0].access, a[0].label), (b[0].access, b[0].label), "verdict", a, b) if a and b else None
        if c:
            c.claim, c.stand_in = claim, (notes[0], notes[1])
            family.append(c)
    apply_holm(family)
    return family


def ordering_comparisons(mine: list[Record], chosen: dict[tuple[str, str, str], str] | None = None) -> list[Comparison]:
    """The survey's orderings (``published.ORDERINGS``) on one model's cells of one dataset's main test
    set: each access class's representative (``chosen`` beforehand, else the best here) against the
    other class's, Holm-adjusted as one family."""
    if not mine:
        return []
    model, d = mine[0].model, mine[0].dataset
    picks = {a: (chosen or {}).get((model, d, a)) for a in ACCESS_ORDER}
    best = {a: _best_of_class(mine, a, picks[a]) for a in ACCESS_ORDER}
    family = []
    for hi, lo in published.ORDERINGS:
        if best.get(hi) and best.get(lo):
            a, b = best[hi], best[lo]
            c = compare(d, (hi, a[0].label), (lo, b[0].label), "verdict", a, b)
            if c:
                c.stand_in = (stand_in(picks[hi], a), stand_in(picks[lo], b))
                family.append(c)
    apply_holm(family)
    return family


Orderings = dict[tuple[str, str], list[Comparison]]  # (model, dataset) → its orderings' comparisons


def verdict_orderings(records: list[Record], chosen: dict[tuple[str, str, str], str] | None = None) -> Orderings:
    """``ordering_comparisons`` of every model and dataset's main test set (a report computes them once:
    the verdict table and "Seeds per claim" read the same ones)."""
    out: Orderings = {}
    for model in dict.fromkeys(r.model for r in records if r.status == "ok" and not is_transfer(r)):
        ok = _main_cells(records, model)
        for d in dict.fromkeys(r.dataset for r in ok):
            mine = [r for r in ok if r.dataset == d]
            out[(model, d)] = ordering_comparisons(mine, chosen) + claim_comparisons(mine, chosen)
    return out


def _main_cells(records: list[Record], model: str) -> list[Record]:
    """A model's finished cells on each dataset's main test set, with per-example correctness."""
    return on_main_test([r for r in records if r.status == "ok" and r.model == model and not is_transfer(r) and correct_bits(r)])


def verdict_table(records: list[Record], chosen: dict[tuple[str, str, str], str] | None = None,
                  orderings: Orderings | None = None) -> Table | None:
    """Which of the survey's claims hold here (``published.ORDERINGS``, ``published.GAP_LARGER_ON``),
    answered twice: **across training runs** (the verdict) and for **these trained models** (the seed
    spread left out): holds / refuted (p < 0.05 after Holm over the dataset's orderings, in the
    claimed or the opposite direction) / undecided, the 95 % interval and P(a > b), how many seeds
    each side had, and the difference the design could have detected. ``chosen`` (``best_by_class``
    of a calibration run) names each class's representative beforehand; without it, the class's best here."""
    rows: list[list[str]] = []

    def pick(model: str, dataset: str, access: str) -> str | None:
        return (chosen or {}).get((model, dataset, access))

    orderings = verdict_orderings(records, chosen) if orderings is None else orderings
    for model in dict.fromkeys(r.model for r in records if r.status == "ok" and not is_transfer(r)):
        ok = _main_cells(records, model)
        for d in dict.fromkeys(r.dataset for r in ok):
            for c in orderings.get((model, d), []):
                rows.append([model, d, c.claim or f"{c.a[0]}-box ≥ {c.b[0]}-box", f"{c.a[1]}{c.stand_in[0]} vs {c.b[1]}{c.stand_in[1]}", _seed_pair(c),
                             f"{100 * c.delta:+.1f} [{100 * c.low:+.1f}, {100 * c.high:+.1f}]", prob_text(c.prob_improvement),
                             p_text(c.p_holm), f"{100 * c.detectable:.1f}", claim_verdict(c.delta, c.p_holm),
                             p_text(c.fixed_p_holm), claim_verdict(c.delta, c.fixed_p_holm)])
        x, y = published.GAP_LARGER_ON
        gaps, runs, seeds, notes = {}, {}, {}, ""
        for d in (x, y):
            mine = [r for r in ok if r.dataset == d]
            white, black = _best_of_class(mine, "white", pick(model, d, "white")), _best_of_class(mine, "black", pick(model, d, "black"))
            bits = paired_bits(white, black) if white and black else None
            if bits:
                gaps[d], runs[d], seeds[d] = per_example_gap(*bits), across_seeds(*bits), f"{len(bits[0])} / {len(bits[1])}"
                notes += stand_in(pick(model, d, "white"), white) + stand_in(pick(model, d, "black"), black)
        if len(gaps) == 2:
            fixed_p = gap_difference(gaps[x], gaps[y])
            est = runs[x].minus(runs[y])
            low, high = est.interval()
            rows.append([model, f"{x} vs {y}", f"black-box falls further behind on {x} than on {y}",
                         f"best white − best black: {100 * runs[x].value:+.1f} vs {100 * runs[y].value:+.1f}{notes}", f"{seeds[x]}; {seeds[y]}",
                         f"{100 * est.value:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]", "—", p_text(est.p()),
                         f"{100 * est.detectable():.1f}", claim_verdict(est.value, est.p()), p_text(fixed_p),
                         claim_verdict(gaps[x][0] - gaps[y][0], fixed_p)])
    if not rows:
        return None
    how = ("each class's representative chosen beforehand on the calibration run's held-out rows (its best tuning method at "
           "its chosen budget)" if chosen else "the best tuning method of each class here (highest mean accuracy; choosing it on "
           "the same test set favours the class with more methods: read with the intervals)")
    return Table("Verdicts: the survey's claims at this scale",
                 ["model", "dataset", "claim", "compared", "seeds", "Δ (pp, claimed direction) [95 %]", "P(first > second)",
                  "p across runs", "detectable (pp)", "verdict across runs", "p these models", "verdict these models"],
                 rows, note=f"orderings: {how}, untuned rows excluded, against the other class's, "
                            f"{PAIRED_NOTE}, Holm-adjusted over the dataset's orderings (a family of their own, each answer apart); method "
                            "claims (published.METHOD_CLAIMS): each group's best, chosen as the classes' are, a Holm family of their own; "
                            "'(for X: no cells)': the calibration chose X, which has no cells here, so the best here stands in; gap: "
                            "per-example best white − best black, compared across the two test sets (across runs: the two estimates' "
                            "difference, a Welch t; these models: a z-test); seeds: of each side (independent runs where fewer); "
                            "holds / refuted: p < 0.05 in the claimed / the opposite direction; undecided otherwise; the verdict is the "
                            "across-runs one; detectable: the difference this design finds with 80 % power at α 0.05 across runs "
                            f"((t₀.₉₇₅ + t₀.₈) standard errors; the these-models test's is smaller: {Z95 + Z_POWER80:.1f} of its own)")


def _seed_pair(c: Comparison) -> str:
    """'3 / 1', with the independent runs where fewer: '3 (1 run) / 1'."""
    return f"{seeds_text(c.seeds[0], c.runs[0])} / {seeds_text(c.seeds[1], c.runs[1])}"
