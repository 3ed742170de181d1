"""Seeds until decided (``seeds: {min, max, until: decided}``): run the suite in rounds, adding one
seed after each round to the methods whose comparisons are still undecided and could still be
decided (``reports.seeds.decide``). Every round is an ordinary resumable ``run_suite`` over the same
run folder: a cell's key does not depend on the round that added it, so no cell runs twice and a
killed run resumes (its first rounds find their cells done and only re-decide)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from boxbench.benchmarks.suite import Suite
from boxbench.core.results import RESULTS, ResultStore
from boxbench.reports.report import load_records, split_current
from boxbench.reports.seeds import decide
from boxbench.reports.verdicts import best_by_class


def planned(suite: Suite) -> bool:
    """Whether any method of ``suite`` adds seeds until decided."""
    return any(p.get("until") == "decided" for p in suite.plans.values())


def more_seeds(suite: Suite, run_dir: Path, select_from: Path | None = None) -> set[str]:
    """The arms of ``suite``'s cells that get one more seed, from the run folder's current records
    (``select_from``: the calibration run that names the verdicts' class representatives, as
    ``report --select-best-from``); an arm whose cells already reach its plan's ``max`` seeds gets
    none (a failed cell is not run past it)."""
    records, _ = split_current(ResultStore(run_dir).read(), run_dir)
    chosen = best_by_class(load_records(select_from)) if select_from is not None else None
    want = set().union(*(d.extend for d in decide(records, suite.plans, chosen))) if records else set()
    have = suite.seed_counts()
    return {a for a in want if a in have and have[a] < suite.plans[a]["max"]}


def earned(suite: Suite, run_dir: Path) -> Suite:
    """``suite`` with the seeds earlier rounds added, found in ``run_dir`` — by this command or by a
    run of the same suite split by other ``--only`` filters: each planned arm is extended while its
    next seed's cell has a record there. A run so resumes where the rounds stopped, and the run
    folder's current cells (``suite.json``, the report's) keep every seed a round spent."""
    if not planned(suite):
        return suite
    recorded = {r.cell_key for r in ResultStore(run_dir).read()} if (run_dir / RESULTS).is_file() else set()
    while True:
        have = suite.seed_counts(everywhere=True)
        below = {a for a, p in suite.plans.items() if p.get("until") == "decided" and a in have and have[a] < p["max"]}
        extended = suite.with_seed(below)
        found = {c.arm for c in extended.universe[len(suite.universe):] if c.source is None and c.key in recorded}
        if not found:
            return suite
        suite = extended if found == below else suite.with_seed(found)


def run_until_decided(suite: Suite, run_dir: Path, run: Callable[[Suite], dict[str, int]],
                      select_from: Path | None = None, say: Callable[[str], None] | None = None) -> dict[str, int]:
    """``run`` (one ``run_suite`` round) until no comparison wants another seed; the counts of every
    round. ``say``: where a line naming each round's added seeds goes."""
    total: dict[str, int] = {}
    rounds = 0
    suite = earned(suite, run_dir)
    while True:
        counts = run(suite)
        rounds += 1
        for k, v in counts.items():
            total[k] = total.get(k, 0) + v
        arms = more_seeds(suite, run_dir, select_from) if planned(suite) else set()
        if not arms:  # skipped: every cell of the last round that no round ran
            total["skipped"] = len(suite.cells) - sum(v for k, v in total.items() if k != "skipped")
            return total
        suite = suite.with_seed(arms)
        if say is not None:
            seeds = {c.arm: c.seed for c in suite.cells if c.source is None and c.arm in arms}
            say(f"seeds until decided: round {rounds + 1} adds " + ", ".join(
                f"seed {seeds[a]} of {a.split('|')[2]} ({a.split('|')[1]})" for a in sorted(arms)))
