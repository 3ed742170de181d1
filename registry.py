"""One generic plugin registry (methods, backends, datasets), the user-facing error type, and the
one way a typed record (a method's params, a suite's settings) is checked field by field."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import importlib.metadata
import importlib.util
import sys
from pathlib import Path
from typing import Any, Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class UserError(Exception):
    """A problem with the user's input: printed as one line, exit code 2, never a traceback."""


class Registry(Generic[T]):
    """Name -> object, where an entry may be a lazy ``"module:attr"`` string.

    Entries come from ``register`` (decorator), from built-in lazy strings, and from the Python
    entry-point group ``boxbench.<kind>s`` so that third-party packages can add plugins.
    """

    def __init__(self, kind: str, builtins: dict[str, str] | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, T | str] = dict(builtins or {})
        self._entry_points_loaded = False

    @property
    def group(self) -> str:
        return f"boxbench.{self.kind}s"

    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator: ``@registry.register("name")`` (default name: the object's ``name``)."""

        def deco(obj: T) -> T:
            key = name or getattr(obj, "name", None)
            if not key:
                raise ValueError(f"{self.kind} {obj!r} needs a name")
            self._entries[key] = obj
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
            obj = getattr(importlib.import_module(mod), attr)
            self._entries[name] = obj
            return obj
        return entry

    def items(self) -> Iterator[tuple[str, T]]:
        for n in self.names():
            yield n, self.get(n)


def check_fields(record: Any, where: str = "params") -> None:
    """Check a dataclass record's values against its fields' metadata — ``min`` (at least), ``gt``
    (more than), ``max``, ``choices`` (allowed values) — and raise a UserError naming the field
    (``WHERE.FIELD: ...``) and what is allowed. Call it from ``__post_init__`` so a record built
    in code is checked the same way as one read from a suite."""
    for f in dataclasses.fields(record):
        meta, val = f.metadata, getattr(record, f.name)
        if val is None and meta.get("nullable"):
            continue
        choices = meta.get("choices")
        if choices is not None and val not in choices:
            raise UserError(f"{where}.{f.name}: {val!r} is not one of {', '.join(map(str, choices))}")
        if not isinstance(val, (int, float)) or isinstance(val, bool):
            continue
        low, gt, high = meta.get("min"), meta.get("gt"), meta.get("max")
        if low is not None and val < low:
            bound = "0 or more" if low == 0 else f"at least {low}"
            raise UserError(f"{where}.{f.name}: must be {bound}, got {val!r}")
        if gt is not None and val <= gt:
            raise UserError(f"{where}.{f.name}: must be {'positive' if gt == 0 else f'more than {gt}'}, got {val!r}")
        if high is not None and val > high:
            raise UserError(f"{where}.{f.name}: must be at most {high}, got {val!r}")


_TYPES = {"int": int, "float": float, "bool": bool, "str": str}  # field annotations checked (others: the record's own check)


def typed_record(cls: type[T], values: dict[str, Any], where: str, owner: str = "") -> T:
    """``cls`` (a dataclass) built from a suite mapping, every field checked: an unknown name (the
    known ones listed), the type (the field's annotation int, float, bool or str, or its metadata
    ``type``; ``nullable`` allows null), then ``check_fields``'s range and allowed values. One line naming the field."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in values:
        if key not in fields:
            known = ", ".join(fields) or "none"
            raise UserError(f"{where}: {owner} has no parameter {key!r}; its parameters: {known}" if owner
                            else f"{where}: unknown field {key!r}; allowed fields: {', '.join(sorted(fields))}")
    for key, val in values.items():
        f = fields[key]
        kind = f.metadata.get("type") or _TYPES.get(str(f.type).replace(" | None", "").strip())
        if val is None and f.metadata.get("nullable"):
            continue
        if kind is bool and not isinstance(val, bool):
            raise UserError(f"{where}.{key}: expected true/false, got {val!r}")
        if kind in (int, float):
            if isinstance(val, bool) or not isinstance(val, (int, float)) or (kind is int and not isinstance(val, int)):
                raise UserError(f"{where}.{key}: expected {'a whole number' if kind is int else 'a number'}, got {val!r}")
        if kind is str and not isinstance(val, str):
            raise UserError(f"{where}.{key}: expected a string, got {val!r}")
    try:
        return cls(**values)
    except UserError as e:  # the record's own check, written as "params.FIELD: ..."
        msg = str(e)
        raise UserError(where + msg[len("params"):] if msg.startswith("params") else f"{where}: {msg}") from None
    except (TypeError, ValueError) as e:
        raise UserError(f"{where}: {e}") from None


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



def die_with_parent() -> None:
    """In a child process (``preexec_fn``): get SIGKILL when the parent dies, so no orphan is left."""
    import ctypes
    import signal

    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
