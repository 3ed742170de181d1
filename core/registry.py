"""One generic plugin registry (methods, backends, datasets, executors, report tables) and the
``--plugin FILE.py`` loader."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import sys
from pathlib import Path
from typing import Callable, Generic, Iterator, TypeVar

from boxbench.core.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> object, where an entry may be a lazy ``"module:attr"`` string.

    Entries come from ``register`` (decorator), from built-in lazy strings, and from the Python
    entry-point group ``boxbench.<kind>s`` so that third-party packages can add plugins.
    """

    def __init__(self, kind: str, builtins: dict[str, str] | None = None, base: type | None = None) -> None:
        self.kind = kind
        self.base = base  # entries must be subclasses of it (checked when registered and when loaded)
        self._entries: dict[str, T | str] = dict(builtins or {})
        self._entry_points_loaded = False

    def _checked(self, name: str, obj: T) -> T:
        """``obj`` itself, or a one-line UserError when the registry wants subclasses of ``base`` and it is none."""
        if self.base is not None and not (isinstance(obj, type) and issubclass(obj, self.base)):
            base = f"{self.base.__module__}.{self.base.__qualname__}"
            raise UserError(f"{self.kind} {name!r}: {getattr(obj, '__name__', repr(obj))} is not a {self.base.__name__}; "
                            f"a {self.kind} plugin must be a class deriving from {base}")
        return obj

    @property
    def group(self) -> str:
        return f"boxbench.{self.kind}s"

    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator: ``@registry.register("name")`` (default name: the object's ``name``)."""

        def deco(obj: T) -> T:
            key = name or getattr(obj, "name", None)
            if not key:
                raise ValueError(f"{self.kind} {obj!r} needs a name")
            self._entries[key] = self._checked(key, obj)
            return obj

        return deco

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for ep in importlib.metadata.entry_points(group=self.group):
            self._entries.setdefault(ep.name, ep.value)

    def names(self) -> list[str]:
        self._load_entry_points()
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        self._load_entry_points()
        return name in self._entries

    def get(self, name: str) -> T:
        """The registered object; an unknown name is a UserError listing the known ones."""
        self._load_entry_points()
        if name not in self._entries:
            known = ", ".join(self.names())
            raise UserError(f"unknown {self.kind} {name!r}; known {self.kind}s: {known}")
        entry = self._entries[name]
        if isinstance(entry, str):
            mod, _, attr = entry.partition(":")
            obj = self._checked(name, getattr(importlib.import_module(mod), attr))
            self._entries[name] = obj
            return obj
        return entry

    def items(self) -> Iterator[tuple[str, T]]:
        for n in self.names():
            yield n, self.get(n)


def load_plugin_file(path: str | Path) -> None:
    """Import a Python file so that its ``@register_*`` decorators run (``--plugin FILE.py``)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"plugin file {str(p)!r} not found; pass an existing .py file to --plugin")
    mod_name = f"boxbench_plugin_{abs(hash(str(p.resolve())))}"
    if mod_name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(mod_name, p)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # a broken plugin is the user's input
        del sys.modules[mod_name]
        raise UserError(f"plugin {str(p)!r} failed to import: {type(e).__name__}: {e}") from e
