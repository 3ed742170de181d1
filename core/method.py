"""The Method interface and the Artifact a tuning run returns.

A method declares the least access it needs and a params dataclass whose defaults are its
reference implementation's, except where docs/fidelity.md says why not. ``tune`` receives a view of exactly that access and returns an Artifact: serialisable
(JSON + files), re-appliable to another model, evaluated by the one shared scorer.
"""

from __future__ import annotations

import dataclasses
import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Generic, Sequence, TypeVar

from boxbench.core.backend import Access, BlackView
from boxbench.core.errors import UserError
from boxbench.core.fields import check_fields, typed_record
from boxbench.core.task import Example, Task

ARTIFACT_KINDS: dict[str, type["Artifact"]] = {}


class Artifact:
    """What tuning produced. Subclasses set ``kind`` and override ``prompts`` and/or ``attach``."""

    # ``Any`` below: JSON mappings (``to_json``, ``from_json``, the evaluation result and the record fields
    # ``extra_metrics`` adds) and ``__init_subclass__``'s pass-through keywords.

    kind: ClassVar[str] = "artifact"

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        ARTIFACT_KINDS[cls.kind] = cls

    def __init__(self) -> None:
        self.stats: dict[str, Any] = {}  # train_steps, trainable_params, ... recorded by the runner

    def prompts(self, task: Task, texts: Sequence[str]) -> list[str]:
        """The prompt for each test input (default: the task template alone)."""
        return [render_prompt(task, t) for t in texts]

    def attach(self, view: BlackView) -> BlackView:
        """The view to evaluate through, given the view of the cell's access. The runner calls it
        (methods do not); an artifact gets no more than that view gives: an adapter needs a white
        view (``view.backend``), a proxy wraps a grey one. Default: the view unchanged."""
        return view

    def extra_metrics(self, gold: Sequence[int], result: dict[str, Any]) -> dict[str, Any]:
        """Fields only this artifact can compute about its own evaluation (called after the scorer,
        with the test labels and its result; added to the cell's record). Default: none."""
        return {}

    def to_json(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_json(cls, data: dict[str, Any], folder: Path) -> "Artifact":
        return cls()

    def save(self, folder: Path) -> None:
        """Write ``artifact.json`` (and any files) into ``folder``."""
        folder.mkdir(parents=True, exist_ok=True)
        payload = {"kind": self.kind, "stats": self.stats, **self.to_json()}
        (folder / "artifact.json").write_text(json.dumps(payload, indent=2, ensure_ascii=False))

    @staticmethod
    def load(folder: Path) -> "Artifact":
        """The artifact saved in ``folder``; its kind's class must be imported (``methods.registry.load_artifact``
        imports the method modules first)."""
        data = json.loads((Path(folder) / "artifact.json").read_text())
        kind = data.pop("kind", None)
        cls = ARTIFACT_KINDS.get(kind)
        if cls is None:
            raise UserError(f"artifact {folder}: unknown kind {kind!r}; known kinds: {', '.join(sorted(ARTIFACT_KINDS))} "
                            f"(load the plugin that defines it with --plugin)")
        stats = data.pop("stats", {})
        art = cls.from_json(data, Path(folder))
        art.stats = stats
        return art


def render_prompt(task: Task, text: str, instruction: str = "", demos: Sequence[Example] = ()) -> str:
    """instruction, then each demonstration (template + its label word), then the query template."""
    parts = [instruction.strip()] if instruction.strip() else []
    parts += [task.template.format(text=d.text) + task.label_words[d.label] for d in demos]
    parts.append(task.template.format(text=text))
    return "\n\n".join(parts)


class PromptArtifact(Artifact):
    """A text prompt: an instruction and fixed demonstrations. Transfers to any model as text."""

    kind = "prompt"

    def __init__(self, instruction: str = "", demos: Sequence[Example] = ()) -> None:
        super().__init__()
        self.instruction = instruction
        self.demos = list(demos)

    def prompts(self, task: Task, texts: Sequence[str]) -> list[str]:
        return [render_prompt(task, t, self.instruction, self.demos) for t in texts]

    def to_json(self) -> dict[str, Any]:
        return {"instruction": self.instruction, "demos": [{"text": d.text, "label": d.label} for d in self.demos]}

    @classmethod
    def from_json(cls, data: dict[str, Any], folder: Path) -> "PromptArtifact":
        return cls(data.get("instruction", ""), [Example(d["text"], int(d["label"])) for d in data.get("demos", [])])


class ModelArtifact(Artifact):
    """Base of artifacts that change the model (adapters, soft prompts, weights): it also carries
    the text prompt the model was trained with, and the scorer uses that prompt."""

    kind = "model_artifact"

    def __init__(self, prompt: PromptArtifact | None = None) -> None:
        super().__init__()
        self.prompt = prompt or PromptArtifact()

    def prompts(self, task: Task, texts: Sequence[str]) -> list[str]:
        return self.prompt.prompts(task, texts)

    def to_json(self) -> dict[str, Any]:
        return {"prompt": self.prompt.to_json()}

    @staticmethod
    def prompt_from(data: dict[str, Any]) -> PromptArtifact:
        return PromptArtifact.from_json(data.get("prompt", {}), Path("."))


FAMILIES: dict[Access, tuple[str, ...]] = {
    Access.white: ("full", "partial"),
    Access.grey: ("prompt", "module", "logprob"),
    Access.black: ("multi-pass", "single-pass"),
}
"""The survey's taxonomy (its Figure 2), the sub-classes of each access class: white — full or partial
parameter optimisation; grey — intermediate-layer optimisation of a prompt or of a module, or
log-probability transfer; black — multi-pass prompt optimisation or single-pass demonstration
selection. ``baseline`` (no tuning, or random demonstrations) sits outside it at any access."""


def family_of(method: type["Method"]) -> str:
    """``access/sub-class`` of a method, e.g. ``grey/module``; ``baseline`` alone for the untuned
    rows (they run at any access)."""
    return method.family if method.family == "baseline" else f"{method.access.name}/{method.family}"


class Checked:
    """Base of params dataclasses: every field checked against its metadata (``min``, ``gt``,
    ``max``, ``choices``; ``core.fields.check_fields``) when the record is built, in a suite or in code."""

    def __post_init__(self) -> None:
        check_fields(self)


@dataclasses.dataclass
class NoParams(Checked):
    """This method has no hyperparameters."""


V = TypeVar("V", bound=BlackView)
P = TypeVar("P", bound=Checked)


class Method(ABC, Generic[V, P]):
    """A tuning method, generic in the view it tunes through and in its params
    (``Method[WhiteView, PezParams]``): ``tune`` gets a view of exactly ``access`` and a ``Params``
    record. Register it with ``@register_method``."""

    name: ClassVar[str]
    access: ClassVar[Access]  # the least access it needs; tune() gets a view of exactly this
    Params: ClassVar[type[Checked]] = NoParams  # the class of P (a ClassVar cannot name a type variable)
    description: ClassVar[str] = ""
    family: ClassVar[str] = ""  # its sub-class in the survey's taxonomy (``FAMILIES[access]`` or "baseline")
    version: ClassVar[int] = 0  # raise it when a change alters what tune returns for the same params and seed (a fix):
    # cells' keys carry it (lm-eval's task VERSION), so a run re-runs the cells of the old code and reports list them as stale

    @classmethod
    def unavailable(cls) -> str | None:
        """Why this method cannot run in this environment (an optional package missing), in one line
        naming the fix; None when it can. ``boxbench check`` warns, a local run stops before any cell."""
        return None

    @abstractmethod
    def tune(self, view: V, *, task: Task, train: list[Example], dev: list[Example], params: P, seed: int) -> Artifact:
        """Tune on ``train``/``dev`` (never the test set) and return the artifact."""

    @classmethod
    def check(cls, params: P, model: Any, where: str) -> None:  # model: backends.ModelSpec, a layer above this one
        """Suite-time check of ``params`` against a cell's model spec (a UserError before any work)."""


def params_json(params: Any) -> dict[str, Any]:
    """A method's params record (a dataclass; a plugin's need not derive from ``Checked``) as the suite,
    the cell's key and its record hold it: every field, by name."""
    return dataclasses.asdict(params)


def build_params(method: type[Method[Any, Any]], values: dict[str, Any] | None, where: str = "params") -> Any:
    """The method's params dataclass from a suite mapping; a UserError naming a bad field
    (``core.fields.typed_record``: name, type, range, allowed values)."""
    return typed_record(method.Params, dict(values or {}), where, owner=method.name)
