"""``boxbench compare RUN_A RUN_B``: did a change (a library upgrade, another backend, int8, a new
commit) move any number? Cells are matched by what they measure — method, label, access, params,
model (or a mapping), dataset, seed and the test rows — not by their keys, which differ when the
backend, commit or library versions do. Per match: the accuracy change with the paired exact test on
the same rows (McNemar, Holm-adjusted over the matches), per-row agreement of the predictions, and
the tune / eval time, peak-memory and FLOPs ratios (B / A)."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from boxbench.core.errors import UserError
from boxbench.core.results import Record, ResultStore, read_predictions
from boxbench.reports.backends import agreement
from boxbench.reports.report import CSS
from boxbench.reports.stats import discordant, holm, mcnemar_exact
from boxbench.reports.table import Table, fmt, p_text

FIELDS = ("method", "label", "access", "params", "model", "dataset", "seed", "test")
ALPHA = 0.05


def _value(r: Record, name: str, model_map: dict[str, str]) -> Any:
    if name == "params":
        return json.dumps(r.params or {}, sort_keys=True)
    if name == "model":
        return model_map.get(r.model, r.model)
    if name == "test":
        return (r.test_sha256, r.n)
    return getattr(r, name)


@dataclass
class Match:
    a: Record
    b: Record
    p: float | None = None  # McNemar exact, same rows
    p_holm: float | None = None
    agreement: float | None = None  # share of rows with the same prediction


@dataclass
class Comparison:
    matches: list[Match] = field(default_factory=list)
    only_a: list[Record] = field(default_factory=list)
    only_b: list[Record] = field(default_factory=list)
    differences: list[tuple[str, str, str]] = field(default_factory=list)  # (what, in A, in B)

    def changed(self) -> list[Match]:
        """The matches whose accuracy changed significantly (Holm-adjusted p < ``ALPHA``)."""
        return [m for m in self.matches if m.p_holm is not None and m.p_holm < ALPHA]


def _ratio(a: Any, b: Any) -> float | None:
    return b / a if isinstance(a, (int, float)) and isinstance(b, (int, float)) and a else None


def _software(records: list[Record]) -> dict[str, str]:
    """What a run was made with: boxbench's commit and the library versions (its first ok record's)."""
    r = next((r for r in records if r.status == "ok"), None)
    code = (r.extra.get("code") if r else None) or {}
    out = {"boxbench commit": str(code.get("commit", "?"))[:12] + (" (dirty)" if code.get("dirty") else "")}
    out.update({k: str(v) for k, v in ((r.versions if r else None) or {}).items()})
    return out


def compare_runs(run_a: Path, run_b: Path, by: tuple[str, ...] = FIELDS, model_map: dict[str, str] | None = None) -> Comparison:
    """Match run A's ok cells with run B's by ``by`` (a subset of ``FIELDS``); ``model_map``: run A's
    model names to run B's (then only those models' cells take part, on both sides)."""
    unknown = [f for f in by if f not in FIELDS]
    if unknown:
        raise UserError(f"--by: unknown field {unknown[0]!r}; choose from {', '.join(FIELDS)}")
    mapping = model_map or {}
    recs_a = [r for r in ResultStore.existing(run_a, "RUN_A").read() if r.status == "ok"]
    recs_b = [r for r in ResultStore.existing(run_b, "RUN_B").read() if r.status == "ok"]
    if mapping:
        for name, recs, where in ((set(mapping), recs_a, "RUN_A"), (set(mapping.values()), recs_b, "RUN_B")):
            missing = sorted(name - {r.model for r in recs})
            if missing:
                raise UserError(f"--map-model: {where} has no ok cell of model {missing[0]!r}")
        recs_a = [r for r in recs_a if r.model in mapping]
        recs_b = [r for r in recs_b if r.model in set(mapping.values())]
    key = (lambda r, m: tuple(_value(r, f, m) for f in by))
    index_b: dict[tuple[Any, ...], Record] = {}
    for r in recs_b:
        index_b.setdefault(key(r, {}), r)
    out = Comparison()
    used: set[str] = set()
    for r in recs_a:
        other = index_b.get(key(r, mapping))
        if other is None or other.cell_key in used:
            out.only_a.append(r)
            continue
        used.add(other.cell_key)
        out.matches.append(_measure(run_a, run_b, r, other))
    out.only_b = [r for r in recs_b if r.cell_key not in used]
    adjusted = holm([m.p for m in out.matches if m.p is not None])
    for m, p in zip([m for m in out.matches if m.p is not None], adjusted):
        m.p_holm = p
    sa, sb = _software(recs_a), _software(recs_b)
    out.differences = [(k, sa.get(k, "—"), sb.get(k, "—")) for k in dict.fromkeys([*sa, *sb]) if sa.get(k) != sb.get(k)]
    return out


def _measure(run_a: Path, run_b: Path, a: Record, b: Record) -> Match:
    m = Match(a, b)
    ca, cb = a.correct, b.correct
    if ca and cb and len(ca) == len(cb) and a.test_sha256 == b.test_sha256:
        only_a, only_b = discordant([x == "1" for x in ca], [x == "1" for x in cb])
        m.p = mcnemar_exact(only_a, only_b)
    pa, pb = read_predictions(run_a, a.cell_id), read_predictions(run_b, b.cell_id)
    if pa is not None and pb is not None and len(pa) == len(pb) and pa:
        m.agreement = agreement(pa, pb)["same"]
    return m


def tables(c: Comparison, name_a: str, name_b: str) -> list[Table]:
    """The matches, what is only in one run, and the software that differs."""
    t = Table(f"Matched cells: {name_a} (A) → {name_b} (B)",
              ["method", "model (A → B)", "dataset", "seed", "n", "A %", "B %", "Δ pp", "p (exact, same rows)", "p Holm", "",
               "same prediction %", "tune time B/A", "eval time B/A", "peak host B/A", "tune FLOPs B/A"],
              note=f"matched by what the cells measure (method, label, access, params, model, dataset, seed, test rows), not by key; "
                   f"Δ = B − A; p: McNemar's exact test on the rows only one of the two got right, Holm-adjusted over the "
                   f"{len(c.matches)} matches; ▲/▼: p Holm < {ALPHA}; ratios B / A")
    for m in c.matches:
        a, b = m.a, m.b
        delta = 100 * ((b.accuracy or 0.0) - (a.accuracy or 0.0))  # ok cells: both measured
        mark = ("▲" if delta > 0 else "▼") if m.p_holm is not None and m.p_holm < ALPHA else ""
        model = a.model if a.model == b.model else f"{a.model} → {b.model}"
        t.rows.append([a.label, model, a.dataset, str(a.seed), str(a.n), fmt(100 * (a.accuracy or 0.0)), fmt(100 * (b.accuracy or 0.0)),
                       f"{delta:+.1f}", p_text(m.p) if m.p is not None else "—", p_text(m.p_holm) if m.p_holm is not None else "—", mark,
                       fmt(None if m.agreement is None else 100 * m.agreement),
                       *(fmt(_ratio(getattr(a, k), getattr(b, k)), digits=2) for k in ("tune_wall_s", "eval_wall_s", "peak_host_rss_bytes", "tune_flops"))])
    out = [t]
    if c.only_a or c.only_b:
        u = Table("Only in one run", ["run", "method", "model", "dataset", "seed", "n"],
                  note="ok cells with no counterpart measuring the same thing in the other run")
        for side, rs in (("A", c.only_a), ("B", c.only_b)):
            u.rows += [[side, r.label, r.model, r.dataset, str(r.seed), str(r.n)] for r in rs]
        out.append(u)
    if c.differences:
        d = Table("Software that differs", ["what", "A", "B"], note="boxbench's commit and library versions, from each run's records")
        d.rows += [list(x) for x in c.differences]
        out.append(d)
    return out


def write_compare(c: Comparison, name_a: str, name_b: str, out_dir: Path) -> tuple[Path, Path]:
    """compare.md and compare.html in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    ts = tables(c, name_a, name_b)
    head = (f"{len(c.matches)} matched cells, {len(c.changed())} changed significantly; "
            f"{len(c.only_a)} only in A, {len(c.only_b)} only in B")
    md = out_dir / "compare.md"
    md.write_text(f"# boxbench compare — {name_a} → {name_b}\n\n{head}\n\n" + "\n".join(t.markdown() for t in ts))
    page = out_dir / "compare.html"
    title = html.escape(f"boxbench compare — {name_a} → {name_b}")
    page.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title><style>{CSS}</style></head>"
                    f"<body><h1>{title}</h1><p>{head}</p>{''.join(t.html() for t in ts)}</body></html>")
    return md, page
