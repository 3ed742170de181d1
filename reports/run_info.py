"""What the run was made of and what went wrong: the data, the tuned prompts, errors and stale cells."""

from __future__ import annotations

from boxbench.core.results import Record
from boxbench.reports.table import Table, is_transfer


def error_table(records: list[Record]) -> Table | None:
    bad = [r for r in records if r.status != "ok"]
    if not bad:
        return None
    t = Table("Cells that failed", ["method", "model", "dataset", "seed", "error"])
    for r in bad:
        t.rows.append([r.label, r.model, r.dataset, str(r.seed), str(r.error)])
    return t


def stale_table(stale: list[Record]) -> Table | None:
    """Records in results.jsonl that are not cells of the suite now in the run dir (an earlier
    --limit, edited params): listed, never averaged in."""
    if not stale:
        return None
    t = Table("Stale cells (not in the current suite; left out of every other table)",
              ["method", "model", "dataset", "seed", "test n", "accuracy %", "finished"])
    for r in stale:
        acc = r.accuracy
        t.rows.append([r.label, r.model, r.dataset, str(r.seed), str(r.n), "—" if acc is None else f"{100 * acc:.1f}", str(r.finished_at)])
    return t


def prompts_table(records: list[Record]) -> Table | None:
    """The tuned text prompts per method, dataset and seed (the study's Table 3)."""
    rows = [r for r in records if r.status == "ok" and r.extra.get("prompt_text") is not None and not is_transfer(r)]
    if not rows:
        return None
    t = Table("Tuned prompts", ["method", "model", "dataset", "seed", "prompt", "dictionary words %"],
              note="dictionary words: share of the prompt's words found in an English word list (BERT's uncased WordPiece whole words)")
    for r in rows:
        frac = r.extra.get("prompt_dictionary_fraction")
        t.rows.append([r.label, r.model, r.dataset, str(r.seed), repr(r.extra["prompt_text"]),
                       "—" if frac is None else f"{100 * frac:.0f}"])
    return t


def data_table(records: list[Record]) -> Table | None:
    """Where each dataset's rows came from and under what terms (a task's provenance), its sizes, and
    the test texts that are also training texts."""
    ok = [r for r in records if r.status == "ok" and r.sizes]
    if not ok:
        return None
    t = Table("Data", ["dataset", "rows from", "source", "licence", "citation", "train rows", "test rows scored",
                       "test texts also in train"],
              note="test texts also in train: case and spacing aside, among the test rows scored (a task's dedup: true drops them from train)")
    for d in dict.fromkeys(r.dataset for r in ok):
        r = next(x for x in ok if x.dataset == d)
        prov = r.provenance or {}
        t.rows.append([d, str(r.data_source or "?"), str(prov.get("source", "—")), str(prov.get("licence", prov.get("license", "—"))),
                       str(prov.get("citation", "—")), str((r.sizes or {}).get("train_total", "?")),
                       ", ".join(sorted({str((x.sizes or {}).get("test")) for x in ok if x.dataset == d})),
                       ", ".join(sorted({str(x.sizes["test_in_train"]) for x in ok if x.dataset == d and x.sizes and "test_in_train" in x.sizes})) or "—"])
    return t
