"""Suite files: parse, validate (one-line errors naming the field), expand to cells.

```yaml
name: quick
models: [smollm2-135m]                 # alias, hf:ORG/NAME, path, or {model:, access:, label:}
datasets: [sst2, agnews]               # or {name: sst2, template: ..., label_words: [...], limits: {test: 500}}
methods:
  - name: zero_shot
    access: grey                       # optional: evaluate at this access (default: the method's)
  - name: few_shot
    params: {k: 4}
    label: few_shot_k4                 # optional display name
  - name: lora
    models: [qwen2.5-coder-0.5b]       # optional: this method on these models instead of the suite's
    limits: {test: 100}                # optional: this method's own limits
    seeds: [0]                         # optional: this method's own seeds (e.g. a deterministic one)
    datasets: [sst2]                   # optional: only on these of the suite's datasets (e.g. a budget per
                                       # dataset: two entries, same label, each with its own datasets and params)
  - name: pez
    transfer_to: [gemma3-270m]         # optional: also evaluate the tuned prompt, as text, on these
  - name: lora
    sweep: {max_train_examples: [64, 256, 1024]}   # optional: one entry per value (per combination when
                                       # several), labelled lora[max_train_examples=64], ...: the report's learning curves
seeds: [0]                             # or {min: 3, max: 10, until: decided}: seeds 0..min-1, then one more
                                       # seed at a time to the methods whose comparisons are still undecided
                                       # (benchmarks/seeds.py), up to max; also per method
limits: {train: 2000, dev: 200, test: 300}   # test: omit for the full test split
settings: {batch_size: 16, dtype: auto, device: auto, max_new_tokens: 8, data_seed: 0, cell_timeout_s: 3600,
           max_retries: 1,             # a cell whose process (or Ray worker) dies is run again this many times
           exact_check: 32}            # a fast-path model (quantize: int8): first N test examples also on its exact twin
transfer_to: [qwen2.5-coder-0.5b]      # optional: every method's artifact also evaluated on these models
resources: {num_cpus: 1}               # optional, --executor ray: what each cell asks of the cluster (also
                                       # per method, or in a model mapping); defaults: executors.default_resources
```

A transfer cell evaluates the artifact of its source cell (same method, dataset, seed) unchanged,
as text, on a target model at the most access up to grey the target gives; it runs after its
source and records ``source_model`` and ``target_model``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from boxbench.backends import BACKENDS, ModelSpec, parse_model_spec
from boxbench.benchmarks.datasets import DATASETS, check_dataset, data_identity
from boxbench.benchmarks.taskfile import TASK_KEYS, TaskFile, load_task_file
from boxbench.core.backend import Access
from boxbench.core.errors import UserError
from boxbench.core.fields import check_fields, typed_record
from boxbench.core.method import build_params, params_json
from boxbench.core.task import Task
from boxbench.methods.registry import get_method

TOP_KEYS = {"name", "description", "models", "datasets", "methods", "seeds", "limits", "settings", "transfer_to", "resources"}
METHOD_KEYS = {"name", "access", "params", "label", "models", "datasets", "limits", "transfer_to", "seeds", "resources", "sweep"}
DATASET_KEYS = {"name", "limits", *Task.OVERRIDES}
LIMIT_KEYS = {"train", "dev", "test"}
RUN_ONLY_SETTINGS = ("cell_timeout_s", "max_retries", "exact_check", "cache", "max_cost", "max_tokens", "suite_max_cost",
                     "suite_max_tokens", "budget_left")  # how a cell is run, not what it measures: not in the key
# (budget_left: a field of settings in cell.json files written before it became the cell's own; kept so their keys read the same)
CAP_SETTINGS = ("max_cost", "max_tokens", "suite_max_cost", "suite_max_tokens")


def caps_of(cell: "Cell") -> dict[str, Any]:
    """The spending caps a cell runs under (a capped cell is run again only when they change)."""
    return {k: getattr(cell.settings, k) for k in CAP_SETTINGS}
DTYPES = ("auto", "float32", "fp32", "bfloat16", "bf16", "float16", "fp16")
DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


@dataclass(frozen=True)
class Settings:
    """A suite's ``settings:`` — how every cell runs — checked field by field like a method's params
    (``core.fields.typed_record``: type, range, allowed values; one line naming the field)."""

    batch_size: int = field(default=16, metadata={"help": "examples per forward pass", "min": 1})
    dtype: str = field(default="auto", metadata={"help": "weights' dtype (auto: bfloat16 on CUDA, float32 elsewhere)", "choices": DTYPES})
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda | cuda:N | mps"})
    max_new_tokens: int = field(default=8, metadata={"help": "answer length at black access", "min": 1})
    data_seed: int = field(default=0, metadata={"help": "seed of the train/dev/test subsamples", "min": 0})
    cell_timeout_s: float | None = field(default=None, metadata={"help": "a cell still running after this many seconds is stopped",
                                                                  "gt": 0, "nullable": True})
    max_retries: int = field(default=1, metadata={"help": "a cell whose process dies is run again this many times", "min": 0})
    exact_check: int = field(default=32, metadata={"help": "a fast-path model's first N test examples also on its exact twin", "min": 0})
    cache: bool = field(default=True, metadata={"help": "serve repeated API requests from the on-disk request cache "
                                                        "(backends/request_cache.py); false: ask the server every time"})
    max_cost: float | None = field(default=None, metadata={"help": "a cell stops (status capped) once its API requests cost "
                                                                   "this much (the price's currency)", "min": 0, "nullable": True})
    max_tokens: int | None = field(default=None, metadata={"help": "a cell stops (status capped) after this many billed API "
                                                                   "tokens", "min": 0, "nullable": True})
    suite_max_cost: float | None = field(default=None, metadata={"help": "the run stops starting cells once its API requests "
                                                                         "cost this much in all", "min": 0, "nullable": True})
    suite_max_tokens: int | None = field(default=None, metadata={"help": "the run stops starting cells after this many billed "
                                                                         "API tokens in all", "min": 0, "nullable": True})
    evaluate_on: str = field(default="test", metadata={
        "help": "test: the dataset's test split; holdout: limits.test rows of train that no method sees (train and dev "
                "come first), for calibrating budgets without looking at test", "choices": ("test", "holdout")})

    def __post_init__(self) -> None:
        check_fields(self, "suite.settings")
        if not DEVICE.fullmatch(self.device):
            raise UserError(f"suite.settings.device: {self.device!r} is not a device; use auto, cpu, cuda, cuda:N or mps")

    def to_json(self) -> dict[str, Any]:
        """The mapping a cell's JSON and its record carry (its key reads it: the same fields as ever)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Settings":
        """Settings written by ``to_json`` (a cell.json): the fields this boxbench knows."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass(frozen=True, kw_only=True)
class Cell:
    """One unit of work: method × model × dataset × seed. Runs in its own process."""

    method: str
    label: str
    access: Access
    params: Any  # the method's Params record (a dataclass), typed from the suite file to the cell
    model: ModelSpec
    dataset: dict[str, Any]
    seed: int
    limits: dict[str, int | None]
    settings: Settings
    source: "Cell | None" = None  # a transfer cell: the cell whose artifact it evaluates on ``model``
    data: str = ""  # fingerprint of the data files (``datasets.data_identity``): part of the key
    resources: dict[str, Any] = field(default_factory=dict)  # what the Ray executor asks for (not in the key)
    sweep: dict[str, Any] = field(default_factory=dict)  # the swept params' values of this cell (the report's curves)
    seed_plan: dict[str, Any] = field(default_factory=dict)  # {max, until} where seeds are added until decided (not in the key)
    budget_left: dict[str, float] | None = None  # what the run's spending caps leave this cell (the runner's; not in the key)

    @property
    def arm(self) -> str:
        """What the seeds of one method entry share: ``model|dataset|label`` (the report's row)."""
        return f"{self.model.display}|{self.dataset['name']}|{self.label}"

    def to_json(self) -> dict[str, Any]:
        d = {"method": self.method, "label": self.label, "access": self.access.name, "params": params_json(self.params),
             "model": self.model.to_json(), "dataset": self.dataset, "seed": self.seed,
             "limits": self.limits, "settings": self.settings.to_json(), "data": self.data}
        if self.source is not None:
            d["source"] = self.source.to_json()
        if self.resources:
            d["resources"] = dict(self.resources)
        if self.sweep:
            d["sweep"] = dict(self.sweep)
        if self.seed_plan:
            d["seed_plan"] = dict(self.seed_plan)
        if self.budget_left is not None:
            d["budget_left"] = dict(self.budget_left)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Cell":
        return cls(method=d["method"], label=d["label"], access=Access.parse(d["access"]),
                   params=build_params(get_method(d["method"]), d["params"]),  # a plugin's method: its file loaded first
                   model=ModelSpec.from_json(d["model"]), dataset=d["dataset"], seed=d["seed"], limits=d["limits"],
                   settings=Settings.from_json(d["settings"]), source=cls.from_json(d["source"]) if d.get("source") else None,
                   data=d.get("data", ""), resources=d.get("resources", {}), sweep=d.get("sweep", {}),
                   seed_plan=d.get("seed_plan", {}), budget_left=d.get("budget_left"))

    @property
    def key(self) -> str:
        """Stable identity: the same experiment always has the same key (resume skips it)."""
        ident = {k: v for k, v in self.to_json().items() if k not in ("settings", "resources", "sweep", "seed_plan", "budget_left")}
        ident["dataset"] = {k: v for k, v in self.dataset.items() if k != "base"}  # where a task file lies is not what it is
        ident["settings"] = {k: v for k, v in self.settings.to_json().items() if k not in RUN_ONLY_SETTINGS
                             and not (k == "evaluate_on" and v == "test")}  # keys as before the field existed
        if version := get_method(self.method).version:  # version 0: keys as before versions existed
            ident["method_version"] = version
        if self.source is not None:  # as keys were before max_retries and resources existed
            src = {k: v for k, v in ident["source"].items() if k not in ("resources", "sweep", "seed_plan", "budget_left")}
            src["dataset"] = {k: v for k, v in src["dataset"].items() if k != "base"}
            ident["source"] = {**src, "settings": {k: v for k, v in src["settings"].items()
                                                   if k not in RUN_ONLY_SETTINGS or k == "cell_timeout_s"
                                                   if not (k == "evaluate_on" and v == "test")}}
            if version := get_method(self.source.method).version:
                ident["source"]["method_version"] = version
        return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def cell_id(self) -> str:
        via = f"{self.source.model.display}-to-" if self.source is not None else ""
        raw = f"{self.label}.{via}{self.model.display}.{self.dataset['name']}.s{self.seed}.{self.key[:8]}"
        return re.sub(r"[^A-Za-z0-9._-]+", "-", raw)


@dataclass(frozen=True, kw_only=True)
class MethodEntry:
    """One entry of a suite's ``methods:``, validated: what its cells share."""

    name: str
    label: str
    access: Access
    params: Any  # the method's Params record
    models: list[ModelSpec]
    limits: dict[str, int | None]
    transfer_to: list[ModelSpec]
    seeds: list[int]
    resources: dict[str, Any]
    sweep: dict[str, Any] = field(default_factory=dict)  # the swept params' values (one entry per combination)
    datasets: list[str] = field(default_factory=list)  # the suite's datasets this entry runs on (empty: all)
    seed_plan: dict[str, Any] = field(default_factory=dict)  # {max, until}: seeds added until decided (``_seeds``)


def sweep_combinations(cls: Any, params: dict[str, Any], value: Any, where: str) -> list[tuple[dict[str, Any], Any]]:
    """A method entry's ``sweep:`` — a mapping of params to lists of values — as the list of value
    combinations (the cartesian product, in the order written), each checked as the method's params
    would be: (combination, its built params); ``[({}, None)]`` without a sweep."""
    import itertools

    if value is None:
        return [({}, None)]
    if not isinstance(value, dict) or not value:
        raise UserError(f"{where}.sweep: must be a mapping of params to lists of values, e.g. {{max_train_examples: [64, 256, 1024]}}")
    for key, vals in value.items():
        if not isinstance(vals, list) or not vals:
            raise UserError(f"{where}.sweep.{key}: must be a non-empty list of values")
        if len(set(map(repr, vals))) != len(vals):
            raise UserError(f"{where}.sweep.{key}: lists a value twice")
        outer, _, inner = str(key).partition(".")
        if key in params or (inner and inner in (params.get(outer) or {})):
            raise UserError(f"{where}.sweep.{key}: also set in params; set it in one place")
        if inner and not isinstance(params.get(outer, {}), dict):
            raise UserError(f"{where}.sweep.{key}: params.{outer} is not a mapping; sweep {outer} itself")
    combos = [dict(zip(value, vals)) for vals in itertools.product(*value.values())]
    return [(combo, build_params(cls, with_swept(params, combo), f"{where}.sweep")) for combo in combos]


def with_swept(params: dict[str, Any], combo: dict[str, Any]) -> dict[str, Any]:
    """``params`` with a combination's values set; ``outer.inner`` sets a key of a mapping param
    (Proxy-Tuning's ``expert_params.max_train_examples``)."""
    out = dict(params)
    for key, v in combo.items():
        outer, _, inner = key.partition(".")
        out[outer] = {**(out.get(outer) or {}), inner: v} if inner else v
    return out


def sweep_label(label: str, combo: dict[str, Any]) -> str:
    """``lora[max_train_examples=256]``: a swept entry's label names its values."""
    return f"{label}[{','.join(f'{k}={v}' for k, v in combo.items())}]" if combo else label


@dataclass
class Suite:
    name: str
    cells: list[Cell] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)
    all_keys: list[str] = field(default_factory=list)  # every cell of the suite, before --only (the report's "current" cells)
    plans: dict[str, dict[str, Any]] = field(default_factory=dict)  # arm → seed plan, before --only (``Cell.arm``)
    universe: list[Cell] = field(default_factory=list)  # every cell before --only, added seeds included

    def __post_init__(self) -> None:
        if not self.all_keys:
            self.all_keys = [c.key for c in self.cells]
        if not self.plans:
            self.plans = {c.arm: dict(c.seed_plan) for c in self.cells if c.seed_plan and c.source is None}
        if not self.universe:
            self.universe = list(self.cells)

    def seed_counts(self, everywhere: bool = False) -> dict[str, int]:
        """Each arm's number of seeds among this suite's tuning cells (transfer cells not counted);
        ``everywhere``: among the cells --only left out too."""
        seeds: dict[str, set[int]] = {}
        for c in self.universe if everywhere else self.cells:
            if c.source is None:
                seeds.setdefault(c.arm, set()).add(c.seed)
        return {a: len(v) for a, v in seeds.items()}

    def with_seed(self, arms: set[str]) -> "Suite":
        """The suite with one more seed (the arm's highest + 1) for each of ``arms``: its cells and
        their transfer cells copied with the new seed (keys as if written by hand), in ``all_keys``
        too. An arm --only left out gets its seed in ``all_keys`` and ``universe`` alone, so the
        report and a later run split by other filters count it."""
        pairs: list[tuple[Cell, Cell]] = []  # (the arm's top-seed cell, its copy at the next seed)
        for arm in sorted(arms):
            mine = [c for c in self.universe if (c.source or c).arm == arm]
            if not mine:
                continue
            top = max(c.seed for c in mine)
            for c in mine:
                if c.seed == top:
                    src = dataclasses.replace(c.source, seed=top + 1) if c.source is not None else None
                    pairs.append((c, dataclasses.replace(c, seed=top + 1, source=src)))
        extra = [new for _, new in pairs]
        selected = {c.key for c in self.cells}
        keys = [c.key for c in extra if c.key not in set(self.all_keys)]
        return Suite(self.name, self.cells + [new for old, new in pairs if old.key in selected], self.raw, self.all_keys + keys,
                     self.plans, self.universe + extra)


def _list(raw: dict[str, Any], key: str) -> list[Any]:
    value = raw.get(key)
    if value is None:
        raise UserError(f"suite: missing required field {key!r}")
    if not isinstance(value, list) or not value:
        raise UserError(f"suite.{key}: must be a non-empty list")
    return value


def _unknown(given: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(given) - allowed)
    if extra:
        raise UserError(f"{where}: unknown field {extra[0]!r}; allowed fields: {', '.join(sorted(allowed))}")


SEED_UNTIL = ("decided",)


def _seeds(value: Any, where: str) -> tuple[list[int], dict[str, Any]]:
    """(the seeds to run first, the plan): a list of integers (a plan of none), or ``{min: 3, max: 10,
    until: decided}`` — seeds 0 … min−1 first, then more while the method's comparisons are undecided
    (benchmarks/seeds.py)."""
    if isinstance(value, dict):
        _unknown(value, {"min", "max", "until"}, where)
        lo, hi, until = value.get("min"), value.get("max"), value.get("until")
        for name, v in (("min", lo), ("max", hi)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 2:
                raise UserError(f"{where}.{name}: must be an integer of at least 2 (the seed spread needs two runs), got {v!r}")
        if hi < lo:  # type: ignore[operator]
            raise UserError(f"{where}.max: {hi} is below min {lo}; give max >= min")
        if until not in SEED_UNTIL:
            raise UserError(f"{where}.until: must be one of {', '.join(SEED_UNTIL)}, got {until!r}")
        return list(range(lo)), {"min": lo, "max": hi, "until": until}  # type: ignore[arg-type]
    if not isinstance(value, list) or not value or not all(isinstance(s, int) and not isinstance(s, bool) for s in value):
        raise UserError(f"{where}: must be a non-empty list of integers, or {{min: 3, max: 10, until: decided}}")
    return value, {}


def _limits(value: Any, where: str, base: dict[str, int | None]) -> dict[str, int | None]:
    """``base`` overridden by the mapping ``value`` ({train, dev, test}: non-negative int or null)."""
    value = value or {}
    if not isinstance(value, dict):
        raise UserError(f"{where}: must be a mapping like {{train: 2000, dev: 200, test: 300}}")
    _unknown(value, LIMIT_KEYS, where)
    for k, v in value.items():
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
            raise UserError(f"{where}.{k}: must be a non-negative integer or null")
    return {**base, **value}


ONLY_FIELDS = ("dataset", "method", "model", "seed")


def select_cells(suite: Suite, only: list[str]) -> Suite:
    """Keep the cells matching every ``FIELD=V1,V2`` filter (``--only``): dataset, method (name or
    label), model (the source model of a transfer cell), seed. Cell keys do not change, so a run
    split by filters fills one run directory and resumes like a whole one."""
    cells = suite.cells
    for f in only:
        name, _, values = f.partition("=")
        if name not in ONLY_FIELDS or not values:
            raise UserError(f"--only {f!r}: expected FIELD=VALUE[,VALUE...] with FIELD one of {', '.join(ONLY_FIELDS)}")
        want = set(values.split(","))

        def value(c: Cell) -> set[str]:
            src = c.source or c
            return {"dataset": {c.dataset["name"]}, "method": {c.method, c.label}, "model": {src.model.display},
                    "seed": {str(c.seed)}}[name]

        cells = [c for c in cells if value(c) & want]
    if not cells:
        raise UserError(f"--only {' '.join(only)}: no cell of suite {suite.name!r} matches")
    return Suite(suite.name, cells, suite.raw, suite.all_keys, suite.plans, suite.universe)


def machine_problems(suite: Suite) -> list[str]:
    """What this machine lacks for the suite's cells, known before any cell starts (one line each):
    a CUDA device for ``device: cuda[:N]`` or a model with ``quantize: 4bit``, MPS for ``device: mps``,
    a backend's or a method's optional package (``unavailable()``).
    A remote Ray cluster may have what this machine lacks, so ``check`` only warns; a local run stops."""
    import torch

    cuda = torch.cuda.is_available()
    n_cuda = torch.cuda.device_count() if cuda else 0
    mps = bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
    out = []
    for device in sorted({c.settings.device for c in suite.cells}):
        if device.startswith("cuda") and not cuda:
            out.append(f"suite.settings.device: {device} but this machine has no CUDA device; use auto or cpu here, or run on a CUDA machine")
        elif device.startswith("cuda:") and int(device[5:]) >= n_cuda:
            out.append(f"suite.settings.device: {device} but this machine has {n_cuda} CUDA device(s); use cuda:0 .. cuda:{n_cuda - 1}")
        elif device == "mps" and not mps:
            out.append("suite.settings.device: mps but this machine has no Apple MPS device; use auto or cpu")
    if not cuda:
        for name in sorted({c.model.display for c in suite.cells if c.model.options.get("quantize") == "4bit"}):
            out.append(f"model {name!r}: quantize 4bit (QLoRA's NF4) needs CUDA and bitsandbytes; this machine has no CUDA device")
    for backend, name in sorted({(c.model.backend, c.model.display) for c in suite.cells}):
        reason = BACKENDS.get(backend).unavailable()
        if reason:
            out.append(f"model {name!r}: backend {backend} unavailable: {reason}")
    for method in sorted({c.method for c in suite.cells}):
        reason = get_method(method).unavailable()
        if reason:
            out.append(f"method {method}: unavailable here: {reason}")
    return out


RESOURCE_KEYS = ("num_cpus", "num_gpus", "memory")


def _parse_memory(value: Any, where: str) -> int:
    """Bytes from an int or a string like ``40GB``, ``512MiB``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return int(value)
    m = re.fullmatch(r"\s*([\d.]+)\s*([KMGT]i?B|B)?\s*", str(value), flags=re.I)
    if not m:
        raise UserError(f"{where}.memory: {value!r} is not a size; use bytes or e.g. 40GB, 512MiB")
    unit = (m.group(2) or "B").upper()
    scale = {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}[unit]
    return int(float(m.group(1)) * scale)


def check_resources(value: Any, where: str) -> dict[str, Any]:
    """A suite's ``resources`` mapping, validated (one line naming the field)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UserError(f"{where}: must be a mapping like {{num_gpus: 1, num_cpus: 4, memory: 40GB}}")
    out: dict[str, Any] = {}
    for key, val in value.items():
        if key not in RESOURCE_KEYS:
            raise UserError(f"{where}: unknown field {key!r}; allowed fields: {', '.join(RESOURCE_KEYS)}")
        if key == "memory":
            out[key] = _parse_memory(val, where)
        elif isinstance(val, bool) or not isinstance(val, (int, float)) or val < 0:
            raise UserError(f"{where}.{key}: must be a non-negative number, got {val!r}")
        else:
            out[key] = val
    return out


def load_suite(path: str | Path, limit: int | None = None, only: list[str] | None = None) -> Suite:
    """Read and validate a suite file; ``limit`` caps the test examples per cell (``--limit``),
    ``only`` keeps a subset of its cells (``--only``)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"suite file {str(p)!r} not found")
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise UserError(f"suite {p}: not valid YAML{where}: {getattr(e, 'problem', e)}") from None
    if not isinstance(raw, dict):
        raise UserError(f"suite {p}: expected a mapping with models, datasets, methods")
    suite = parse_suite(raw, limit, default_name=p.stem, base=p.parent)
    return select_cells(suite, only) if only else suite


def dataset_entry(value: Any, base: Path | None, where: str) -> dict[str, Any]:
    """One entry of a suite's ``datasets:`` as a cell carries it, checked (its files exist, its
    overrides apply): a registered name (``sst2``), a task file (``tickets.yaml``, or ``{task:
    tickets.yaml, limits: ...}``), or a task defined inline (a mapping with ``files``/``file``/``hub``).
    A task file's cells carry its definition (``task``) and the folder its paths are relative to (``base``)."""
    if isinstance(value, str):
        value = {"task": value} if value.endswith((".yaml", ".yml")) else {"name": value}
    if not isinstance(value, dict):
        raise UserError(f"{where}: give a dataset name, a task file (name.yaml) or a mapping")
    d = dict(value)
    if "task" in d or d.keys() & {"files", "file", "hub"}:
        if "task" in d:
            _unknown(d, {"task", "limits", *Task.OVERRIDES}, where)
            path = Path(str(d.pop("task")))
            tf = load_task_file(path if path.is_absolute() or base is None else base / path, f"{where}.task")
        else:
            inline = {k: v for k, v in d.items() if k in TASK_KEYS}
            _unknown(d, {"limits", *TASK_KEYS}, where)
            d = {k: v for k, v in d.items() if k not in TASK_KEYS}
            tf = TaskFile(inline, base, where)

        if tf.name in DATASETS:
            raise UserError(f"{where}: {tf.name!r} is a built-in dataset's name; give your task another name")
        d = {"name": tf.name, "task": tf.spec, "base": str(tf.base.resolve()) if tf.base else "", **d}
    elif "name" not in d:
        raise UserError(f"{where}: give a dataset name, a task file (name.yaml) or a mapping with 'name'")
    else:
        _unknown(d, DATASET_KEYS, where)
    check_dataset(d, where).task.with_overrides(**d)
    return d


def _targets(value: Any, where: str) -> list[ModelSpec]:
    """A ``transfer_to`` list of model specs (none when absent)."""
    if value is None:
        return []
    if not isinstance(value, list) or not value:
        raise UserError(f"{where}: must be a non-empty list of model specs")
    return [parse_model_spec(x, f"{where}[{j}]") for j, x in enumerate(value)]


def _settings(raw: dict[str, Any], limits_for: dict[str, dict[str, int | None]]) -> Settings:
    """The suite's ``settings``, typed and checked (holdout evaluation needs train and test limits)."""
    settings_raw = raw.get("settings") or {}
    if not isinstance(settings_raw, dict):
        raise UserError("suite.settings: must be a mapping")
    settings = typed_record(Settings, settings_raw, "suite.settings")
    if settings.evaluate_on == "holdout":
        for name, lim in limits_for.items():
            if lim["train"] is None or lim["test"] is None:
                raise UserError(f"suite.settings.evaluate_on: holdout needs limits.train and limits.test for {name} "
                                f"(the held-out rows follow dev and train in its train split); set both")
    return settings


@dataclasses.dataclass
class _Parser:
    """What ``parse_suite``'s steps share: ``--limit``, the models' Ray resources, and the suite-wide
    defaults a method entry inherits (models, dataset names, seeds, transfer targets)."""

    limit: int | None
    model_resources: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    models: list[ModelSpec] = dataclasses.field(default_factory=list)
    names: list[str] = dataclasses.field(default_factory=list)
    seeds: list[int] = dataclasses.field(default_factory=list)
    plan: dict[str, Any] = dataclasses.field(default_factory=dict)
    transfer_to: list[ModelSpec] = dataclasses.field(default_factory=list)

    def model(self, value: Any, where: str) -> ModelSpec:
        """A model spec; a mapping may carry ``resources`` (the Ray executor's, not the model's)."""
        if isinstance(value, dict):
            value = dict(value)  # the suite's own mapping stays as written
        res = value.pop("resources", None) if isinstance(value, dict) else None
        spec = parse_model_spec(value, where)
        if res is not None:
            self.model_resources[spec.display] = check_resources(res, f"{where}.resources")
        return spec

    def cap(self, lim: dict[str, int | None]) -> dict[str, int | None]:
        """A cell's limits under ``--limit`` (test rows at most that many)."""
        if self.limit is not None:
            lim = {**lim, "test": min(self.limit, lim["test"]) if lim["test"] is not None else self.limit}
        return lim

    def method_entries(self, m: Any, where: str) -> list[MethodEntry]:
        """One ``methods:`` item checked against the suite's models and datasets: an entry per swept combination."""
        m = {"name": m} if isinstance(m, str) else m
        if not isinstance(m, dict) or "name" not in m:
            raise UserError(f"{where}: give a method name or a mapping with 'name'")
        _unknown(m, METHOD_KEYS, where)
        cls = get_method(str(m["name"]))
        params = build_params(cls, m.get("params"), f"{where}.params")
        access = Access.parse(m["access"], f"{where}.access") if m.get("access") is not None else cls.access
        if access < cls.access:
            raise UserError(f"{where}.access: {cls.name} needs {cls.access.name} access; {access.name} is too low")
        own = m.get("models")
        if own is not None and (not isinstance(own, list) or not own):
            raise UserError(f"{where}.models: must be a non-empty list of model specs")
        method_models = [self.model(x, f"{where}.models[{j}]") for j, x in enumerate(own)] if own else self.models
        method_resources = check_resources(m.get("resources"), f"{where}.resources")
        own_limits = m.get("limits")
        _limits(own_limits, f"{where}.limits", {})  # validate
        for spec in method_models:
            cls.check(params, spec, where)
            if spec.max_access() < access:
                raise UserError(
                    f"{where}: {cls.name} needs {access.name} access but model {spec.display!r} gives only "
                    f"{spec.max_access().name}; use a model that gives {access.name} access or drop the method"
                )
        default_label = cls.name if access == cls.access else f"{cls.name}@{access.name}"
        method_targets = _targets(m.get("transfer_to"), f"{where}.transfer_to") if "transfer_to" in m else self.transfer_to
        method_seeds, method_plan = _seeds(m["seeds"], f"{where}.seeds") if "seeds" in m else (self.seeds, self.plan)
        own_datasets = m.get("datasets")
        if own_datasets is not None and (not isinstance(own_datasets, list) or not own_datasets
                                         or not all(isinstance(x, str) and x in self.names for x in own_datasets)):
            raise UserError(f"{where}.datasets: must be a non-empty list of the suite's dataset names ({', '.join(self.names)})")
        out = []
        for combo, built in sweep_combinations(cls, dict(m.get("params") or {}), m.get("sweep"), where):
            swept = built if combo else params
            for spec in method_models if combo else ():  # a swept value is checked against each model as params are
                cls.check(swept, spec, where)
            out.append(MethodEntry(name=cls.name, label=sweep_label(str(m.get("label") or default_label), combo), access=access,
                                   params=swept, models=method_models, limits=own_limits or {},
                                   transfer_to=method_targets, seeds=method_seeds, resources=method_resources, sweep=combo,
                                   datasets=list(own_datasets or []), seed_plan=method_plan))
        return out


def parse_suite(raw: dict[str, Any], limit: int | None = None, default_name: str = "suite", base: Path | None = None) -> Suite:
    """A suite mapping -> its cells, every field checked (one line naming it) before any work."""
    _unknown(raw, TOP_KEYS, "suite")
    p = _Parser(limit)
    suite_resources = check_resources(raw.get("resources"), "suite.resources")
    p.models = [p.model(m, f"suite.models[{i}]") for i, m in enumerate(_list(raw, "models"))]
    datasets = [dataset_entry(d, base, f"suite.datasets[{i}]") for i, d in enumerate(_list(raw, "datasets"))]
    p.names = [d["name"] for d in datasets]
    if len(set(p.names)) != len(p.names):
        raise UserError(f"suite.datasets: {next(n for n in p.names if p.names.count(n) > 1)!r} is listed twice; list each dataset once")
    data_ids = {d["name"]: data_identity(d) for d in datasets}
    p.seeds, p.plan = _seeds(raw.get("seeds", [0]), "suite.seeds")
    base_limits = _limits(raw.get("limits"), "suite.limits", {"train": None, "dev": 0, "test": None})
    limits_for = {d["name"]: _limits(d.pop("limits", None), f"suite.datasets[{i}].limits", base_limits)
                  for i, d in enumerate(datasets)}
    settings = _settings(raw, limits_for)
    p.transfer_to = _targets(raw.get("transfer_to"), "suite.transfer_to")
    methods = [e for i, m in enumerate(_list(raw, "methods")) for e in p.method_entries(m, f"suite.methods[{i}]")]
    pairs = [(m.label, spec.display, d) for m in methods for spec in m.models for d in (m.datasets or p.names)]
    dup = next((x for x in pairs if pairs.count(x) > 1), None)
    if dup:
        raise UserError(f"suite.methods: two entries are both labelled {dup[0]!r} on model {dup[1]!r} and dataset {dup[2]!r}; "
                        f"give one a distinct 'label' (or each its own 'datasets')")
    cells = []
    for e in methods:
        for spec in e.models:
            res = {**suite_resources, **p.model_resources.get(spec.display, {}), **e.resources}
            for ds in datasets:
                if e.datasets and ds["name"] not in e.datasets:
                    continue
                for seed in e.seeds:
                    src = Cell(method=e.name, label=e.label, access=e.access, params=e.params, model=spec, dataset=ds, seed=seed,
                               limits=p.cap({**limits_for[ds["name"]], **e.limits}), settings=settings, data=data_ids[ds["name"]],
                               resources=res, sweep=e.sweep, seed_plan=e.seed_plan)
                    cells.append(src)
                    for tgt in e.transfer_to:  # after their source: the artifact must exist
                        cells.append(dataclasses.replace(src, model=tgt, access=min(tgt.max_access(), e.access, Access.grey), source=src,
                                                         resources={**suite_resources, **p.model_resources.get(tgt.display, {}),
                                                                    **e.resources}))
    return Suite(str(raw.get("name", default_name)), cells, raw)
