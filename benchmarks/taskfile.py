"""Classification tasks as data: a task file (YAML), or the same mapping inline in a suite's
``datasets:``, defines a task entirely — where its rows come from, its text and label, the label
words, the prompt, its provenance. SST-2 and AG News are such files (``benchmarks/tasks/``).

    name: tickets                       # how suites and reports call it
    description: Support tickets by team
    provenance: {source: "...", licence: "...", citation: "..."}
    files: {train: data/train.csv, test: data/test.csv}   # relative to the task file (data:… = under BOXBENCH_DATA)
    # or one file split by seed:  file: data/all.csv   split: {test: 0.2, seed: 0}   (a fraction or a count)
    # a folder reads every file of the format in it, in name order
    format: csv                         # csv | tsv | json | jsonl | parquet (default: from the extension)
    read: {quoting: none, keep_default_na: false}        # optional reader options (csv/tsv)
    hub: {path: glue, name: sst2, splits: {train: train, test: validation}, text: "{sentence}"}  # optional, used first
    text: "{subject} {body}"            # a column, or a template over columns
    clean: [strip]                      # text cleaners in order (TEXT_CLEANERS): strip, collapse_spaces, html_unescape, agnews_escapes
    label: team                         # the label column (ints or strings)
    labels:                             # each value in the data, in class order: its name and label word
      - {value: billing, word: " billing"}
      - {value: tech, name: technical, word: " technical"}
    # or the short form, value: word —  labels: {0: " negative", 1: " positive"}
    template: "Ticket: {text}\\nThis ticket is for"
    instruction: ""                     # optional, said before every prompt
    answer_hint: "Which team handles this ticket: billing or technical? Answer with one word."
    dedup: false                        # true: drop train rows whose text is also in test

Everything is checked before any work, one line naming the field and the fix.
"""

from __future__ import annotations

import html
import os
import random
import re
from pathlib import Path
from typing import Any, Callable

from boxbench.core.errors import UserError
from boxbench.core.registry import Registry
from boxbench.core.task import Example, Task

TASK_KEYS = {"name", "description", "provenance", "files", "file", "split", "format", "read", "hub", "text", "clean",
             "label", "labels", "template", "instruction", "answer_hint", "dedup"}
FORMATS = {".csv": "csv", ".tsv": "tsv", ".json": "json", ".jsonl": "jsonl", ".parquet": "parquet"}
READ_OPTIONS = {"quoting": ("none", "minimal"), "keep_default_na": (True, False), "delimiter": None}
TASKS_DIR = Path(__file__).resolve().parent / "tasks"

TEXT_CLEANERS: Registry[Callable[[str], str]] = Registry("text cleaner")
_ENTITY = re.compile(r"#(\d+);")
TEXT_CLEANERS.register("strip")(str.strip)
TEXT_CLEANERS.register("collapse_spaces")(lambda t: re.sub(r"\s+", " ", t).strip())
TEXT_CLEANERS.register("html_unescape")(html.unescape)
# the original AG News escaping: "\" for a newline, "#39;"-style numeric entities
TEXT_CLEANERS.register("agnews_escapes")(lambda t: _ENTITY.sub(lambda m: chr(int(m.group(1))), t.replace("\\", " ")))


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


def _fail(where: str, msg: str) -> UserError:
    return UserError(f"{where}: {msg}")


def columns_of(template: str) -> list[str]:
    """The columns a text template names (``"{title} {description}"`` → title, description)."""
    return re.findall(r"{([^{}]+)}", template)


def _text_spec(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(where, "give a column name or a template over columns, e.g. text: \"{title} {description}\"")
    return value if "{" in value else "{" + value + "}"


def parse_labels(value: Any, where: str) -> list[dict[str, Any]]:
    """``labels`` in either form, as [{value, name, word}] in class order; checked."""
    if isinstance(value, dict):
        value = [{"value": k, "word": w} for k, w in value.items()]
    if not isinstance(value, list) or len(value) < 2:
        raise _fail(where, "list at least two labels, e.g. labels: {0: \" negative\", 1: \" positive\"}")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, dict) or "value" not in item or "word" not in item:
            raise _fail(f"{where}[{i}]", "give a mapping with value and word (name optional), e.g. {value: 0, word: \" negative\"}")
        unknown = sorted(set(item) - {"value", "name", "word"})
        if unknown:
            raise _fail(f"{where}[{i}]", f"unknown key(s) {', '.join(unknown)}; use value, name, word")
        word = item["word"]
        if not isinstance(word, str) or not word.strip():
            raise _fail(f"{where}[{i}].word", f"{word!r} is empty; a label word must have a visible character (e.g. \" positive\")")
        default = item["value"] if isinstance(item["value"], str) else word.strip()  # a string label names itself
        out.append({"value": item["value"], "name": str(item.get("name") or default), "word": word})
    seen: dict[tuple[str, str], int] = {}
    for i, lab in enumerate(out):
        for key in ("word", "value"):
            norm = lab[key].strip().lower() if key == "word" else str(lab[key])
            if (key, norm) in seen:
                raise _fail(f"{where}[{i}].{key}", f"{lab[key]!r} is also label {seen[(key, norm)]}'s; give every label its own {key}")
            seen[(key, norm)] = i
    return out


def check_task_mapping(spec: Any, where: str) -> dict[str, Any]:
    """Schema check of a task definition (no file read): the mapping, as written."""
    if not isinstance(spec, dict):
        raise _fail(where, "a task is a mapping (see benchmarks/taskfile.py)")
    unknown = sorted(set(spec) - TASK_KEYS)
    if unknown:
        raise _fail(where, f"unknown key(s) {', '.join(unknown)}; a task file has {', '.join(sorted(TASK_KEYS))}")
    for key in ("name", "text", "label", "labels", "template"):
        if key not in spec:
            raise _fail(f"{where}.{key}", "missing; a task needs name, text, label, labels and template (and files, file or hub)")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", str(spec["name"])):
        raise _fail(f"{where}.name", f"{spec['name']!r}: use letters, digits, '_', '-' or '.'")
    if not any(k in spec for k in ("files", "file", "hub")):
        raise _fail(where, "say where the rows come from: files: {train: ..., test: ...}, file: ... with split:, or hub:")
    if "files" in spec and "file" in spec:
        raise _fail(f"{where}.file", "give files (one per split) or file (split by seed), not both")
    if "files" in spec:
        files = spec["files"]
        if not isinstance(files, dict) or set(files) != {"train", "test"}:
            raise _fail(f"{where}.files", "give exactly train and test, e.g. files: {train: train.csv, test: test.csv}")
    if "file" in spec:
        split = spec.get("split")
        if not isinstance(split, dict) or "test" not in split or set(split) - {"test", "seed"}:
            raise _fail(f"{where}.split", "one file needs split: {test: 0.2, seed: 0} (a fraction or a count of rows for test)")
        t = split["test"]
        if isinstance(t, bool) or not isinstance(t, (int, float)) or t <= 0 or (isinstance(t, float) and t >= 1):
            raise _fail(f"{where}.split.test", f"{t!r}: give a fraction in (0, 1) or a whole number of rows")
    if "format" in spec and spec["format"] not in FORMATS.values():
        raise _fail(f"{where}.format", f"{spec['format']!r} is not one of {', '.join(sorted(set(FORMATS.values())))}")
    for key, val in (spec.get("read") or {}).items():
        if key not in READ_OPTIONS:
            raise _fail(f"{where}.read.{key}", f"unknown reader option; use {', '.join(READ_OPTIONS)}")
        if READ_OPTIONS[key] is not None and val not in READ_OPTIONS[key]:  # type: ignore[operator]
            raise _fail(f"{where}.read.{key}", f"{val!r} is not one of {READ_OPTIONS[key]}")
    _text_spec(spec["text"], f"{where}.text")
    for c in spec.get("clean") or []:
        if c not in TEXT_CLEANERS:
            raise _fail(f"{where}.clean", f"unknown cleaner {c!r}; known: {', '.join(TEXT_CLEANERS.names())}")
    if "hub" in spec:
        hub = spec["hub"]
        if not isinstance(hub, dict) or "path" not in hub or set(hub) - {"path", "name", "splits", "text", "label"}:
            raise _fail(f"{where}.hub", "give path (and optionally name, splits: {train: ..., test: ...}, text, label)")
    labels = parse_labels(spec["labels"], f"{where}.labels")
    template = spec["template"]
    if not isinstance(template, str) or "{text}" not in template:
        raise _fail(f"{where}.template", "must contain the {text} slot, e.g. \"Review: {text}\\nThe sentiment is\"")
    if not isinstance(spec.get("dedup", False), bool):
        raise _fail(f"{where}.dedup", "true or false")
    prov = spec.get("provenance", {})
    if not isinstance(prov, dict) or set(prov) - {"source", "licence", "license", "citation", "url"}:
        raise _fail(f"{where}.provenance", "a mapping of source, licence, citation, url")
    del labels
    return spec


def resolve_path(value: str, base: Path | None, where: str) -> Path:
    """A task's file: ``data:REL`` under the local data folder, else relative to the task file's folder."""

    if value.startswith("data:"):
        root = local_data_dir()
        if root is None:
            raise _fail(where, f"{value}: no local data folder; set BOXBENCH_DATA")
        return root / value[5:]
    p = Path(value).expanduser()
    return p if p.is_absolute() or base is None else base / p


def _files_of(path: Path, fmt: str | None, where: str) -> tuple[list[Path], str]:
    """The files a path names (a folder: every file of the format in it) and their format."""
    if path.is_dir():
        found = sorted(f for f in path.iterdir() if f.is_file() and (FORMATS.get(f.suffix) == fmt if fmt else f.suffix in FORMATS))
        if not found:
            raise _fail(where, f"folder {path} holds no {fmt or 'csv/tsv/json/jsonl/parquet'} file")
        fmts = {FORMATS[f.suffix] for f in found}
        if not fmt and len(fmts) > 1:
            raise _fail(where, f"folder {path} mixes formats ({', '.join(sorted(fmts))}); set format:")
        return found, fmt or fmts.pop()
    if not path.is_file():
        raise _fail(where, f"file {path} is missing; fix the path (relative to the task file) or set BOXBENCH_DATA")
    got = fmt or FORMATS.get(path.suffix)
    if got is None:
        raise _fail(where, f"cannot tell the format of {path.name}; set format: csv, tsv, json, jsonl or parquet")
    return [path], got


def read_rows(paths: list[Path], fmt: str, read: dict[str, Any], where: str) -> Any:
    """The rows of ``paths`` as a ``datasets.Dataset`` (None: no rows); a one-line error naming the
    file when it does not parse."""
    import datasets

    kw: dict[str, Any] = {}
    builder = {"tsv": "csv", "jsonl": "json"}.get(fmt, fmt)
    if fmt in ("csv", "tsv"):
        kw["delimiter"] = read.get("delimiter", "\t" if fmt == "tsv" else ",")
        if read.get("quoting") == "none":
            kw["quoting"] = 3  # QUOTE_NONE, as GLUE's TSVs
        if "keep_default_na" in read:
            kw["keep_default_na"] = read["keep_default_na"]
    try:
        return datasets.load_dataset(builder, data_files={"rows": [str(p) for p in paths]}, **kw)["rows"]
    except Exception as e:  # DatasetGenerationError wraps the parser's error: report the innermost cause
        cause: BaseException = e
        while cause.__cause__ is not None or cause.__context__ is not None:
            cause = cause.__cause__ or cause.__context__  # type: ignore[assignment]
        msg = " ".join(str(cause).split())[:200]
        if "corresponds to no data" in msg:  # a header and no rows
            return None
        raise _fail(where, f"data file {paths[0]} does not parse ({type(cause).__name__}: {msg}); fix the file or its format/read options") from None


class TaskFile:
    """A checked task definition and how to read its rows (hub first where reachable, else files)."""

    def __init__(self, spec: dict[str, Any], base: Path | None, where: str = "task") -> None:
        self.spec = check_task_mapping(spec, where)
        self.base, self.where = base, where
        self.name = str(spec["name"])
        self.labels = parse_labels(spec["labels"], f"{where}.labels")
        self.text = _text_spec(spec["text"], f"{where}.text")
        self.cleaners = [TEXT_CLEANERS.get(c) for c in spec.get("clean") or []]

    def task(self) -> Any:

        hub = self.spec.get("hub") or {}
        return Task(name=self.name, label_names=tuple(lab["name"] for lab in self.labels),
                    label_words=tuple(lab["word"] for lab in self.labels), template=self.spec["template"],
                    instruction=str(self.spec.get("instruction") or ""), answer_hint=str(self.spec.get("answer_hint") or ""),
                    hub="/".join(x for x in (hub.get("path"), hub.get("name")) if x))

    # ----- local files
    def local_files(self) -> dict[str, tuple[list[Path], str]]:
        """Per split ('train', 'test'; one file split by seed: 'all'), the files it reads and their
        format; a missing one fails."""
        fmt = self.spec.get("format")
        given = {"all": self.spec["file"]} if "file" in self.spec else dict(self.spec["files"])
        out = {}
        for split, value in given.items():
            where = f"{self.where}.{'file' if split == 'all' else 'files.' + split}"
            path = resolve_path(str(value), self.base, where)
            if str(value).startswith("data:") and not path.exists():
                raise UserError(f"{self.name}: missing data file {path}; set BOXBENCH_DATA to a folder that holds {str(value)[5:]}")
            out[split] = _files_of(path, fmt, where)
        return out

    def file_keys(self) -> dict[str, Path]:
        """Each local file under the name the record keeps: as written for ``data:`` files (the
        built-ins: ``sst2/train.tsv``), else relative to the task file's folder."""

        root = local_data_dir()
        out = {}
        for paths, _fmt in self.local_files().values():
            for p in paths:
                for anchor in (root, self.base):
                    if anchor is not None and p.resolve().is_relative_to(Path(anchor).resolve()):
                        out[str(p.resolve().relative_to(Path(anchor).resolve()))] = p
                        break
                else:
                    out[str(p)] = p
        return out

    def _examples(self, ds: Any, text: str, label: str, where: str) -> list[Any]:

        cols = ds.to_dict()
        for c in [*columns_of(text), label]:
            if c not in cols:
                raise _fail(where, f"no column {c!r} in the data (columns: {', '.join(cols)}); fix text/label or the file")
        index = {str(lab["value"]): i for i, lab in enumerate(self.labels)}
        out = []
        for i, values in enumerate(zip(*cols.values())):
            r = dict(zip(cols, values))
            y = r[label]
            key = str(int(y)) if isinstance(y, float) and y.is_integer() else str(y)
            if key not in index:
                raise _fail(f"{self.where}.labels", f"data file {where.split(': ', 1)[-1]}: line {i + 2} (header = line 1) has label "
                                                    f"{y!r}, which no label lists (listed: {', '.join(index)}); add it to labels or fix the row")
            t = text.format(**{c: "" if r[c] is None else str(r[c]) for c in columns_of(text)})
            for clean in self.cleaners:
                t = clean(t)
            out.append(Example(t, index[key]))
        return out

    def load_local(self, _root: Path | None = None) -> tuple[list[Any], list[Any]]:
        read = self.spec.get("read") or {}
        rows = {}
        for split, (paths, fmt) in self.local_files().items():
            where = f"{self.where}: {paths[0]}"
            table = read_rows(paths, fmt, read, where)
            if table is None or len(table) == 0:
                raise _fail(f"{self.where}.{'file' if split == 'all' else 'files.' + split}", "is empty; give a file with rows")
            rows[split] = self._examples(table, self.text, str(self.spec["label"]), where)
        if "all" in rows:
            rows["train"], rows["test"] = self.split_one(rows.pop("all"))
        return rows["train"], rows["test"]

    def split_one(self, rows: list[Any]) -> tuple[list[Any], list[Any]]:
        """One file's rows split by seed: the first ``test`` (fraction or count) of a shuffle are test."""
        split = self.spec["split"]
        order = list(rows)
        random.Random(int(split.get("seed", 0))).shuffle(order)
        t = split["test"]
        n = round(t * len(order)) if isinstance(t, float) else int(t)
        if not 0 < n < len(order):
            raise _fail(f"{self.where}.split.test", f"{t!r} of {len(order)} rows leaves an empty split; change it")
        return order[n:], order[:n]

    # ----- hub
    def load_hub(self) -> tuple[list[Any], list[Any]]:
        import datasets

        hub = self.spec["hub"]
        splits = hub.get("splits") or {"train": "train", "test": "test"}
        d = datasets.load_dataset(hub["path"], hub.get("name"))
        text = _text_spec(hub.get("text", self.spec["text"]), f"{self.where}.hub.text")
        label = str(hub.get("label", self.spec["label"]))
        return (self._examples(d[splits["train"]], text, label, f"{self.where}: hub {hub['path']}"),
                self._examples(d[splits["test"]], text, label, f"{self.where}: hub {hub['path']}"))


def load_task_file(path: str | Path, where: str = "task file") -> TaskFile:
    """A task file from disk, checked."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise _fail(where, f"{p} is missing; give the path of a task file (YAML)")
    try:
        spec = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise _fail(where, f"{p} is not valid YAML ({str(e).splitlines()[0]})") from None
    return TaskFile(spec, p.parent, f"{where} {p.name}")


def normalised(text: str) -> str:
    """A text as duplicates are found: case and spacing aside."""
    return " ".join(text.lower().split())


def overlap(train: Any, test: list[Any]) -> int:
    """Test examples whose text (``normalised``) is also a training text; ``train``: examples, or
    their normalised texts as a set already."""
    seen = train if isinstance(train, (set, frozenset)) else {normalised(e.text) for e in train}
    return sum(normalised(e.text) in seen for e in test)
