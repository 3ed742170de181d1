"""What one cell's process shares among the models it loads, in one object instead of module globals:
whether API requests may be cached, the spending budget every API model draws on, and the ledger of
loaded models the compute estimate reads. The cell begins its own (``begin``) before any model loads;
everything else reads ``current()``. Each cell runs in its own process, so one current context per
process is all there is (threads of a cell, such as concurrent API requests, share it)."""

from __future__ import annotations

from dataclasses import dataclass, field

from boxbench.backends.budget import Budget
from boxbench.core.backend import Backend, Usage


@dataclass
class LoadedModel:
    """A model a cell used: its display name, parameter count, its Usage, and the backend where it bills (an API)."""

    name: str
    n_params: int | None
    usage: Usage
    billed: Backend | None = None


@dataclass
class CellContext:
    """One cell's shared state: ``cache`` (settings.cache), ``budget`` (its caps and spend), ``models`` (the ledger)."""

    cache: bool = True
    cache_error: str | None = None  # why the request cache could not be used (the cell then ran without it)
    model_cache_error: str | None = None  # why a dequantised model could not be cached (the cell went on; the next load repeats it)
    budget: Budget = field(default_factory=Budget)
    models: list[LoadedModel] = field(default_factory=list)

    def ledger_usage(self, name: str, n_params: int | None) -> Usage:
        """The Usage of ``name`` in this cell's compute ledger, entered on first use: for a model a
        method runs outside ``load_backend`` (KATE's sentence encoder), whose forward tokens count too."""
        for entry in self.models:
            if entry.name == name:
                return entry.usage
        entry = LoadedModel(name, n_params, Usage())
        self.models.append(entry)
        return entry.usage


_CURRENT = CellContext()


def current() -> CellContext:
    """The running cell's context (a default one outside a cell: caching on, no caps)."""
    return _CURRENT


def begin(context: CellContext | None = None) -> CellContext:
    """Make ``context`` (default: a fresh one) this process's current context and return it."""
    global _CURRENT
    _CURRENT = context or CellContext()
    return _CURRENT
