"""Classification tasks loaded through the ``datasets`` library, plus a registry.

Every task is a task file (``benchmarks/taskfile.py``): the built-ins SST-2 and AG News are
``benchmarks/tasks/*.yaml``; a user's task is a YAML file or the same mapping inline in a suite.
Where the Hugging Face hub is reachable a task's hub name is used; otherwise (or with
``BOXBENCH_DATA=DIR`` / ``HF_HUB_OFFLINE=1``) its local files (``data:`` = under ``DIR`` or
``../shared/data``). Each result records which source it used. A plugin may still register a
``DatasetDef`` written in Python.
"""

from __future__ import annotations

import os
import random
import socket
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from boxbench.benchmarks.taskfile import TASKS_DIR, TEXT_CLEANERS, TaskFile, load_task_file, local_data_dir, normalised, overlap
from boxbench.core.errors import UserError
from boxbench.core.registry import Registry
from boxbench.core.task import Example, Task


@dataclass
class Splits:
    """What a cell works with: a training pool, a dev set (both from train) and the test set."""

    task: Task
    train: list[Example]
    dev: list[Example]
    test: list[Example]
    source: str
    sizes: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # data file -> sha256 (local source)


@dataclass(frozen=True, eq=False)
class DatasetDef:
    """How to load one dataset: its task, hub loader, local loader (a plugin's; task files make
    theirs with ``from_task_file``). ``definition``: a user task's mapping (its identity covers it);
    ``file_paths``: where its local files are, by the names the record keeps (default: each of
    ``local_files`` under the local data folder)."""

    name: str
    task: Task
    load_hub: Callable[[], tuple[list[Example], list[Example]]] | None
    load_local: Callable[[Path], tuple[list[Example], list[Example]]]
    local_files: tuple[str, ...]
    provenance: dict[str, Any] = field(default_factory=dict)
    definition: dict[str, Any] | None = None
    dedup: bool = False
    file_paths: Callable[[], dict[str, Path]] | None = None

    def files(self) -> dict[str, Path]:
        """Its local files (a missing one is a UserError naming it)."""
        if self.file_paths is not None:
            return self.file_paths()
        root = local_data_dir()
        if root is None:
            raise UserError(f"{self.name}: the hub is unreachable and no local data was found; set BOXBENCH_DATA to a folder "
                            f"with {', '.join(self.local_files)}")
        for f in self.local_files:
            if not (root / f).is_file():
                raise UserError(f"{self.name}: missing data file {root / f}; set BOXBENCH_DATA to a folder that holds {f}")
        return {f: root / f for f in self.local_files}


def from_task_file(tf: Any, user: bool = True) -> DatasetDef:
    """A ``taskfile.TaskFile`` as a dataset definition; ``user``: its identity covers the definition
    (the built-ins keep the keys they had before task files)."""
    return DatasetDef(tf.name, tf.task(), tf.load_hub if "hub" in tf.spec else None, tf.load_local, (),
                      provenance=dict(tf.spec.get("provenance") or {}), definition=tf.spec if user else None,
                      dedup=bool(tf.spec.get("dedup", False)), file_paths=lambda: tf.file_keys())


DATASETS: Registry[DatasetDef] = Registry("dataset")
register_dataset = DATASETS.register


# ---------------------------------------------------------------- hub probe
@lru_cache(maxsize=1)
def hub_reachable(timeout: float = 3.0) -> bool:
    """True when the hub answers; honours HF_HUB_OFFLINE / HF_DATASETS_OFFLINE / BOXBENCH_DATA."""
    if os.environ.get("BOXBENCH_DATA") or os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1":
        return False
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


def clean_agnews(text: str) -> str:
    """Undo the original AG News escaping: ``\\`` for a newline, ``#39;``-style entities, ``&lt;``
    (the agnews task file's cleaners, in its order)."""

    for name in ("agnews_escapes", "html_unescape", "collapse_spaces"):
        text = TEXT_CLEANERS.get(name)(text)
    return text


def agnews_text(title: str, description: str) -> str:
    """The one canonical AG News text, whatever the source: the title and the description joined by
    one space (the hub's ``text`` field is already so), then ``clean_agnews``."""
    title, description = str(title or "").strip(), str(description or "").strip()
    return clean_agnews(f"{title} {description}" if title else description)


def _register_builtin_tasks() -> None:

    for path in sorted(TASKS_DIR.glob("*.yaml")):
        tf = load_task_file(path, "built-in task")
        register_dataset(tf.name)(from_task_file(tf, user=False))


_register_builtin_tasks()
SST2 = DATASETS.get("sst2").task
AGNEWS = DATASETS.get("agnews").task


# ---------------------------------------------------------------- loading + splitting
@lru_cache(maxsize=16)
def _from_definition(text: str, base: str) -> DatasetDef:
    import json

    spec = json.loads(text)
    return from_task_file(TaskFile(spec, Path(base) if base else None, f"task {spec.get('name')}"))


def resolve(dataset: Any, where: str = "datasets") -> DatasetDef:
    """The definition of a dataset given by name, by a suite's dataset mapping (a user task carries
    its ``task`` mapping and ``base`` folder) or as a ``DatasetDef``."""
    import json

    if isinstance(dataset, DatasetDef):
        return dataset
    if isinstance(dataset, dict) and "task" in dataset:
        return _from_definition(json.dumps(dataset["task"], sort_keys=True), str(dataset.get("base") or ""))
    name = dataset["name"] if isinstance(dataset, dict) else dataset
    if name not in DATASETS:
        raise UserError(f"{where}: unknown dataset {name!r}; known datasets: {', '.join(DATASETS.names())}, "
                        f"or give a task file (name.yaml; see benchmarks/taskfile.py)")
    return DATASETS.get(name)


def check_dataset(dataset: Any, where: str = "datasets") -> DatasetDef:
    """The dataset's definition; a UserError if it is unknown or has neither hub nor local files."""
    d = resolve(dataset, where)
    if hub_reachable() and d.load_hub is not None:
        return d
    try:
        d.files()
    except UserError as e:
        raise UserError(f"{where}: {e}") from None
    return d


@lru_cache(maxsize=32)
def _file_sha256(path: str, size: int, mtime: float) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def data_files(dataset: Any) -> dict[str, str]:
    """The data a dataset loads from: ``{file: sha256}`` for local files, ``{"hub": NAME}`` where the
    hub is used. Recorded with every cell and part of its key (``data_identity``)."""
    d = check_dataset(dataset)
    if hub_reachable() and d.load_hub is not None:
        return {"hub": d.task.hub}
    out = {}
    for name, path in d.files().items():
        st = path.stat()
        out[name] = _file_sha256(str(path), st.st_size, st.st_mtime)
    return out


def data_identity(dataset: Any) -> str:
    """A short fingerprint of ``data_files`` (and of a user task's definition): cells on different
    data, or on a task defined differently, never share a key."""
    import hashlib
    import json

    d = resolve(dataset)
    ident: Any = data_files(d) if d.definition is None else {"files": data_files(d), "task": d.definition}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def load_raw(dataset: Any) -> tuple[tuple[Example, ...], tuple[Example, ...], str]:
    """(train, test, source) of a dataset, from the hub when reachable, else the local files; a task
    with ``dedup`` drops the training rows whose text is also a test text."""
    return _load_raw(check_dataset(dataset))


@lru_cache(maxsize=8)
def _load_raw(d: DatasetDef) -> tuple[tuple[Example, ...], tuple[Example, ...], str]:

    train = test = None
    if hub_reachable() and d.load_hub is not None:
        try:
            train, test = d.load_hub()
            source = f"hub:{d.task.hub}"
        except Exception:  # hub reachable but the dataset is not: fall back to local files
            if local_data_dir() is None and d.file_paths is None:
                raise
    if train is None or test is None:
        root = local_data_dir()
        train, test = d.load_local(root)  # type: ignore[arg-type]
        source = f"local:{root}" if d.definition is None else f"local:{', '.join(str(p) for p in d.files().values())}"
    if d.dedup:
        seen = {normalised(e.text) for e in test}
        train = [e for e in train if normalised(e.text) not in seen]
    return tuple(train), tuple(test), source


@lru_cache(maxsize=8)
def _train_texts(d: DatasetDef) -> frozenset[str]:
    """A dataset's training texts as duplicates are found (once per process, not per cell)."""

    return frozenset(normalised(e.text) for e in load_raw(d)[0])


def load_splits(dataset: Any, train: int | None = None, dev: int | None = None, test: int | None = None,
                data_seed: int = 0, evaluate_on: str = "test") -> Splits:
    """Fixed, seed-independent splits so that every method and seed sees the same data.

    dev (first ``dev`` rows) and the train pool (the next ``train`` rows) come from one shuffle of
    the train split; the test subset is the first ``test`` rows of a shuffle of the test split
    (``None`` = all of it). ``evaluate_on="holdout"``: the evaluation rows are instead the ``test``
    rows of that train shuffle after dev and train — rows no method sees, for choosing budgets
    without looking at test (``sizes["evaluated_on"]`` says which). ``sizes["test_in_train"]``:
    test texts that are also training texts (``taskfile.overlap``; 0 after a task's ``dedup``).
    """

    d = resolve(dataset)
    tr, te, source = load_raw(d)
    name = d.name
    pool = list(tr)
    random.Random(data_seed).shuffle(pool)
    n_dev = dev or 0
    dev_rows = pool[:n_dev]
    train_rows = pool[n_dev : n_dev + train] if train is not None else pool[n_dev:]
    if evaluate_on == "holdout":
        if train is None or test is None:
            raise UserError("settings.evaluate_on: holdout needs limits.train and limits.test (the held-out rows follow "
                            "dev and train in the train split); set both")
        test_rows = pool[n_dev + train : n_dev + train + test]
        if len(test_rows) < test:
            raise UserError(f"settings.evaluate_on: holdout: {name}'s train split has {len(pool)} rows, fewer than "
                            f"limits dev + train + test = {n_dev + train + test}; lower limits.train or limits.test")
    else:
        test_rows = list(te)
        if test is not None and test < len(test_rows):
            random.Random(data_seed + 1).shuffle(test_rows)
            test_rows = test_rows[:test]
    sizes: dict[str, Any] = {"train": len(train_rows), "dev": len(dev_rows), "test": len(test_rows), "train_total": len(tr),
                             "test_total": len(te), "test_in_train": overlap(_train_texts(d), test_rows)}
    if evaluate_on != "test":
        sizes["evaluated_on"] = evaluate_on
    return Splits(d.task, train_rows, dev_rows, test_rows, source, sizes, data_files(d))
