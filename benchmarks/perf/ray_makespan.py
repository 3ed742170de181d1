"""Makespan of a suite, local executor vs Ray, measured side by side in one run; and, on paper,
survey.yaml on 8 GPUs from the survey's published cell times.

    python benchmarks/perf/ray_makespan.py [--test 64] [--out runs/perf_ray]

Measured: an 8-cell CPU suite (SmolLM2-135M; zero-shot and 2-shot, at grey and at black access;
SST-2 and AG News) run whole by ``boxbench run`` with the local executor (one cell after another),
then with ``--executor ray`` on a Ray cluster the command starts on this machine, every cell asking
for one CPU (``resources: {num_cpus: 1}``): as many cells at a time as the machine has cores; and
with Ray again, its workers starting every cell as a fresh ``python`` (``BOXBENCH_FRESH_CELLS=1``)
instead of forking it from their fork servers. Each wall time includes everything the user waits
for (Ray's start included); predictions must match.

On paper: survey.yaml's cells (methods × 2 datasets × 3 seeds) with the survey's SST-2 wall times
per method (reports/published.py; the AG News cells assumed to take as long, the methods without a
published time left out), placed by longest-first list scheduling on 8 GPUs, one cell per GPU.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from boxbench.reports.published import COST_SST2

SUITE = """name: makespan
models: [smollm2-135m]
datasets: [sst2, agnews]
methods:
  - {{name: zero_shot, access: grey}}
  - {{name: few_shot, access: grey, params: {{k: 2}}}}
  - zero_shot
  - {{name: few_shot, params: {{k: 2}}}}
seeds: [0]
limits: {{train: 200, test: {test}}}
settings: {{batch_size: 16, max_new_tokens: 6}}
resources: {{num_cpus: 1}}
"""


def run(suite: Path, out: Path, *extra: str, env: dict[str, str] | None = None) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "boxbench.benchmarks.cli", "run", str(suite), "--out", str(out), "--quiet", *extra],
                          capture_output=True, text=True, env={**os.environ, **(env or {})})
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"run failed ({' '.join(extra) or 'local'}): {proc.stderr[-2000:]}")
    return wall


def predictions(out: Path) -> dict[str, list[int | None]]:
    recs = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines() if x.strip()]
    return {r["cell_key"]: [json.loads(x)["pred"] for x in (out / "cells" / r["cell_id"] / "predictions.jsonl").read_text().splitlines()]
            for r in recs}


def cell_seconds(out: Path) -> float:
    recs = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines() if x.strip()]
    from datetime import datetime

    return sum((datetime.fromisoformat(r["finished_at"]) - datetime.fromisoformat(r["started_at"])).total_seconds() for r in recs)


def hours(text: str) -> float:
    h = re.search(r"(\d+)\s*h", text)
    m = re.search(r"(\d+)\s*min", text)
    return (int(h.group(1)) if h else 0) + (int(m.group(1)) if m else 0) / 60


def on_paper(gpus: int = 8) -> None:
    import yaml

    root = Path(__file__).resolve().parents[1]
    survey = yaml.safe_load((root / "suites" / "survey.yaml").read_text())
    jobs, missing = [], set()
    for m in survey["methods"]:
        name = m["name"] if isinstance(m, dict) else m
        for _ in range(len(survey["datasets"]) * len(survey.get("seeds", [0]))):
            if name in COST_SST2:
                jobs.append((hours(COST_SST2[name][1]), name))
            else:
                missing.add(name)
    jobs.sort(reverse=True)
    load = [(0.0, g) for g in range(gpus)]
    for h, _ in jobs:  # longest first, onto the least-loaded GPU
        t, g = heapq.heappop(load)
        heapq.heappush(load, (t + h, g))
    serial, span = sum(h for h, _ in jobs), max(t for t, _ in load)
    longest = jobs[0] if jobs else (0.0, "-")
    print(f"\non paper — survey.yaml, {len(jobs)} cells with a published time ({', '.join(sorted(missing))} left out):")
    print(f"  one GPU, one cell after another: {serial:.1f} h;  {gpus} GPUs: {span:.1f} h  (ratio {serial / span:.2f}; "
          f"the floor is the longest cell, {longest[1]} {longest[0]:.1f} h, and serial/{gpus} = {serial / gpus:.1f} h)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--test", type=int, default=64, help="test examples per cell")
    ap.add_argument("--out", default="runs/perf_ray")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for sub in ("local", "ray", "ray_fresh"):
        if (out / sub).exists():
            sys.exit(f"{out / sub} exists: give a fresh --out (a resumed run would measure nothing)")
    suite = out / "makespan.yaml"
    suite.write_text(SUITE.format(test=args.test))
    local = run(suite, out / "local")
    ray = run(suite, out / "ray", "--executor", "ray")
    fresh = run(suite, out / "ray_fresh", "--executor", "ray", env={"BOXBENCH_FRESH_CELLS": "1"})
    same = predictions(out / "local") == predictions(out / "ray") == predictions(out / "ray_fresh")
    print(f"8-cell CPU suite ({args.test} test examples per cell), measured side by side in this run:")
    print(f"  local executor: {local:.1f} s  (cells' own wall times sum to {cell_seconds(out / 'local'):.1f} s)")
    print(f"  ray executor:   {ray:.1f} s  (cells' own wall times sum to {cell_seconds(out / 'ray'):.1f} s; Ray's start included)")
    print(f"  ray, fresh cells: {fresh:.1f} s  (cells' own wall times sum to {cell_seconds(out / 'ray_fresh'):.1f} s)")
    print(f"  speed-up local/ray: {local / ray:.2f}x; ray fresh/forked: {fresh / ray:.2f}x; predictions identical: {same}")
    on_paper()


if __name__ == "__main__":
    main()
