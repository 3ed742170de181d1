"""What a cell's start costs: the same suite run with cells forked from the warm fork server and
with a fresh ``python`` per cell (``BOXBENCH_FRESH_CELLS=1``), alternating, side by side in one run.

    python benchmarks/perf/cell_start.py [--suite benchmarks/suites/smoke.yaml] [--reps 2]

Prints each mode's whole-run wall time (the ``boxbench run`` command, minimum over ``--reps``),
the sum of the cells' recorded load / tune / eval times, the largest cell peak RSS, the ratio, and
whether both modes recorded the same per-example results.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODES = {"forked": {}, "fresh": {"BOXBENCH_FRESH_CELLS": "1"}}


def run_once(suite: str, mode: str, out: Path) -> dict:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "boxbench.benchmarks.cli", "run", suite, "--out", str(out), "--quiet"],
                   check=True, env={**os.environ, **MODES[mode]}, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    recs = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    return {"wall": wall, "recs": recs, **{f"{k}_s": sum(r[f"{k}_wall_s"] or 0 for r in recs) for k in ("load", "tune", "eval")},
            "peak_gib": max(r["peak_host_rss_bytes"] for r in recs) / 2**30,
            "results": sorted((r["cell_key"], r["correct"]) for r in recs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", default=str(Path(__file__).resolve().parents[1] / "suites" / "smoke.yaml"))
    ap.add_argument("--reps", type=int, default=2)
    args = ap.parse_args()
    best: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bb-start-") as tmp:
        for rep in range(args.reps):
            for mode in MODES:
                got = run_once(args.suite, mode, Path(tmp) / f"{mode}-{rep}")
                print(f"rep {rep} {mode:6s} {got['wall']:.1f} s", flush=True)
                if mode not in best or got["wall"] < best[mode]["wall"]:
                    best[mode] = got
    n = len(best["forked"]["recs"])
    print(f"\n{args.suite}: {n} cells, min of {args.reps}")
    print("| cells start | run s | load s (sum) | tune s (sum) | eval s (sum) | max cell peak GiB |")
    print("|---|---|---|---|---|---|")
    for mode, got in best.items():
        print(f"| {mode} | {got['wall']:.1f} | {got['load_s']:.1f} | {got['tune_s']:.1f} | {got['eval_s']:.1f} | {got['peak_gib']:.2f} |")
    print(f"\nforked is {best['fresh']['wall'] / best['forked']['wall']:.2f}x faster over the run; "
          f"{(best['fresh']['wall'] - best['forked']['wall']) / n:.1f} s saved a cell; "
          f"same per-example results: {best['forked']['results'] == best['fresh']['results']}")


if __name__ == "__main__":
    main()
