"""The accuracy tables: the headline per dataset, each model's accuracy table with its marks, and the comparisons against zero-shot."""

from __future__ import annotations

from boxbench.core.results import Record
from boxbench.reports import published
from boxbench.reports.comparisons import MARK_NOTE, PAIRED_NOTE, Comparison, accuracy_cell, accuracy_interval, comparison_mark, comparisons
from boxbench.reports.table import (
    ACCESS_ORDER,
    Table,
    flops_text,
    fmt,
    gib,
    is_transfer,
    main_test_sets,
    mean_or_none,
    method_of,
    on_main_test,
    p_text,
    prob_text,
    row_order,
    seeds_text,
    sub_class,
    test_set_of,
)


def accuracy_table(records: list[Record], model: str, cs: list[Comparison] | None = None) -> Table:
    """The survey's Table 1 layout: methods grouped by access class × datasets, with a 95 % interval,
    a mark where a method differs significantly from zero-shot, and the published figures beside.
    ``cs``: this model's ``comparisons``, where the caller has them already."""
    ok = [r for r in records if r.status == "ok" and r.model == model and not is_transfer(r)]
    datasets = list(dict.fromkeys(r.dataset for r in ok))
    marks = {(c.dataset, c.a): comparison_mark(c) for c in (comparisons(records, model) if cs is None else cs)
             if c.kind == "vs zero-shot" and comparison_mark(c)}
    keys = row_order(ok)
    main = main_test_sets(ok)
    has_paper = {d for d in datasets if any(published.accuracy(method_of(ok, k), d) is not None for k in keys)}
    headers = ["method", "sub-class", "protocol"]
    for d in datasets:
        headers += [d] + ([f"{d} · {published.SOURCE}"] if d in has_paper else [])
    t = Table(f"Accuracy (%) — {model}", headers,
              note="mean ± std over seeds [95 % interval: one seed — Wilson over the test examples; several — "
                   "mean ± t·sqrt(s²/k + p(1−p)/n), the seeds' spread and the shared test sample, t at the Welch–Satterthwaite "
                   "degrees of freedom]; " + MARK_NOTE + "; " + PAIRED_NOTE + ", Holm within each dataset and test set; protocol: logprob = "
                   "label words scored by log-probability, generate = greedy answer parsed; the published column is "
                   "another model and budget: context, not a target; sub-class: the survey's taxonomy within the "
                   "access class (white: full / partial; grey: prompt / module / logprob; black: multi-pass / "
                   "single-pass; baseline: no tuning); '· N rows': scored on other test rows than the rest (a side experiment), "
                   "compared only with zero-shot on those rows")
    current = None
    for access, label in keys:
        if access != current:
            t.groups.append((len(t.rows), f"{access}-box"))
            current = access
        mine = [r for r in ok if r.label == label and r.access == access]
        protocol = ", ".join(sorted({str(r.protocol) for r in mine}))
        cells = []
        for d in datasets:
            group = [r for r in mine if r.dataset == d]
            other_rows = f" · {group[0].n} rows" if group and test_set_of(group[0]) != main.get((model, d)) else ""
            cells.append(accuracy_cell(group) + other_rows + (" " + marks[(d, (access, label))] if (d, (access, label)) in marks else ""))
            if d in has_paper:
                ref = published.accuracy(mine[0].method, d)
                cells.append("—" if ref is None else f"{ref:.1f}")
        t.rows.append([label, sub_class(mine), protocol, *cells])
    return t


def headline_table(records: list[Record], cs: dict[str, list[Comparison]] | None = None) -> Table | None:
    """The answer in one table: per dataset (a group of rows), per method (access class, then first
    appearance; every model of the run) its accuracy with the 95 % interval, its gain over zero-shot
    with the same protocol across training runs (interval, Holm-adjusted p, P(>)) and for these
    trained models (``comparisons``), its seeds, tuning seconds and peak host memory. Main test sets
    only: transfer cells and side experiments have their own tables. ``cs``: each model's
    ``comparisons``, where the caller has them already."""
    ok = on_main_test([r for r in records if r.status == "ok" and r.accuracy is not None and not is_transfer(r)])
    if not ok:
        return None
    datasets = list(dict.fromkeys(r.dataset for r in ok))
    models = list(dict.fromkeys(r.model for r in ok))
    gains = {(m, c.dataset, c.a): c for m in models for c in (cs[m] if cs and m in cs else comparisons(records, m))
             if c.kind == "vs zero-shot"}
    headers = ["access", "method"] + (["model"] if len(models) > 1 else []) + [
        "accuracy %", "Δ vs zero-shot [95 %]", "p (Holm)", "P(>)", "these models p (Holm)", "seeds", "tune s", "tune FLOPs", "peak RSS GiB"]
    t = Table("Headline: what each method buys over zero-shot, and at what cost", headers,
              note="accuracy: mean over seeds [95 % interval] (the accuracy table's); Δ: percentage points over zero-shot with the same "
                   "protocol across training runs, its 95 % interval and Holm-adjusted p; P(>): the chance a run of the method beats "
                   "zero-shot ('—' with one run on each side: one pair is not an estimate); these models p: the same difference "
                   "with the trained models taken as fixed; " + MARK_NOTE + "; " + PAIRED_NOTE +
                   "; Holm within the dataset and test set; '—' without a zero-shot cell on that model; seeds: runs (independent runs "
                   "where fewer: seeds with identical predictions count once); tune s and peak RSS: means over seeds on the machine that "
                   "ran the cell; tune FLOPs: estimated tuning compute, every model the cell loaded (a proposer's included), mean over "
                   "seeds; the Pareto front: the frontier table")
    for d in datasets:
        rows = []
        for model in models:
            mine = [r for r in ok if r.model == model and r.dataset == d]
            for access, label in row_order(mine):
                group = [r for r in mine if (r.access, r.label) == (access, label)]
                mean, lo, hi = accuracy_interval(group)
                c = gains.get((model, d, (access, label)))
                mark = "" if c is None else comparison_mark(c)
                rows.append([access, label] + ([model] if len(models) > 1 else []) + [
                    f"{100 * mean:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]",
                    "—" if c is None else f"{100 * c.delta:+.1f} [{100 * c.low:+.1f}, {100 * c.high:+.1f}]" + (f" {mark}" if mark else ""),
                    "—" if c is None else p_text(c.p_holm, 2), "—" if c is None else prob_text(c.prob_improvement),
                    "—" if c is None else p_text(c.fixed_p_holm, 2), seeds_text(len(group), c.runs[0] if c else len(group)),
                    fmt(mean_or_none(r.tune_wall_s for r in group), digits=0), flops_text(mean_or_none(r.tune_flops for r in group)),
                    gib(mean_or_none(r.peak_host_rss_bytes for r in group))])
        rows.sort(key=lambda row: ACCESS_ORDER.index(row[0]) if row[0] in ACCESS_ORDER else 99)  # stable: models in run order within a class
        t.groups.append((len(t.rows), d))
        t.rows += rows
    return t


def comparison_table(records: list[Record], model: str, cs: list[Comparison] | None = None) -> Table | None:
    """Every paired comparison of ``model`` (``comparisons``; ``cs`` where the caller has them already)."""
    cs = comparisons(records, model) if cs is None else cs
    if not cs:
        return None
    t = Table(f"Paired comparisons — {model}", ["dataset", "method", "compared with", "kind", "Δ accuracy (pp)", "95 % interval",
                                                "P(method > other)", "seeds (runs)", "p across runs", "p (Holm)", "",
                                                "only method right", "only other right", "these models: test", "p", "p (Holm)", ""],
              note=PAIRED_NOTE + "; P(method > other): the chance a run of the method scores above a run of the other, over all pairs "
                   "of their seeds; only … right: the examples one side gets right more often over its seeds (one seed each: right where "
                   "the other is wrong); Holm–Bonferroni over every comparison of a dataset on one test set, each answer apart (a side "
                   "experiment on other rows is its own family); * = p (Holm) < 0.05")
    for c in cs:
        runs = "{} / {}".format(*c.seeds) + ("" if c.runs == c.seeds else " ({} / {})".format(*c.runs))
        t.rows.append([c.dataset, c.a[1], c.b[1], c.kind, f"{100 * c.delta:+.1f}", f"[{100 * c.low:+.1f}, {100 * c.high:+.1f}]",
                       prob_text(c.prob_improvement), runs, p_text(c.p), p_text(c.p_holm), "*" if c.significant else "",
                       str(c.only_a), str(c.only_b), c.fixed_test, p_text(c.fixed_p), p_text(c.fixed_p_holm), "*" if c.fixed_significant else ""])
    return t
