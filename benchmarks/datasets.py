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


def _rows(ds: Any, text: Callable[[dict[str, Any]], str], label: Callable[[dict[str, Any]], int]) -> list[Example]:
    return [Example(text(r), label(r)) for r in ds]


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
    return _rows(d["train"], f, lambda r: int(r["label"])), _rows(d["validation"], f, lambda r: int(r["label"]))


def _sst2_local(root: Path) -> tuple[list[Example], list[Example]]:
    import datasets

    files = {"train": str(root / "sst2" / "train.tsv"), "test": str(root / "sst2" / "validation.tsv")}
    d = datasets.load_dataset("csv", data_files=files, delimiter="\t", quoting=3)  # quoting=3: QUOTE_NONE, as GLUE
    f = lambda r: str(r["sentence"]).strip()  # noqa: E731
    return _rows(d["train"], f, lambda r: int(r["label"])), _rows(d["test"], f, lambda r: int(r["label"]))


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


def _agnews_hub() -> tuple[list[Example], list[Example]]:
    import datasets

    d = datasets.load_dataset("fancyzhx/ag_news")
    f = lambda r: clean_agnews(r["text"])  # noqa: E731
    return _rows(d["train"], f, lambda r: int(r["label"])), _rows(d["test"], f, lambda r: int(r["label"]))


def _agnews_local(root: Path) -> tuple[list[Example], list[Example]]:
    import datasets

    files = {"train": str(root / "agnews" / "train.csv"), "test": str(root / "agnews" / "test.csv")}
    d = datasets.load_dataset("csv", data_files=files, keep_default_na=False)
    f = lambda r: clean_agnews(f"{r['title']}. {r['description']}" if str(r["title"]).strip() else str(r["description"]))  # noqa: E731
    return _rows(d["train"], f, lambda r: int(r["label"])), _rows(d["test"], f, lambda r: int(r["label"]))


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
                data_seed: int = 0) -> Splits:
    """Fixed, seed-independent splits so that every method and seed sees the same data.

    dev (first ``dev`` rows) and the train pool (the next ``train`` rows) come from one shuffle of
    the train split; the test subset is the first ``test`` rows of a shuffle of the test split
    (``None`` = all of it).
    """
    d = DATASETS.get(name)
    tr, te, source = load_raw(name)
    pool = list(tr)
    random.Random(data_seed).shuffle(pool)
    n_dev = dev or 0
    dev_rows = pool[:n_dev]
    train_rows = pool[n_dev : n_dev + train] if train is not None else pool[n_dev:]
    test_rows = list(te)
    if test is not None and test < len(test_rows):
        random.Random(data_seed + 1).shuffle(test_rows)
        test_rows = test_rows[:test]
    sizes = {"train": len(train_rows), "dev": len(dev_rows), "test": len(test_rows), "train_total": len(tr), "test_total": len(te)}
    return Splits(d.task, train_rows, dev_rows, test_rows, source, sizes)
