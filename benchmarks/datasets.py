"""Classification tasks (SST-2, AG News) loaded through the ``datasets`` library, plus a registry.

Where the Hugging Face hub is reachable the hub names are used; otherwise (or with
``BOXBENCH_DATA=DIR`` / ``HF_HUB_OFFLINE=1``) the local copies in ``DIR`` or ``../shared/data``.
Each result records which source it used.
"""

from __future__ import annotations

import html
import os
import random
import re
import socket
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, ClassVar

from boxbench.registry import Registry, UserError


@dataclass(frozen=True)
class Example:
    text: str
    label: int


# Default templates and label words were chosen on 300 examples drawn from each TRAIN split (never
# the test set), zero-shot with SmolLM2-135M-Instruct at grey access: SST-2 "Review: ...\nThe
# sentiment of this review is" 0.793 vs 0.767 for "...Sentiment (positive or negative):"; AG News
# "...\nThis article is about" + politics/sports/business/technology 0.823 vs 0.317 for
# "Article: ...\nTopic (World, Sports, Business or Technology):" + the class names.


@dataclass(frozen=True)
class Task:
    """A classification task: label names, the verbalizer, and the default prompt template.

    ``template`` has one ``{text}`` slot and ends right where the label word follows; label words
    carry their leading space (" positive"), so ``template.format(text=x) + label_words[y]`` is a
    complete demonstration.
    """

    name: str
    label_names: tuple[str, ...]
    label_words: tuple[str, ...]
    template: str
    instruction: str = ""
    # Said before every prompt of the generate (black) protocol only, so that a text-only model knows
    # the answer format; the logprob protocol reads the label words and needs no such line.
    answer_hint: str = ""
    hub: str = ""

    OVERRIDES: ClassVar[tuple[str, ...]] = ("template", "label_words", "instruction", "answer_hint")

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def with_overrides(self, **overrides: Any) -> "Task":
        """A copy with the suite's overrides (``OVERRIDES``: verbalizer, template, instruction, hint)."""
        from dataclasses import replace

        given = {k: v for k, v in overrides.items() if k in self.OVERRIDES and v is not None}
        if "label_words" in given:
            given["label_words"] = tuple(given["label_words"])
        new = replace(self, **given)
        if len(new.label_words) != new.num_labels:
            raise UserError(f"label_words: {self.name} has {self.num_labels} labels, got {len(new.label_words)} words")
        if "{text}" not in new.template:
            raise UserError("template: must contain the {text} slot")
        return new


@dataclass
class Splits:
    """What a cell works with: a training pool, a dev set (both from train) and the test set."""

    task: Task
    train: list[Example]
    dev: list[Example]
    test: list[Example]
    source: str
    sizes: dict[str, int] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # data file -> sha256 (local source)


@dataclass(frozen=True)
class DatasetDef:
    """How to load one dataset: its task, hub loader, local loader."""

    name: str
    task: Task
    load_hub: Callable[[], tuple[list[Example], list[Example]]]
    load_local: Callable[[Path], tuple[list[Example], list[Example]]]
    local_files: tuple[str, ...]


DATASETS: Registry[DatasetDef] = Registry("dataset")
register_dataset = DATASETS.register


# ---------------------------------------------------------------- data location / hub probe
def local_data_dir() -> Path | None:
    """``$BOXBENCH_DATA``, else the first ``shared/data`` beside the checkout or the cwd."""
    env = os.environ.get("BOXBENCH_DATA")
    if env:
        return Path(env)
    root = Path(__file__).resolve().parents[1]
    for cand in (root.parent / "shared" / "data", Path.cwd().parent / "shared" / "data", Path.cwd() / "shared" / "data"):
        if cand.is_dir():
            return cand
    return None


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


def _rows(ds: Any, text: Callable[[dict[str, Any]], str], label: Callable[[dict[str, Any]], int],
          where: str = "") -> list[Example]:
    """Examples from a ``datasets.Dataset``; a row that does not convert is a UserError naming the
    file and the row. Read by columns: iterating the Dataset row by row formats each row apart
    (loading SST-2's 68k rows took 1.94 s that way, 0.40 s by columns), once per cell."""
    cols = ds.to_dict()
    out = []
    for i, values in enumerate(zip(*cols.values())):
        r = dict(zip(cols, values))
        try:
            out.append(Example(text(r), int(label(r))))
        except (KeyError, TypeError, ValueError) as e:
            raise UserError(f"data file {where or 'rows'}: row {i + 2} (header = line 1) is malformed ({type(e).__name__}: {e}); "
                            f"fix the file or set BOXBENCH_DATA to an intact copy") from None
    return out


def _read_table(path: Path, **kw: Any) -> Any:
    """One local CSV/TSV file through ``datasets``; a clear one-line error naming the file when it
    is missing or does not parse (the library's own message names neither)."""
    import datasets

    if not path.is_file():
        raise UserError(f"data file {path} is missing; set BOXBENCH_DATA to a folder that holds it")
    try:
        return datasets.load_dataset("csv", data_files={"rows": str(path)}, **kw)["rows"]
    except Exception as e:  # DatasetGenerationError wraps the parser's error: report the innermost cause
        cause: BaseException = e
        while cause.__cause__ is not None or cause.__context__ is not None:
            cause = cause.__cause__ or cause.__context__  # type: ignore[assignment]
        msg = " ".join(str(cause).split())[:200]
        raise UserError(f"data file {path} does not parse ({type(cause).__name__}: {msg}); "
                        f"fix the file or set BOXBENCH_DATA to an intact copy") from None


# ---------------------------------------------------------------- SST-2
SST2 = Task(
    name="sst2",
    label_names=("negative", "positive"),
    label_words=(" negative", " positive"),
    template="Review: {text}\nThe sentiment of this review is",
    answer_hint="Is the sentiment of this review positive or negative? Answer with one word.",
    hub="glue/sst2",
)


def _sst2_hub() -> tuple[list[Example], list[Example]]:
    import datasets

    d = datasets.load_dataset("glue", "sst2")
    f = lambda r: r["sentence"].strip()  # noqa: E731
    return _rows(d["train"], f, lambda r: r["label"]), _rows(d["validation"], f, lambda r: r["label"])


def _sst2_local(root: Path) -> tuple[list[Example], list[Example]]:
    f = lambda r: str(r["sentence"]).strip()  # noqa: E731
    out = []
    for name in ("train.tsv", "validation.tsv"):
        path = root / "sst2" / name
        rows = _read_table(path, delimiter="\t", quoting=3)  # quoting=3: QUOTE_NONE, as GLUE
        out.append(_rows(rows, f, lambda r: r["label"], str(path)))
    return out[0], out[1]


# ---------------------------------------------------------------- AG News
AGNEWS = Task(
    name="agnews",
    label_names=("World", "Sports", "Business", "Sci/Tech"),
    label_words=(" politics", " sports", " business", " technology"),
    template="{text}\nThis article is about",
    answer_hint="Is this article about politics, sports, business or technology? Answer with one word.",
    hub="fancyzhx/ag_news",
)

_ENTITY = re.compile(r"#(\d+);")


def clean_agnews(text: str) -> str:
    """Undo the original AG News escaping: ``\\`` for a newline, ``#39;``-style entities, ``&lt;``."""
    text = _ENTITY.sub(lambda m: chr(int(m.group(1))), text.replace("\\", " "))
    return re.sub(r"\s+", " ", html.unescape(text)).strip()


def agnews_text(title: str, description: str) -> str:
    """The one canonical AG News text, whatever the source: the hub's ``text`` field is the title and
    the description joined by one space, so the local files (title, description) are joined the
    same way; both then go through ``clean_agnews``."""
    title, description = str(title or "").strip(), str(description or "").strip()
    return clean_agnews(f"{title} {description}" if title else description)


def _agnews_hub() -> tuple[list[Example], list[Example]]:
    import datasets

    d = datasets.load_dataset("fancyzhx/ag_news")
    f = lambda r: agnews_text("", r["text"])  # noqa: E731  (already "title description")
    return _rows(d["train"], f, lambda r: r["label"]), _rows(d["test"], f, lambda r: r["label"])


def _agnews_local(root: Path) -> tuple[list[Example], list[Example]]:
    f = lambda r: agnews_text(r["title"], r["description"])  # noqa: E731
    out = []
    for name in ("train.csv", "test.csv"):
        path = root / "agnews" / name
        out.append(_rows(_read_table(path, keep_default_na=False), f, lambda r: r["label"], str(path)))
    return out[0], out[1]


register_dataset("sst2")(DatasetDef("sst2", SST2, _sst2_hub, _sst2_local, ("sst2/train.tsv", "sst2/validation.tsv")))
register_dataset("agnews")(DatasetDef("agnews", AGNEWS, _agnews_hub, _agnews_local, ("agnews/train.csv", "agnews/test.csv")))


# ---------------------------------------------------------------- loading + splitting
def check_dataset(name: str, where: str = "datasets") -> DatasetDef:
    """The dataset's definition; a UserError if it is unknown or has neither hub nor local files."""
    if name not in DATASETS:
        raise UserError(f"{where}: unknown dataset {name!r}; known datasets: {', '.join(DATASETS.names())}")
    d = DATASETS.get(name)
    if hub_reachable():
        return d
    root = local_data_dir()
    if root is None:
        raise UserError(f"{where}: {name}: the hub is unreachable and no local data was found; set BOXBENCH_DATA to a folder with {', '.join(d.local_files)}")
    for f in d.local_files:
        if not (root / f).is_file():
            raise UserError(f"{where}: {name}: missing data file {root / f}; set BOXBENCH_DATA to a folder that holds {f}")
    return d


@lru_cache(maxsize=32)
def _file_sha256(path: str, size: int, mtime: float) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def data_files(name: str) -> dict[str, str]:
    """The data a dataset loads from: ``{relative file: sha256}`` for local files, ``{"hub": NAME}``
    where the hub is used. Recorded with every cell and part of its key (``data_identity``)."""
    d = check_dataset(name)
    if hub_reachable():
        return {"hub": d.task.hub}
    root = local_data_dir()
    assert root is not None
    out = {}
    for f in d.local_files:
        st = (root / f).stat()
        out[f] = _file_sha256(str(root / f), st.st_size, st.st_mtime)
    return out


def data_identity(name: str) -> str:
    """A short fingerprint of ``data_files``: cells on different data never share a key."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(data_files(name), sort_keys=True).encode()).hexdigest()[:16]


@lru_cache(maxsize=8)
def load_raw(name: str) -> tuple[tuple[Example, ...], tuple[Example, ...], str]:
    """(train, test, source) of a dataset, from the hub when reachable, else the local files."""
    d = check_dataset(name)
    if hub_reachable():
        try:
            train, test = d.load_hub()
            return tuple(train), tuple(test), f"hub:{d.task.hub}"
        except Exception:  # hub reachable but the dataset is not: fall back to local files
            if local_data_dir() is None:
                raise
    root = local_data_dir()
    assert root is not None
    train, test = d.load_local(root)
    return tuple(train), tuple(test), f"local:{root}"


def load_splits(name: str, train: int | None = None, dev: int | None = None, test: int | None = None,
                data_seed: int = 0, evaluate_on: str = "test") -> Splits:
    """Fixed, seed-independent splits so that every method and seed sees the same data.

    dev (first ``dev`` rows) and the train pool (the next ``train`` rows) come from one shuffle of
    the train split; the test subset is the first ``test`` rows of a shuffle of the test split
    (``None`` = all of it). ``evaluate_on="holdout"``: the evaluation rows are instead the ``test``
    rows of that train shuffle after dev and train — rows no method sees, for choosing budgets
    without looking at test (``sizes["evaluated_on"]`` says which).
    """
    d = DATASETS.get(name)
    tr, te, source = load_raw(name)
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
    sizes = {"train": len(train_rows), "dev": len(dev_rows), "test": len(test_rows), "train_total": len(tr), "test_total": len(te)}
    if evaluate_on != "test":
        sizes["evaluated_on"] = evaluate_on
    return Splits(d.task, train_rows, dev_rows, test_rows, source, sizes, data_files(name))
