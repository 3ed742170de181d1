"""The report's table type and the small helpers every table family uses: number formats, row order, which records are transfer cells and which the main test set."""

from __future__ import annotations

import html
import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Iterable
from boxbench.core.results import Record

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


def mean_or_none(values: Iterable[Any]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.fmean(vals) if vals else None


def accuracies(group: list[Record]) -> list[float]:
    """The accuracies of ``group``'s cells that have one (every finished cell does)."""
    return [r.accuracy for r in group if r.accuracy is not None]


def mean_accuracy(group: list[Record]) -> float:
    """The mean accuracy over ``group``'s seeds."""
    return statistics.fmean(accuracies(group))


def fmt(v: float | None, unit: str = "", digits: int = 1) -> str:
    return "—" if v is None else f"{v:,.{digits}f}{unit}"


def row_order(records: list[Record]) -> list[tuple[str, str]]:
    """(access, label) pairs in table order: access class, then first appearance."""
    seen: list[tuple[str, str]] = []
    for r in records:
        key = (r.access, r.label)
        if key not in seen:
            seen.append(key)
    return sorted(seen, key=lambda k: ACCESS_ORDER.index(k[0]) if k[0] in ACCESS_ORDER else 99)


def seeds_text(seeds: int, runs: int) -> str:
    """'3', or '3 (1 run)' where the seeds' predictions were identical."""
    return str(seeds) if runs in (0, seeds) else f"{seeds} ({runs} run{'s' if runs > 1 else ''})"


def p_text(p: float, digits: int = 3) -> str:
    """A p-value for a table cell; one too small for a float (it underflows to 0) reads '< 1e-300', not 0."""
    return f"{p:.{digits}g}" if p > 0 else "< 1e-300"


def prob_text(p: float) -> str:
    """A probability for a table cell; '—' where there is none (P(A > B) with one run on each side)."""
    return "—" if math.isnan(p) else f"{p:.2f}"


def gib(n_bytes: float | None, digits: int = 1) -> str:
    """Bytes as GiB for a table cell ('—' when not measured)."""
    return fmt(n_bytes / 1024**3 if n_bytes is not None else None, digits=digits)


def sub_class(records: list[Record]) -> str:
    """The method's sub-class in the survey's taxonomy (``family`` in the record: ``grey/module`` -> ``module``)."""
    fams = {str(r.family or "").split("/")[-1] for r in records} - {""}
    return ", ".join(sorted(fams)) or "—"


def method_of(ok: list[Record], key: tuple[str, str]) -> str:
    return next(r.method for r in ok if (r.access, r.label) == key)


def is_transfer(r: Record) -> bool:
    """A transfer record: an artifact tuned on ``source_model``, evaluated on another model."""
    return (r.source_model or r.model) != (r.target_model or r.model)


def test_set_of(r: Record) -> tuple[Any, Any]:
    return r.test_sha256, r.n


def main_test_sets(records: list[Record]) -> dict[tuple[str, str], tuple[Any, Any]]:
    """(model, dataset) → the test set (hash, rows) most of its records were scored on (ties: the
    larger). Comparisons between methods, the frontier and the verdicts are about that one test set;
    a side experiment on other rows (the PEZ transfer block's source cells) is compared only with
    the zero-shot run on its own rows, and its accuracy is marked with its row count."""
    counts: dict[tuple[str, str], dict[tuple[Any, Any], int]] = {}
    for r in records:
        sets = counts.setdefault((r.model, r.dataset), {})
        sets[test_set_of(r)] = sets.get(test_set_of(r), 0) + 1
    return {k: max(v, key=lambda t: (v[t], t[1] or 0)) for k, v in counts.items()}


def on_main_test(records: list[Record]) -> list[Record]:
    """The records scored on their (model, dataset)'s main test set (``main_test_sets``)."""
    main = main_test_sets(records)
    return [r for r in records if test_set_of(r) == main[(r.model, r.dataset)]]


def flops_text(v: float | None) -> str:
    """FLOPs the way the report prints them: '0', '3.1e14'."""
    return "—" if v is None else "0" if v == 0 else f"{v:.1e}".replace("e+", "e")
