"""Tables built from results.jsonl records, rendered to markdown or HTML from the same rows."""

from __future__ import annotations

import html
import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Iterable

ACCESS_ORDER = ["black", "grey", "white"]


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    groups: list[tuple[int, str]] = field(default_factory=list)  # (row index, group caption) separators
    note: str = ""

    def markdown(self) -> str:
        out = [f"### {self.title}", ""]
        if self.note:
            out += [self.note, ""]
        out += ["| " + " | ".join(self.headers) + " |", "|" + "|".join("---" for _ in self.headers) + "|"]
        starts = dict(self.groups)
        for i, row in enumerate(self.rows):
            if i in starts:
                out.append("| **" + starts[i] + "** |" + " |" * (len(self.headers) - 1))
            out.append("| " + " | ".join(row) + " |")
        return "\n".join(out) + "\n"

    def html(self) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.headers)
        body = []
        starts = dict(self.groups)
        for i, row in enumerate(self.rows):
            if i in starts:
                body.append(f'<tr class="group"><td colspan="{len(self.headers)}">{html.escape(starts[i])}</td></tr>')
            body.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>")
        note = f"<p class='note'>{html.escape(self.note)}</p>" if self.note else ""
        return f"<h3>{html.escape(self.title)}</h3>{note}<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def mean_std(values: Iterable[float | None], scale: float = 1.0, digits: int = 1) -> str:
    """"mean ± std (n)" over seeds; the sample std needs two or more values."""
    vals = [v * scale for v in values if v is not None]
    if not vals:
        return "—"
    m = statistics.fmean(vals)
    if len(vals) == 1:
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ± {statistics.stdev(vals):.{digits}f} (n={len(vals)})"


def _mean(values: Iterable[Any]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.fmean(vals) if vals else None


def _fmt(v: float | None, unit: str = "", digits: int = 1) -> str:
    return "—" if v is None else f"{v:,.{digits}f}{unit}"


def row_order(records: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(access, label) pairs in table order: access class, then first appearance."""
    seen: list[tuple[str, str]] = []
    for r in records:
        key = (r["access"], r["label"])
        if key not in seen:
            seen.append(key)
    return sorted(seen, key=lambda k: ACCESS_ORDER.index(k[0]) if k[0] in ACCESS_ORDER else 99)


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


def _correct(r: dict[str, Any]) -> str | None:
    return r.get("correct") if isinstance(r.get("correct"), str) else None


def paired_bits(xs: list[dict[str, Any]], ys: list[dict[str, Any]]) -> tuple[list[list[bool]], list[list[bool]]] | None:
    """Each side's per-seed correctness (seeds in order) on a test set both sides were scored on
    (the same test hash and length); None when they share none."""
    def test_of(r: dict[str, Any]) -> tuple[Any, Any] | None:
        return _test_set(r) if _correct(r) else None

    theirs = {test_of(y) for y in ys}
    shared = [t for t in dict.fromkeys(map(test_of, xs)) if t is not None and t in theirs]
    if not shared:
        return None

    def bits(rs: list[dict[str, Any]]) -> list[list[bool]]:
        return [[c == "1" for c in r["correct"]] for r in sorted(rs, key=lambda r: r["seed"]) if test_of(r) == shared[0]]
    return bits(xs), bits(ys)


def _compare(dataset: str, a: tuple[str, str], b: tuple[str, str], kind: str, xs: list[dict[str, Any]],
             ys: list[dict[str, Any]]) -> Comparison | None:
    from boxbench.reports.stats import paired_test, seed_paired_test

    bits = paired_bits(xs, ys)
    if bits is None:
        return None
    t, fixed = seed_paired_test(*bits), paired_test(*bits)
    return Comparison(dataset, a, b, kind, t.delta, fixed.better, fixed.worse, (len(bits[0]), len(bits[1])), t.p,
                      detectable=t.detectable, test=t.test, low=t.low, high=t.high, prob_improvement=t.prob_improvement,
                      runs=t.runs, fixed_p=fixed.p, fixed_test=fixed.test)


def _zero_shot_for(group: list[dict[str, Any]], ok: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The zero-shot cells a method is compared with: same protocol (generate for black, logprob else)
    and the same test rows."""
    protocol, rows = group[0]["protocol"], _test_set(group[0])
    return [r for r in ok if r["method"] == "zero_shot" and r["protocol"] == protocol and _test_set(r) == rows]


def comparisons(records: list[dict[str, Any]], model: str) -> list[Comparison]:
    """Every method against zero-shot at its protocol on the same test rows, and the best method of
    each access class against the others' bests on the main test set (``main_test_sets``), per
    dataset; Holm-adjusted within each dataset's test set (a side experiment on other test rows,
    compared only with its own zero-shot, is a family of its own)."""
    from boxbench.reports.stats import holm

    ok = [r for r in records if r["status"] == "ok" and r["model"] == model and not is_transfer(r) and r.get("accuracy") is not None]
    out: list[Comparison] = []
    for d in dict.fromkeys(r["dataset"] for r in ok):
        mine = [r for r in ok if r["dataset"] == d]
        groups = {key: [r for r in mine if (r["access"], r["label"]) == key] for key in row_order(mine)}
        family: list[Comparison] = []
        for key, group in groups.items():
            if group[0]["method"] == "zero_shot":
                continue
            base = _zero_shot_for(group, mine)
            if base:
                c = _compare(d, key, (base[0]["access"], base[0]["label"]), "vs zero-shot", group, base)
                if c:
                    family.append(c)
        best: dict[str, tuple[str, str]] = {}
        main = main_test_sets(mine)[(model, d)]
        for key, group in groups.items():
            if _test_set(group[0]) != main:
                continue
            mean = statistics.fmean(r["accuracy"] for r in group)
            if key[0] not in best or mean > statistics.fmean(r["accuracy"] for r in groups[best[key[0]]]):
                best[key[0]] = key
        classes = [a for a in ACCESS_ORDER if a in best]
        done = {(c.a, c.b) for c in family}
        for i, x in enumerate(classes):
            for y in classes[i + 1:]:
                if (best[y], best[x]) in done:  # already tested against zero-shot: once per family
                    continue
                c = _compare(d, best[y], best[x], "best of class", groups[best[y]], groups[best[x]])
                if c:
                    family.append(c)
        by_test: dict[tuple[Any, Any], list[Comparison]] = {}
        for c in family:
            by_test.setdefault(_test_set(groups[c.a][0]), []).append(c)
        for one in by_test.values():
            apply_holm(one)
        out += family
    return out


def apply_holm(family: list[Comparison]) -> None:
    """Holm-adjust a family of comparisons, each answer on its own (across runs; these models)."""
    from boxbench.reports.stats import holm

    for c, adj, fixed in zip(family, holm([c.p for c in family]), holm([c.fixed_p for c in family])):
        c.p_holm, c.fixed_p_holm = adj, fixed


def _mark(c: Comparison) -> str:
    """▲ / ▼: a gain / loss significant across training runs (the accuracy and headline tables' mark);
    △ / ▽: significant for these trained models only; "" otherwise."""
    if c.significant:
        return "▲" if c.delta > 0 else "▼"
    if c.fixed_significant:
        return "△" if c.delta > 0 else "▽"
    return ""


MARK_NOTE = ("▲/▼ = better/worse than zero-shot with the same protocol across training runs (Holm-adjusted p < 0.05); "
             "△/▽ = only for these trained models (the seed spread left out), not across runs")


def accuracy_interval(group: list[dict[str, Any]]) -> tuple[float, float, float]:
    """(mean, low, high) of a method's accuracy: one seed — the Wilson interval over its test
    examples; several — over seeds and test examples together (``stats.seed_interval``)."""
    from boxbench.reports.stats import seed_interval, wilson

    accs = [r["accuracy"] for r in group if r.get("accuracy") is not None]
    n = group[0].get("n") or 0
    if len(accs) == 1:
        lo, hi = group[0].get("accuracy_ci95") or wilson(round(accs[0] * n), n)
        return accs[0], lo, hi
    return seed_interval(accs, n)


def accuracy_cell(group: list[dict[str, Any]]) -> str:
    """'mean ± std [low, high] (n=k)' in % (``accuracy_interval``)."""
    accs = [r["accuracy"] for r in group if r.get("accuracy") is not None]
    if not accs:
        return "—"
    mean, lo, hi = accuracy_interval(group)
    spread = f" ± {100 * statistics.stdev(accs):.1f}" if len(accs) > 1 else ""
    seeds = f" (n={len(accs)})" if len(accs) > 1 else ""
    return f"{100 * mean:.1f}{spread} [{100 * lo:.1f}, {100 * hi:.1f}]{seeds}"


def accuracy_table(records: list[dict[str, Any]], model: str, cs: list[Comparison] | None = None) -> Table:
    """The survey's Table 1 layout: methods grouped by access class × datasets, with a 95 % interval,
    a mark where a method differs significantly from zero-shot, and the published figures beside.
    ``cs``: this model's ``comparisons``, where the caller has them already."""
    from boxbench.reports import published

    ok = [r for r in records if r["status"] == "ok" and r["model"] == model and not is_transfer(r)]
    datasets = list(dict.fromkeys(r["dataset"] for r in ok))
    marks = {(c.dataset, c.a): _mark(c) for c in (comparisons(records, model) if cs is None else cs)
             if c.kind == "vs zero-shot" and _mark(c)}
    keys = row_order(ok)
    main = main_test_sets(ok)
    has_paper = {d for d in datasets if any(published.accuracy(_method_of(ok, k), d) is not None for k in keys)}
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
        mine = [r for r in ok if r["label"] == label and r["access"] == access]
        protocol = ", ".join(sorted({r["protocol"] for r in mine}))
        cells = []
        for d in datasets:
            group = [r for r in mine if r["dataset"] == d]
            other_rows = f" · {group[0]['n']} rows" if group and _test_set(group[0]) != main.get((model, d)) else ""
            cells.append(accuracy_cell(group) + other_rows + (" " + marks[(d, (access, label))] if (d, (access, label)) in marks else ""))
            if d in has_paper:
                ref = published.accuracy(mine[0]["method"], d)
                cells.append("—" if ref is None else f"{ref:.1f}")
        t.rows.append([label, sub_class(mine), protocol, *cells])
    return t


def headline_table(records: list[dict[str, Any]], cs: dict[str, list[Comparison]] | None = None) -> Table | None:
    """The answer in one table: per dataset (a group of rows), per method (access class, then first
    appearance; every model of the run) its accuracy with the 95 % interval, its gain over zero-shot
    with the same protocol across training runs (interval, Holm-adjusted p, P(>)) and for these
    trained models (``comparisons``), its seeds, tuning seconds and peak host memory. Main test sets
    only: transfer cells and side experiments have their own tables. ``cs``: each model's
    ``comparisons``, where the caller has them already."""
    ok = on_main_test([r for r in records if r["status"] == "ok" and r.get("accuracy") is not None and not is_transfer(r)])
    if not ok:
        return None
    datasets = list(dict.fromkeys(r["dataset"] for r in ok))
    models = list(dict.fromkeys(r["model"] for r in ok))
    gains = {(m, c.dataset, c.a): c for m in models for c in (cs[m] if cs and m in cs else comparisons(records, m))
             if c.kind == "vs zero-shot"}
    headers = ["access", "method"] + (["model"] if len(models) > 1 else []) + [
        "accuracy %", "Δ vs zero-shot [95 %]", "p (Holm)", "P(>)", "these models p (Holm)", "seeds", "tune s", "peak RSS GiB"]
    t = Table("Headline: what each method buys over zero-shot, and at what cost", headers,
              note="accuracy: mean over seeds [95 % interval] (the accuracy table's); Δ: percentage points over zero-shot with the same "
                   "protocol across training runs, its 95 % interval and Holm-adjusted p; P(>): the chance a run of the method beats "
                   "zero-shot; these models p: the same difference with the trained models taken as fixed; " + MARK_NOTE + "; " + PAIRED_NOTE +
                   "; Holm within the dataset and test set; '—' without a zero-shot cell on that model; seeds: runs (independent runs "
                   "where fewer: seeds with identical predictions count once); tune s and peak RSS: means over seeds on the machine that "
                   "ran the cell; tuning compute and the Pareto front: the frontier table")
    for d in datasets:
        rows = []
        for model in models:
            mine = [r for r in ok if r["model"] == model and r["dataset"] == d]
            for access, label in row_order(mine):
                group = [r for r in mine if (r["access"], r["label"]) == (access, label)]
                mean, lo, hi = accuracy_interval(group)
                c = gains.get((model, d, (access, label)))
                mark = "" if c is None else _mark(c)
                rows.append([access, label] + ([model] if len(models) > 1 else []) + [
                    f"{100 * mean:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]",
                    "—" if c is None else f"{100 * c.delta:+.1f} [{100 * c.low:+.1f}, {100 * c.high:+.1f}]" + (f" {mark}" if mark else ""),
                    "—" if c is None else p_text(c.p_holm, 2), "—" if c is None else f"{c.prob_improvement:.2f}",
                    "—" if c is None else p_text(c.fixed_p_holm, 2), seeds_text(len(group), c.runs[0] if c else len(group)),
                    _fmt(_mean(r["tune_wall_s"] for r in group), digits=0), _gib(_mean(r["peak_host_rss_bytes"] for r in group))])
        rows.sort(key=lambda row: ACCESS_ORDER.index(row[0]) if row[0] in ACCESS_ORDER else 99)  # stable: models in run order within a class
        t.groups.append((len(t.rows), d))
        t.rows += rows
    return t


def seeds_text(seeds: int, runs: int) -> str:
    """'3', or '3 (1 run)' where the seeds' predictions were identical."""
    return str(seeds) if runs in (0, seeds) else f"{seeds} ({runs} run{'s' if runs > 1 else ''})"


def p_text(p: float, digits: int = 3) -> str:
    """A p-value for a table cell; one too small for a float (it underflows to 0) reads '< 1e-300', not 0."""
    return f"{p:.{digits}g}" if p > 0 else "< 1e-300"


def _gib(n_bytes: float | None, digits: int = 1) -> str:
    """Bytes as GiB for a table cell ('—' when not measured)."""
    return _fmt(n_bytes / 1024**3 if n_bytes is not None else None, digits=digits)


def sub_class(records: list[dict[str, Any]]) -> str:
    """The method's sub-class in the survey's taxonomy (``family`` in the record: ``grey/module`` -> ``module``)."""
    fams = {str(r.get("family") or "").split("/")[-1] for r in records} - {""}
    return ", ".join(sorted(fams)) or "—"


def _method_of(ok: list[dict[str, Any]], key: tuple[str, str]) -> str:
    return next(r["method"] for r in ok if (r["access"], r["label"]) == key)


def comparison_table(records: list[dict[str, Any]], model: str, cs: list[Comparison] | None = None) -> Table | None:
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
                       f"{c.prob_improvement:.2f}", runs, p_text(c.p), p_text(c.p_holm), "*" if c.significant else "",
                       str(c.only_a), str(c.only_b), c.fixed_test, p_text(c.fixed_p), p_text(c.fixed_p_holm), "*" if c.fixed_significant else ""])
    return t


def cost_table(records: list[dict[str, Any]], model: str) -> Table:
    """The survey's Table 2 layout: memory, wall time, calls and tokens per method and dataset."""
    from boxbench.reports import published

    ok = [r for r in records if r["status"] == "ok" and r["model"] == model and not is_transfer(r)]
    paper = any(published.cost(r["method"], r["dataset"]) for r in ok)
    proposing = any(r.get("proposer_model") for r in ok)
    paying = any(r.get("spend") for r in ok)
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
        for d in dict.fromkeys(r["dataset"] for r in ok):
            mine = [r for r in ok if r["label"] == label and r["access"] == access and r["dataset"] == d]
            if not mine:
                continue
            rss = _mean(r["peak_host_rss_bytes"] for r in mine)
            gpu = _mean(r["peak_accelerator_bytes"] for r in mine)
            t.rows.append([
                label, access, d, _fmt(_mean(r["tune_wall_s"] for r in mine)), _fmt(_mean(r["eval_wall_s"] for r in mine)),
                flops_text(_mean(r.get("tune_flops") for r in mine)), flops_text(_mean(r.get("eval_flops") for r in mine)),
                _gib(rss, digits=2), _gib(gpu, digits=2),
                _fmt(_mean(r["model_calls"] for r in mine), digits=0), _fmt(_mean(r["prompt_tokens"] for r in mine), digits=0),
                _fmt(_mean(r["completion_tokens"] for r in mine), digits=0),
                mean_std([r["invalid_rate"] for r in mine], 100),
                str(mine[0]["n"]),
            ] + (_proposer_cells(mine) if proposing else []) + (_spend_cells(mine) if paying else [])
              + ([published.cost(mine[0]["method"], d) or "—"] if paper else []))
    return t


def _spend_cells(mine: list[dict[str, Any]]) -> list[str]:
    """Money (tuning / evaluation: every API model of the cell, the proposer's included), billed
    requests, cache hits and retries, means over seeds; '—' without an API model."""
    spends = [r["spend"] for r in mine if r.get("spend")]
    if not spends:
        return ["—"] * 4

    def money(k: str) -> str:
        vals = [s[k] for s in spends]
        return "unknown price" if any(v is None for v in vals) else f"{statistics.fmean(vals):.4g}"

    return [f"{money('tune_cost')} / {money('eval_cost')}", _fmt(_mean(s["billed_requests"] for s in spends), digits=0),
            _fmt(_mean(s["cache_hits"] for s in spends), digits=0), _fmt(_mean(s["retries"] for s in spends), digits=0)]


def _proposer_cells(mine: list[dict[str, Any]]) -> list[str]:
    if not mine[0].get("proposer_model"):
        return ["—", "—", "—", "—"]
    return [str(mine[0]["proposer_model"]), _fmt(_mean(r.get("proposer_calls") for r in mine), digits=0),
            _fmt(_mean(r.get("proposer_wall_s") for r in mine)),
            f"{_fmt(_mean(r.get('proposer_prompt_tokens') for r in mine), digits=0)} / "
            f"{_fmt(_mean(r.get('proposer_completion_tokens') for r in mine), digits=0)}"]


def training_table(records: list[dict[str, Any]], model: str) -> Table | None:
    """Budgets and training figures of the trained methods (so cells can be compared fairly)."""
    ok = [r for r in records if r["status"] == "ok" and r["model"] == model and r.get("train_steps") is not None]
    if not ok:
        return None
    t = Table(f"Training — {model}", ["method", "dataset", "seed", "examples seen", "steps", "trainable params", "total params",
                                       "train ex/s", "loss first → last", "stopped by", "precision"])
    for r in ok:
        t.rows.append([r["label"], r["dataset"], str(r["seed"]), f"{r['train_examples_seen']:,}", str(r["train_steps"]),
                       f"{r.get('trainable_params', 0):,}", f"{r.get('total_params', 0):,}", _fmt(r.get("train_examples_per_s"), digits=2),
                       f"{r.get('loss_first', float('nan')):.3f} → {r.get('loss_last', float('nan')):.3f}",
                       str(r.get("stopped_by", "")), str(r.get("precision", ""))])
    return t


def fast_path_table(records: list[dict[str, Any]]) -> Table | None:
    """Cells on a fast path (e.g. int8 weights): their accuracy against the exact model's, both
    read on the same first test examples with the same artifact (``exact_check``)."""
    checked = [r for r in records if r.get("status") == "ok" and r.get("exact_check")]
    if not checked:
        return None
    t = Table("Fast path against the exact model", ["method", "model", "dataset", "seed", "fast path", "n", "fast %", "exact %",
                                                    "difference (pp)", "agreement %", "eval s (fast)"],
              note="The same artifact evaluated on the fast model and on the exact model it stands for, on the "
                   "first n test examples (settings.exact_check).")
    for r in checked:
        c = r["exact_check"]
        if "error" in c:
            t.rows.append([r["label"], r["model"], r["dataset"], str(r["seed"]), str(r["backend"].get("quantize", "?")), "", "", "",
                           f"check failed: {c['error']}", "", ""])
            continue
        t.rows.append([r["label"], r["model"], r["dataset"], str(r["seed"]), str(r["backend"].get("quantize", "?")), str(c["n"]),
                       f"{100 * c['accuracy']:.1f}", f"{100 * c['exact_accuracy']:.1f}", f"{100 * c['accuracy_delta']:+.1f}",
                       f"{100 * c['agreement']:.1f}", f"{r['eval_wall_s']:.1f}"])
    return t


def error_table(records: list[dict[str, Any]]) -> Table | None:
    bad = [r for r in records if r["status"] != "ok"]
    if not bad:
        return None
    t = Table("Cells that failed", ["method", "model", "dataset", "seed", "error"])
    for r in bad:
        t.rows.append([r.get("label", "?"), str(r.get("model", "?")), str(r.get("dataset", "?")), str(r.get("seed", "?")), str(r.get("error", ""))])
    return t


def is_transfer(r: dict[str, Any]) -> bool:
    """A transfer record: an artifact tuned on ``source_model``, evaluated on another model."""
    return r.get("source_model", r.get("model")) != r.get("target_model", r.get("model"))


def _test_set(r: dict[str, Any]) -> tuple[Any, Any]:
    return r.get("test_sha256"), r.get("n")


def main_test_sets(records: list[dict[str, Any]]) -> dict[tuple[str, str], tuple[Any, Any]]:
    """(model, dataset) → the test set (hash, rows) most of its records were scored on (ties: the
    larger). Comparisons between methods, the frontier and the verdicts are about that one test set;
    a side experiment on other rows (the PEZ transfer block's source cells) is compared only with
    the zero-shot run on its own rows, and its accuracy is marked with its row count."""
    counts: dict[tuple[str, str], dict[tuple[Any, Any], int]] = {}
    for r in records:
        sets = counts.setdefault((r["model"], r["dataset"]), {})
        sets[_test_set(r)] = sets.get(_test_set(r), 0) + 1
    return {k: max(v, key=lambda t: (v[t], t[1] or 0)) for k, v in counts.items()}


def on_main_test(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records scored on their (model, dataset)'s main test set (``main_test_sets``)."""
    main = main_test_sets(records)
    return [r for r in records if _test_set(r) == main[(r["model"], r["dataset"])]]


def transfer_sources(records: list[dict[str, Any]], dataset: str) -> list[str]:
    """The source models of a dataset's transfer cells, in order of appearance (one matrix each)."""
    return list(dict.fromkeys(r["source_model"] for r in records
                              if r["status"] == "ok" and r["dataset"] == dataset and is_transfer(r)))


def transfer_matrix(records: list[dict[str, Any]], dataset: str, source: str) -> tuple[list[str], list[str], list[list[list[float]]]] | None:
    """(row labels, column names, accuracies per row × column over seeds) for one dataset and one
    source model: the study's layout, rows = methods with transfer cells from ``source``, columns =
    "Original" (``source`` itself) + each target."""
    ok = [r for r in records if r["status"] == "ok" and r["dataset"] == dataset]
    moved = [r for r in ok if is_transfer(r) and r["source_model"] == source]
    if not moved:
        return None
    labels = list(dict.fromkeys(r["label"] for r in moved))
    targets = list(dict.fromkeys(r["target_model"] for r in moved))
    cols = ["Original", *targets]
    grid = []
    for lab in labels:
        row = [[r["accuracy"] for r in ok if r["label"] == lab and not is_transfer(r) and r["model"] == source]]
        row += [[r["accuracy"] for r in moved if r["label"] == lab and r["target_model"] == t] for t in targets]
        grid.append(row)
    return labels, cols, grid


def transfer_table(records: list[dict[str, Any]], dataset: str, source: str) -> Table | None:
    m = transfer_matrix(records, dataset, source)
    if m is None:
        return None
    labels, cols, grid = m
    t = Table(f"Transfer — {dataset} — from {source}", ["method", *cols],
              note=f"accuracy (%), mean ± std over seeds; the prompt tuned on {source} (Original), evaluated unchanged as text on each target")
    for lab, row in zip(labels, grid):
        t.rows.append([lab, *[mean_std(v, 100) for v in row]])
    return t


def stale_table(stale: list[dict[str, Any]]) -> Table | None:
    """Records in results.jsonl that are not cells of the suite now in the run dir (an earlier
    --limit, edited params): listed, never averaged in."""
    if not stale:
        return None
    t = Table("Stale cells (not in the current suite; left out of every other table)",
              ["method", "model", "dataset", "seed", "test n", "accuracy %", "finished"])
    for r in stale:
        acc = r.get("accuracy")
        t.rows.append([str(r.get("label", "?")), str(r.get("model", "?")), str(r.get("dataset", "?")), str(r.get("seed", "?")),
                       str(r.get("n", "—")), "—" if acc is None else f"{100 * acc:.1f}", str(r.get("finished_at", ""))])
    return t


def prompts_table(records: list[dict[str, Any]]) -> Table | None:
    """The tuned text prompts per method, dataset and seed (the study's Table 3)."""
    rows = [r for r in records if r["status"] == "ok" and r.get("prompt_text") is not None and not is_transfer(r)]
    if not rows:
        return None
    t = Table("Tuned prompts", ["method", "model", "dataset", "seed", "prompt", "dictionary words %"],
              note="dictionary words: share of the prompt's words found in an English word list (BERT's uncased WordPiece whole words)")
    for r in rows:
        frac = r.get("prompt_dictionary_fraction")
        t.rows.append([r["label"], r["model"], r["dataset"], str(r["seed"]), repr(r["prompt_text"]),
                       "—" if frac is None else f"{100 * frac:.0f}"])
    return t


def sweep_curves(records: list[dict[str, Any]]) -> dict[tuple[str, str, str, str], list[tuple[Any, list[dict[str, Any]]]]]:
    """Budget sweeps (a suite entry's ``sweep:``): per (method, model, dataset, swept param), the swept
    values in suite order, each with its cells (the seeds). A param swept together with others is
    drawn once per combination of the others (named in the method)."""
    ok = [r for r in records if r["status"] == "ok" and r.get("sweep") and not is_transfer(r) and r.get("accuracy") is not None]
    out: dict[tuple[str, str, str, str], dict[Any, list[dict[str, Any]]]] = {}
    for r in ok:
        base = r["label"].rsplit("[", 1)[0]
        for param, value in r["sweep"].items():
            others = {k: v for k, v in r["sweep"].items() if k != param}
            name = base + (f" ({', '.join(f'{k}={v}' for k, v in others.items())})" if others else "")
            out.setdefault((name, r["model"], r["dataset"], param), {}).setdefault(value, []).append(r)
    return {k: list(v.items()) for k, v in out.items()}


PLATEAU_PP = 1.0  # a budget "stops rising" within this many points of the curve's best
BUDGET_CAP_S = 600.0  # the tuning time one study cell may take on the machine that ran the sweep (10 minutes on 2
# cores: the CPU study's ~100 tuned cells — 20 methods, 3 seeds, 2 datasets — then fit in about 8 hours)


def choose_budget(points: list[tuple[Any, list[dict[str, Any]]]]) -> tuple[Any, str] | None:
    """The budget rule of the CPU study: among the swept values whose tuning stayed under
    ``BUDGET_CAP_S``, the smallest whose accuracy is within ``PLATEAU_PP`` of the best of them
    (where the curve stops rising), and why; None for a non-numeric sweep."""
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v, _ in points):
        return None
    stats = [(v, statistics.fmean(r["accuracy"] for r in g), _mean(r.get("tune_wall_s") for r in g) or 0.0) for v, g in points]
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


def sweep_table(records: list[dict[str, Any]]) -> Table | None:
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
                           _fmt(_mean(r.get("tune_wall_s") for r in group), digits=0),
                           flops_text(_mean(r.get("tune_flops") for r in group)), mark])
    return t


def frontier_points(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per dataset, one point per (model, access, method label): mean tuning FLOPs (the record's
    ``tune_flops``, benchmarks/compute.py), accuracy with its 95 % interval, and whether the point is on
    the Pareto front — no other point reaches at least its mean accuracy with less tuning compute,
    or a higher one with as little. Cells without a compute estimate, transfer cells and cells on
    another test set than their dataset's main one (``main_test_sets``) are left out."""
    ok = on_main_test([r for r in records if r["status"] == "ok" and r.get("accuracy") is not None and r.get("tune_flops") is not None
                       and not is_transfer(r)])
    out: dict[str, list[dict[str, Any]]] = {}
    for d in dict.fromkeys(r["dataset"] for r in ok):
        points = []
        for model in dict.fromkeys(r["model"] for r in ok if r["dataset"] == d):
            mine = [r for r in ok if r["dataset"] == d and r["model"] == model]
            for access, label in row_order(mine):
                group = [r for r in mine if (r["access"], r["label"]) == (access, label)]
                mean, lo, hi = accuracy_interval(group)
                points.append({"model": model, "access": access, "label": label, "seeds": len(group),
                               "tune_flops": statistics.fmean(r["tune_flops"] for r in group),
                               "eval_flops": statistics.fmean(r.get("eval_flops") or 0.0 for r in group),
                               "accuracy": mean, "low": lo, "high": hi})
        for p in points:
            p["pareto"] = not any(q is not p and q["tune_flops"] <= p["tune_flops"] and q["accuracy"] >= p["accuracy"]
                                  and (q["tune_flops"] < p["tune_flops"] or q["accuracy"] > p["accuracy"]) for q in points)
        out[d] = sorted(points, key=lambda p: (p["tune_flops"], -p["accuracy"]))
    return out


def flops_text(v: float | None) -> str:
    """FLOPs the way the report prints them: '0', '3.1e14'."""
    return "—" if v is None else "0" if v == 0 else f"{v:.1e}".replace("e+", "e")


def frontier_table(records: list[dict[str, Any]]) -> Table | None:
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


def data_table(records: list[dict[str, Any]]) -> Table | None:
    """Where each dataset's rows came from and under what terms (a task's provenance), its sizes, and
    the test texts that are also training texts."""
    ok = [r for r in records if r["status"] == "ok" and r.get("sizes")]
    if not ok:
        return None
    t = Table("Data", ["dataset", "rows from", "source", "licence", "citation", "train rows", "test rows scored",
                       "test texts also in train"],
              note="test texts also in train: case and spacing aside, among the test rows scored (a task's dedup: true drops them from train)")
    for d in dict.fromkeys(r["dataset"] for r in ok):
        r = next(x for x in ok if x["dataset"] == d)
        prov = r.get("provenance") or {}
        t.rows.append([d, str(r.get("data_source", "?")), str(prov.get("source", "—")), str(prov.get("licence", prov.get("license", "—"))),
                       str(prov.get("citation", "—")), str(r["sizes"].get("train_total", "?")),
                       ", ".join(sorted({str(x["sizes"].get("test")) for x in ok if x["dataset"] == d})),
                       ", ".join(sorted({str(x["sizes"]["test_in_train"]) for x in ok if x["dataset"] == d and "test_in_train" in x["sizes"]})) or "—"])
    return t


def claim_verdict(delta: float, p: float, holds_if_positive: bool = True) -> str:
    """A claim's verdict from its paired test: 'undecided' unless p < 0.05, else 'holds' when the
    difference goes the claimed way and 'refuted' when it goes the other."""
    if p >= 0.05:
        return "undecided"
    return "holds" if (delta > 0) == holds_if_positive else "refuted"


def _best_of_class(mine: list[dict[str, Any]], access: str, method: str | None = None) -> list[dict[str, Any]]:
    """The cells of the access class's best tuning method in ``mine``: ``method`` where it was chosen
    beforehand (``best_by_class`` of a calibration run; its row of the method's own label first),
    else the highest mean accuracy here. The survey's claims are about what tuning buys, so the
    untuned rows (family ``baseline``) are not candidates."""
    tuned = [r for r in mine if r.get("family") != "baseline"]
    keys = [k for k in row_order(tuned) if k[0] == access]
    groups = [[r for r in tuned if (r["access"], r["label"]) == k] for k in keys]
    if method is not None:
        named = [g for g in groups if g[0]["method"] == method]
        named.sort(key=lambda g: g[0]["label"] not in (method, f"{method}@{access}"))
        return named[0] if named else []
    return max(groups, key=lambda g: statistics.fmean(r["accuracy"] for r in g)) if groups else []


def best_by_class(calibration: list[dict[str, Any]]) -> dict[tuple[str, str, str], str]:
    """(model, dataset, access) → the tuning method with the best held-out accuracy in a calibration
    run, each swept method at the budget ``choose_budget`` picks: the verdicts' class representatives
    chosen before the test set is seen (choosing them on test favours the class with more methods)."""
    ok = [r for r in calibration if r.get("status") == "ok" and r.get("accuracy") is not None and r.get("family") != "baseline"
          and not is_transfer(r)]
    score: dict[tuple[str, str, str], dict[str, float]] = {}
    for (name, model, dataset, _), points in sweep_curves(ok).items():
        chosen = choose_budget(points)
        group = dict(points)[chosen[0]] if chosen else max((g for _, g in points), key=lambda g: statistics.fmean(r["accuracy"] for r in g))
        score.setdefault((model, dataset, group[0]["access"]), {})[group[0]["method"]] = statistics.fmean(r["accuracy"] for r in group)
    unswept: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
    for r in ok:
        if not r.get("sweep"):
            unswept.setdefault((r["model"], r["dataset"], r["access"], r["label"]), []).append(r)
    for (model, dataset, access, _), group in unswept.items():
        score.setdefault((model, dataset, access), {}).setdefault(group[0]["method"], statistics.fmean(x["accuracy"] for x in group))
    return {k: max(v, key=lambda m: v[m]) for k, v in score.items()}


def ordering_comparisons(mine: list[dict[str, Any]], chosen: dict[tuple[str, str, str], str] | None = None) -> list[Comparison]:
    """The survey's orderings (``published.ORDERINGS``) on one model's cells of one dataset's main test
    set: each access class's representative (``chosen`` beforehand, else the best here) against the
    other class's, Holm-adjusted as one family."""
    from boxbench.reports import published

    if not mine:
        return []
    model, d = mine[0]["model"], mine[0]["dataset"]
    best = {a: _best_of_class(mine, a, (chosen or {}).get((model, d, a))) for a in ACCESS_ORDER}
    family = []
    for hi, lo in published.ORDERINGS:
        if best.get(hi) and best.get(lo):
            a, b = best[hi], best[lo]
            c = _compare(d, (hi, a[0]["label"]), (lo, b[0]["label"]), "verdict", a, b)
            if c:
                family.append(c)
    apply_holm(family)
    return family


def verdict_table(records: list[dict[str, Any]], chosen: dict[tuple[str, str, str], str] | None = None) -> Table | None:
    """Which of the survey's claims hold here (``published.ORDERINGS``, ``published.GAP_LARGER_ON``),
    answered twice: **across training runs** (the verdict) and for **these trained models** (the seed
    spread left out): holds / refuted (p < 0.05 after Holm over the dataset's orderings, in the
    claimed or the opposite direction) / undecided, the 95 % interval and P(a > b), how many seeds
    each side had, and the difference the design could have detected. ``chosen`` (``best_by_class``
    of a calibration run) names each class's representative beforehand; without it, the class's best here."""
    from boxbench.reports import published
    from boxbench.reports.stats import Z95, Z_POWER80, across_seeds, gap_difference, per_example_gap

    rows: list[list[str]] = []

    def pick(model: str, dataset: str, access: str) -> str | None:
        return (chosen or {}).get((model, dataset, access))

    for model in dict.fromkeys(r["model"] for r in records if r["status"] == "ok" and not is_transfer(r)):
        ok = on_main_test([r for r in records if r["status"] == "ok" and r["model"] == model and not is_transfer(r) and _correct(r)])
        for d in dict.fromkeys(r["dataset"] for r in ok):
            for c in ordering_comparisons([r for r in ok if r["dataset"] == d], chosen):
                rows.append([model, d, f"{c.a[0]}-box ≥ {c.b[0]}-box", f"{c.a[1]} vs {c.b[1]}", _seed_pair(c),
                             f"{100 * c.delta:+.1f} [{100 * c.low:+.1f}, {100 * c.high:+.1f}]", f"{c.prob_improvement:.2f}",
                             p_text(c.p_holm), f"{100 * c.detectable:.1f}", claim_verdict(c.delta, c.p_holm),
                             p_text(c.fixed_p_holm), claim_verdict(c.delta, c.fixed_p_holm)])
        x, y = published.GAP_LARGER_ON
        gaps, runs, seeds = {}, {}, {}
        for d in (x, y):
            mine = [r for r in ok if r["dataset"] == d]
            white, black = _best_of_class(mine, "white", pick(model, d, "white")), _best_of_class(mine, "black", pick(model, d, "black"))
            bits = paired_bits(white, black) if white and black else None
            if bits:
                gaps[d], runs[d], seeds[d] = per_example_gap(*bits), across_seeds(*bits), f"{len(bits[0])} / {len(bits[1])}"
        if len(gaps) == 2:
            fixed_p = gap_difference(gaps[x], gaps[y])
            est = runs[x].minus(runs[y])
            low, high = est.interval()
            rows.append([model, f"{x} vs {y}", f"black-box falls further behind on {x} than on {y}",
                         f"best white − best black: {100 * runs[x].value:+.1f} vs {100 * runs[y].value:+.1f}", f"{seeds[x]}; {seeds[y]}",
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
                            f"{PAIRED_NOTE}, Holm-adjusted over the dataset's orderings (a family of their own, each answer apart); gap: "
                            "per-example best white − best black, compared across the two test sets (across runs: the two estimates' "
                            "difference, a Welch t; these models: a z-test); seeds: of each side (independent runs where fewer); "
                            "holds / refuted: p < 0.05 in the claimed / the opposite direction; undecided otherwise; the verdict is the "
                            "across-runs one; detectable: the difference this design finds with 80 % power at α 0.05 across runs "
                            f"((t₀.₉₇₅ + t₀.₈) standard errors; the these-models test's is smaller: {Z95 + Z_POWER80:.1f} of its own)")


def _seed_pair(c: Comparison) -> str:
    """'3 / 1', with the independent runs where fewer: '3 (1 run) / 1'."""
    return f"{seeds_text(c.seeds[0], c.runs[0])} / {seeds_text(c.seeds[1], c.runs[1])}"
