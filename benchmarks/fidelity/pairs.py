"""A reference default against the rule it replaced, side by side: the table docs/fidelity.md prints
for a run of ``fidelity_defaults.yaml`` or ``fidelity_round2.yaml``.

    python -m boxbench.benchmarks.fidelity.pairs RUN_DIR

Every label ``X-ref`` is paired with every ``X-…`` of the same prefix (``X-old``, ``X-init-only``, …)
on each dataset and seed: both accuracies on the same test rows, the difference, the exact McNemar p on the
rows where they disagree (``reports.stats.mcnemar_exact``), and the tuning seconds; then each
record's method-specific facts the change is about (PEZ's chosen step, BBT's kept evaluation,
EvoPrompt's self-crossings).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from boxbench.core.results import Record
from boxbench.reports.report import load_records
from boxbench.reports.stats import discordant, mcnemar_exact

FACTS = ("best_step", "prompt_moved", "best_at_evaluation", "kept_p0", "self_crossings", "candidates_scored", "winner_dev_accuracy")


def pair_rows(records: list[Record]) -> list[list[str]]:
    """One row per (reference, other) pair and dataset, in run order."""
    ok = {(r.label, r.dataset, r.seed): r for r in records if r.status == "ok" and isinstance(r.correct, str)}
    rows = []
    for (label, d, seed), ref in ok.items():
        if not label.endswith("-ref"):
            continue
        prefix = label[: -len("ref")]
        for (other, d2, seed2), old in ok.items():
            if (d2, seed2) != (d, seed) or other == label or not other.startswith(prefix) or old.test_sha256 != ref.test_sha256:
                continue
            a, b = [c == "1" for c in ref.correct or ""], [c == "1" for c in old.correct or ""]
            only_ref, only_old = discordant(a, b)
            rows.append([f"{label} vs {other}", d, str(seed), f"{100 * (old.accuracy or 0.0):.1f}", f"{100 * (ref.accuracy or 0.0):.1f}",
                         f"{100 * ((ref.accuracy or 0.0) - (old.accuracy or 0.0)):+.1f}", f"{only_ref} / {only_old}", f"{mcnemar_exact(only_ref, only_old):.3g}",
                         f"{old.tune_wall_s or 0:.0f} → {ref.tune_wall_s or 0:.0f}", _facts(old) + " → " + _facts(ref)])
    return rows


def _facts(r: Record) -> str:
    return ", ".join(f"{k} {r.extra[k]}" for k in FACTS if r.extra.get(k) is not None) or "—"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir")
    args = ap.parse_args(argv)
    print("| change | dataset | seed | earlier % | reference % | difference | only ref / only earlier right | McNemar p | tune s earlier → ref | facts earlier → ref |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in pair_rows(load_records(Path(args.run_dir))):
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
