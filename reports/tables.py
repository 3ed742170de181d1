"""Tables built from results.jsonl records, rendered to markdown or HTML from the same rows."""

from __future__ import annotations

import html
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


def accuracy_table(records: list[dict[str, Any]], model: str) -> Table:
    """The survey's Table 1 layout: methods grouped by access class × datasets, mean ± std over seeds."""
    ok = [r for r in records if r["status"] == "ok" and r["model"] == model and not is_transfer(r)]
    datasets = list(dict.fromkeys(r["dataset"] for r in ok))
    t = Table(f"Accuracy (%) — {model}", ["method", "protocol", *datasets],
              note="mean ± std over seeds; protocol: logprob = label words scored by log-probability, generate = greedy answer parsed")
    current = None
    for access, label in row_order(ok):
        if access != current:
            t.groups.append((len(t.rows), f"{access}-box"))
            current = access
        mine = [r for r in ok if r["label"] == label and r["access"] == access]
        protocol = ", ".join(sorted({r["protocol"] for r in mine}))
        cells = [mean_std([r["accuracy"] for r in mine if r["dataset"] == d], 100) for d in datasets]
        t.rows.append([label, protocol, *cells])
    return t


def cost_table(records: list[dict[str, Any]], model: str) -> Table:
    """The survey's Table 2 layout: memory, wall time, calls and tokens per method and dataset."""
    ok = [r for r in records if r["status"] == "ok" and r["model"] == model and not is_transfer(r)]
    t = Table(f"Cost — {model}", ["method", "access", "dataset", "tune s", "eval s", "peak RSS GiB", "peak GPU GiB",
                                  "calls", "prompt tok", "gen tok", "invalid %", "n"],
              note="means over seeds; peak RSS sampled over the whole cell (model load included)")
    gib = 1024**3
    for access, label in row_order(ok):
        for d in dict.fromkeys(r["dataset"] for r in ok):
            mine = [r for r in ok if r["label"] == label and r["access"] == access and r["dataset"] == d]
            if not mine:
                continue
            rss = _mean(r["peak_host_rss_bytes"] for r in mine)
            gpu = _mean(r["peak_accelerator_bytes"] for r in mine)
            t.rows.append([
                label, access, d, _fmt(_mean(r["tune_wall_s"] for r in mine)), _fmt(_mean(r["eval_wall_s"] for r in mine)),
                _fmt(rss / gib if rss is not None else None, digits=2), _fmt(gpu / gib if gpu is not None else None, digits=2),
                _fmt(_mean(r["model_calls"] for r in mine), digits=0), _fmt(_mean(r["prompt_tokens"] for r in mine), digits=0),
                _fmt(_mean(r["completion_tokens"] for r in mine), digits=0),
                mean_std([r["invalid_rate"] for r in mine], 100),
                str(mine[0]["n"]),
            ])
    return t


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


def transfer_matrix(records: list[dict[str, Any]], dataset: str) -> tuple[list[str], list[str], list[list[list[float]]]] | None:
    """(row labels, column names, accuracies per row × column over seeds) for one dataset: the study's
    layout, rows = methods with transfer cells, columns = "Original" (the source model) + each target."""
    ok = [r for r in records if r["status"] == "ok" and r["dataset"] == dataset]
    moved = [r for r in ok if is_transfer(r)]
    if not moved:
        return None
    labels = list(dict.fromkeys(r["label"] for r in moved))
    targets = list(dict.fromkeys(r["target_model"] for r in moved))
    sources = {r["label"]: r["source_model"] for r in moved}
    cols = ["Original", *targets]
    grid = []
    for lab in labels:
        row = [[r["accuracy"] for r in ok if r["label"] == lab and not is_transfer(r) and r["model"] == sources[lab]]]
        row += [[r["accuracy"] for r in moved if r["label"] == lab and r["target_model"] == t] for t in targets]
        grid.append(row)
    return labels, cols, grid


def transfer_table(records: list[dict[str, Any]], dataset: str) -> Table | None:
    m = transfer_matrix(records, dataset)
    if m is None:
        return None
    labels, cols, grid = m
    sources = {r["label"]: r["source_model"] for r in records if is_transfer(r)}
    t = Table(f"Transfer — {dataset}", ["method", "source", *cols],
              note="accuracy (%), mean ± std over seeds; the prompt tuned on the source model, evaluated unchanged as text on each target")
    for lab, row in zip(labels, grid):
        t.rows.append([lab, sources.get(lab, "?"), *[mean_std(v, 100) for v in row]])
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


def dictionary_table(records: list[dict[str, Any]]) -> Table | None:
    """Share of dictionary words in the tuned prompts per method and dataset, mean ± std over seeds
    (the study's claim: prompts searched over the agreeing vocabulary read more like words)."""
    rows = [r for r in records if r["status"] == "ok" and r.get("prompt_dictionary_fraction") is not None and not is_transfer(r)]
    if not rows:
        return None
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    t = Table("Dictionary words in tuned prompts", ["method", "model", *datasets, "all"],
              note="% of the prompt's words found in an English word list, mean ± std over seeds")
    for lab, model in dict.fromkeys((r["label"], r["model"]) for r in rows):
        mine = [r for r in rows if r["label"] == lab and r["model"] == model]
        t.rows.append([lab, model, *[mean_std((r["prompt_dictionary_fraction"] for r in mine if r["dataset"] == d), 100)
                                     for d in datasets], mean_std((r["prompt_dictionary_fraction"] for r in mine), 100)])
    return t


def pez_table(records: list[dict[str, Any]]) -> Table | None:
    """How each PEZ variant searched, per dataset over seeds: the candidate vocabulary, how strongly
    its tokens agree across models, what the agreement cost (the shared cache is filled by whichever
    cell misses first, so a miss's seconds land in that cell's tune time), the step rate, and the
    step whose prompt the dev set chose (0 = the random initial prompt)."""
    rows = [r for r in records if r["status"] == "ok" and r.get("pez_steps") is not None and not is_transfer(r)]
    if not rows:
        return None
    t = Table("PEZ search", ["method", "model", "dataset", "candidates", "mean agreement of candidates", "agreement s (misses)",
                             "steps", "steps/s", "best step per seed", "loss first → last"],
              note="mean ± std over seeds; agreement = mean Jaccard of the tokens' top-K neighbour sets across models")
    for lab, model, d in dict.fromkeys((r["label"], r["model"], r["dataset"]) for r in rows):
        mine = [r for r in rows if (r["label"], r["model"], r["dataset"]) == (lab, model, d)]
        misses = [r["agreement_s"] for r in mine if r.get("agreement_s") is not None and not r.get("agreement_cached")]
        first, last = _mean(r.get("loss_first") for r in mine), _mean(r.get("loss_last") for r in mine)
        t.rows.append([lab, model, d, _fmt(_mean(r.get("candidate_vocab") for r in mine), digits=0),
                       mean_std((r.get("mean_agreement_chosen") for r in mine), digits=3),
                       "—" if not misses else f"{_fmt(_mean(misses), digits=0)} ({len(misses)})",
                       str(mine[0]["pez_steps"]), mean_std((r.get("steps_per_s") for r in mine), digits=2),
                       ", ".join(str(r.get("best_step", "?")) for r in sorted(mine, key=lambda r: r["seed"])),
                       "—" if first is None or last is None else f"{first:.3f} → {last:.3f}"])
    return t


def proxy_table(records: list[dict[str, Any]]) -> Table | None:
    """Proxy-Tuning next to the numbers it is about — the large model alone, the untuned small model
    and the tuned small expert alone — read from the proxy cell's own passes over the same examples
    (``component_accuracy``); records without them fall back to the run's zero_shot / lora cells."""
    ok = [r for r in records if r["status"] == "ok" and not is_transfer(r)]
    proxies = [r for r in ok if r["method"] == "proxy_tuning"]
    if not proxies:
        return None

    def part(group: list[dict[str, Any]], name: str, fallback: Any) -> str:
        vals = [(r.get("component_accuracy") or {}).get(name) for r in group]
        if all(v is None for v in vals):
            return mean_std([r["accuracy"] for r in ok if fallback(r)], 100) + " *"
        return mean_std(vals, 100)

    t = Table("Proxy-Tuning", ["large model", "small model", "dataset", "α", "large alone", "small untuned",
                               "small expert alone", "proxy-tuned large"],
              note="accuracy (%), mean ± std over seeds, all four on the proxy cell's own test examples; "
                   "* = from the run's zero_shot / lora cells instead")
    for key in dict.fromkeys((p["model"], p.get("small_model"), p["dataset"], p.get("alpha")) for p in proxies):
        large, small, d, alpha = key
        group = [p for p in proxies if (p["model"], p.get("small_model"), p["dataset"], p.get("alpha")) == key]
        t.rows.append([large, str(small), d, str(alpha),
                       part(group, "large", lambda r: r["method"] == "zero_shot" and r["model"] == large and r["dataset"] == d),
                       part(group, "antiexpert", lambda r: r["method"] == "zero_shot" and r["model"] == small and r["dataset"] == d),
                       part(group, "expert", lambda r: r["method"] == "lora" and r["model"] == small and r["dataset"] == d),
                       mean_std([p["accuracy"] for p in group], 100)])
    return t
