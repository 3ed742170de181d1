"""The one way a typed record (a method's params, a suite's settings) is checked field by field."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from boxbench.core.errors import UserError

T = TypeVar("T")


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
