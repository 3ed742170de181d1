"""``boxbench report RUN_DIR``: report.md and a self-contained report.html from results.jsonl alone."""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
from pathlib import Path
from typing import Any

from boxbench.core.results import Record
from boxbench.core.results import ResultStore, read_predictions, write_atomically
from boxbench.reports.accuracy import accuracy_table, comparison_table, headline_table
from boxbench.reports.backends import Predictions, backends_table
from boxbench.reports.comparisons import comparisons
from boxbench.reports.cost import cost_table, fast_path_table, frontier_table, training_table
from boxbench.reports.method_tables import method_tables
from boxbench.reports.plots import accuracy_plot, cost_plot, frontier_plot, sweep_plot, transfer_heatmap
from boxbench.reports.run_info import data_table, error_table, prompts_table, stale_table
from boxbench.reports.seeds import seed_cost_table, seed_table
from boxbench.reports.sweep import sweep_table
from boxbench.reports.table import Table, is_transfer
from boxbench.reports.transfer import transfer_sources, transfer_table
from boxbench.reports.verdicts import best_by_class, verdict_orderings, verdict_table

CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child,th:first-child{text-align:left}
tr.group td{background:#eee;font-weight:bold;text-align:left}.note{color:#555;font-size:90%}img{max-width:100%;height:auto}"""


def load_records(run_dir: Path) -> list[Record]:
    """Every record of ``results.jsonl``; a record written before per-example correctness was kept
    gets it from its cell's predictions.jsonl (for the paired tests)."""
    records = ResultStore.existing(run_dir, "run dir").read()
    for r in records:
        if r.status == "ok" and r.correct is None and (rows := read_predictions(run_dir, r.cell_id)) is not None:
            r.correct = "".join("1" if x.get("pred") == x.get("label") else "0" for x in rows)
    return records


def split_current(records: list[Record], run_dir: Path) -> tuple[list[Record], list[Record]]:
    """(cells of the suite now in the run dir, stale records): the suite's cell keys are written to
    suite.json by every run; a run dir without them (older boxbench) counts every record as current."""
    meta = run_dir / "suite.json"
    keys = json.loads(meta.read_text()).get("cell_keys") if meta.is_file() else None
    if not keys:
        return records, []
    want = set(keys)
    return [r for r in records if r.cell_key in want], [r for r in records if r.cell_key not in want]


def build_tables(records: list[Record], stale: list[Record] | None = None,
                 chosen: dict[tuple[str, str, str], str] | None = None, plans: dict[str, dict[str, Any]] | None = None,
                 predictions: Predictions | None = None) -> list[Table]:
    """Every table of the report, in order. ``predictions``: a cell id -> its per-example rows (the
    backends' side-by-side table needs them; without it that table is left out)."""
    models = list(dict.fromkeys(r.model for r in records if r.status == "ok" and not is_transfer(r)))
    cs = {m: comparisons(records, m) for m in models}  # the paired tests and the verdicts' orderings, once, for every table that shows them
    orderings = verdict_orderings(records, chosen)
    tables: list[Table | None] = [headline_table(records, cs), frontier_table(records), verdict_table(records, chosen, orderings)]
    for m in models:
        tables += [accuracy_table(records, m, cs[m]), comparison_table(records, m, cs[m]), cost_table(records, m), training_table(records, m)]
    tables += [seed_table(records, plans or {}, chosen, paired=cs, orderings=orderings), seed_cost_table(records, plans or {})]
    tables += [transfer_table(records, d, src) for d in dict.fromkeys(r.dataset for r in records)
               for src in transfer_sources(records, d)]
    if predictions is not None:
        tables.append(backends_table(records, predictions))
    tables += method_tables(records)
    tables += [sweep_table(records), prompts_table(records), data_table(records), fast_path_table(records), error_table(records),
               stale_table(stale or [])]
    return [t for t in tables if t is not None]


def report_header(run_dir: Path, records: list[Record], stale: list[Record], meta: dict[str, Any],
                  select_from: Path | None) -> str:
    """The lines above the tables: suite, cells, progress, data, versions, devices, and where the rows came from."""
    ok = sum(1 for r in records if r.status == "ok")
    sources = sorted({r.data_source or "?" for r in records if r.status == "ok"})
    versions: dict[str, Any] = next((r.versions for r in records if r.versions), {})
    devices = sorted({json.dumps(r.device, sort_keys=True) for r in records if r.device})
    suite = meta.get("name", "?")
    description = str((meta.get("suite") or {}).get("description") or "")
    planned = len(meta.get("cell_keys") or [])
    to_go = planned - len({r.cell_key for r in records}) if planned else 0  # a run in progress, or stopped: it resumes
    progress = f" · {to_go} of the suite's {planned} cells not run yet (`boxbench run` on this folder resumes them)" if to_go > 0 else ""
    header = (f"Suite `{suite}` · {ok}/{len(records)} cells ok{progress}{f' · {len(stale)} stale cells listed at the end' if stale else ''} · written {dt.datetime.now().isoformat(timespec='seconds')}\n\n"
              f"Data: {', '.join(sources)} · versions: {', '.join(f'{k} {v}' for k, v in versions.items())}\n\n"
              f"Devices: {'; '.join(devices)}\n" + (f"\n{description}\n" if description else ""))
    held_out = sorted({r.dataset for r in records if (r.sizes or {}).get("evaluated_on") == "holdout"})
    if select_from is not None:
        header += f"\nVerdicts' class representatives chosen on the held-out rows of {select_from.name}/ (calibration), not on this test set\n"
    if held_out:
        header += (f"\nEvaluated on held-out rows of the train split ({', '.join(held_out)}: settings.evaluate_on holdout), "
                   f"not on test: a calibration run\n")
    return header


# (file name, title, alt text) of each figure, in the order report.html shows them after the tables;
# the frontier (accuracy against tuning compute) is the headline and comes first, before them
FIGURES = (("report_accuracy.png", "Accuracy with 95 % intervals", "accuracy with intervals"),
           ("report_cost.png", "Accuracy against cost", "accuracy against cost"),
           ("report_transfer.png", "Transfer", "transfer heatmap"),
           ("report_curves.png", "Learning curves", "learning curves"))
FRONTIER = ("report_frontier.png", "Accuracy against tuning compute", "accuracy against tuning compute")


def _img(png: bytes, title: str, alt: str) -> str:
    return f'<h3>{title}</h3><img alt="{alt}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def write_report(run_dir: Path, select_from: Path | None = None) -> tuple[Path, Path]:
    """Write report.md (+ its PNG figures) and report.html (figures embedded); returns both paths.
    ``select_from``: a calibration run whose held-out results name each access class's
    representative in the verdicts (``verdicts.best_by_class``)."""
    records, stale = split_current(load_records(run_dir), run_dir)
    chosen = best_by_class(load_records(select_from)) if select_from is not None else None
    meta = json.loads((run_dir / "suite.json").read_text()) if (run_dir / "suite.json").exists() else {}
    tables = build_tables(records, stale, chosen, meta.get("seed_plans"), lambda cell_id: read_predictions(run_dir, cell_id))
    pngs: dict[str, bytes | None] = {"report_cost.png": cost_plot(records), "report_transfer.png": transfer_heatmap(records),
            "report_accuracy.png": accuracy_plot(records), "report_curves.png": sweep_plot(records),
            "report_frontier.png": frontier_plot(records)}
    header = report_header(run_dir, records, stale, meta, select_from)
    figures = [(f, title, alt, png) for f, title, alt in (FRONTIER, *FIGURES) if (png := pngs[f])]
    first = [f for f in figures if f[0] == FRONTIER[0]]
    rest = [f for f in figures if f[0] != FRONTIER[0]]
    md_parts = [f"# boxbench report — {run_dir.name}\n", header]
    md_parts += [f"### {title}\n\n![{alt}]({name})\n" for name, title, alt, _ in first]
    md_parts += [t.markdown() for t in tables]
    md_parts += [f"### {title}\n\n![{alt}]({name})\n" for name, title, alt, _ in rest]
    md = run_dir / "report.md"
    body = "".join(_img(png, title, alt) for _, title, alt, png in first) + "".join(t.html() for t in tables)
    body += "".join(_img(png, title, alt) for _, title, alt, png in rest)
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>boxbench report — {html.escape(run_dir.name)}</title>"
            f"<style>{CSS}</style></head><body><h1>boxbench report — {html.escape(run_dir.name)}</h1>"
            f"<p>{html.escape(header).replace(chr(10) + chr(10), '<br>')}</p>{body}</body></html>")
    out = run_dir / "report.html"
    files = {name: png for name, _, _, png in figures} | {md.name: "\n".join(md_parts).encode(), out.name: page.encode()}
    write_atomically(run_dir, files, "the report (report.md, report.html and its figures)")
    return md, out
