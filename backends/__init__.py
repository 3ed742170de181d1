"""Model backends and the model specs that name them in a suite.

A model spec is a string or a mapping:

* ``smollm2-135m`` — an offline alias (see ``backends.weights.ALIASES``)
* ``hf:ORG/NAME`` — a hub model; ``./path/to/folder`` or ``file.gguf`` — local files
* ``{model: smollm2-135m, access: black, label: smol-black}`` — the same, with the access the
  model may give capped (to stand in for an API) and a display label
* ``{backend: NAME, model: ..., ...}`` — any registered backend with its own options
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from boxbench.backends import context
from boxbench.backends.context import LoadedModel
from boxbench.core.backend import Access, AccessError, Backend, BlackView, GreyView, WhiteView
from boxbench.core.errors import UserError
from boxbench.core.registry import Registry

BACKENDS: Registry[type[Backend]] = Registry("backend", {
    "hf": "boxbench.backends.hf:HFBackend",
    "openai": "boxbench.backends.openai_api:OpenAIBackend",
    "vllm": "boxbench.backends.vllm:VLLMBackend",
}, base=Backend)
register_backend = BACKENDS.register

__all__ = ["Access", "AccessError", "Backend", "BlackView", "GreyView", "WhiteView", "BACKENDS",
           "register_backend", "ModelSpec", "parse_model_spec", "load_backend", "loaded_models"]


@dataclass(frozen=True)
class ModelSpec:
    """A model as a suite names it."""

    backend: str
    model: str
    access: Access | None = None  # cap on the access the model gives (None: the backend's max)
    label: str = ""
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def display(self) -> str:
        return self.label or self.model

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"backend": self.backend, "model": self.model}
        if self.access is not None:
            d["access"] = self.access.name
        if self.label:
            d["label"] = self.label
        if self.options:
            d["options"] = dict(self.options)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "ModelSpec":
        """Rebuild a spec written by ``to_json`` (already validated; no checks here)."""
        access = Access.parse(d["access"]) if d.get("access") else None
        return cls(d["backend"], d["model"], access, d.get("label", ""), dict(d.get("options", {})))

    def max_access(self) -> Access:
        cls = BACKENDS.get(self.backend)
        top = Access(cls.spec_access(self.options))
        return min(top, self.access) if self.access is not None else top


def parse_model_spec(value: Any, where: str = "models") -> ModelSpec:
    """Parse and check a model spec; a UserError naming ``where`` if it is malformed."""
    if isinstance(value, str):
        value = {"model": value}
    if not isinstance(value, dict) or "model" not in value:
        raise UserError(f"{where}: {value!r} is not a model spec; give an alias, hf:NAME, a path, or a mapping with 'model'")
    value = dict(value)
    backend = str(value.pop("backend", "hf"))
    model = str(value.pop("model"))
    access = value.pop("access", None)
    label = str(value.pop("label", ""))
    spec = ModelSpec(backend, model, Access.parse(access, f"{where}.access") if access is not None else None, label, value)
    BACKENDS.get(backend).check_spec(model, value, where)  # an unknown backend: the error lists the known ones
    return spec


def load_backend(spec: ModelSpec, **settings: Any) -> Backend:
    """Instantiate the spec's backend (``settings``: device, dtype, batch_size, ...). Every model
    loaded is entered in this process's ledger (``loaded_models``): the compute estimate covers
    the tuned model and every other model a method loads (a proposer, a proxy's small model)."""
    cls = BACKENDS.get(spec.backend)
    backend = cls.load(spec.model, **spec.options, **settings)
    if spec.access is not None and spec.access < backend.max_access:
        backend.max_access = spec.access
    quantize = spec.options.get("quantize")
    billed = backend if hasattr(backend, "spend") else None  # an API model: light to keep, and it bills
    name = spec.display + (f" ({quantize})" if quantize and quantize != "none" else "")
    context.current().models.append(LoadedModel(name, backend.n_params(), backend.usage, billed))
    return backend


def loaded_models() -> list[LoadedModel]:
    """Each model this cell loaded through ``load_backend`` (or entered with ``context.current().ledger_usage``), in order."""
    return list(context.current().models)
