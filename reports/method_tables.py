"""Tables that belong to one method (PEZ's search, Proxy-Tuning's parts): a registry from a method's
name to a function ``records -> list[Table]``, so the report adds them where that method has cells and
a plugin adds its own with ``@METHOD_TABLES.register("my_method")`` (or the entry-point group
``boxbench.method_tables``)."""

from __future__ import annotations

from typing import Callable

from boxbench.core.results import Record
from boxbench.core.registry import Registry
from boxbench.reports.table import Table

MethodTables = Callable[[list[Record]], list[Table]]

METHOD_TABLES: Registry[MethodTables] = Registry("method_table", {
    "pez": "boxbench.reports.pez:tables",
    "proxy_tuning": "boxbench.reports.proxy:tables",
})


def method_tables(records: list[Record]) -> list[Table]:
    """Each method's own tables, for the methods that have cells here (in the order they first appear)."""
    out: list[Table] = []
    for name in dict.fromkeys(r.method for r in records):
        if name in METHOD_TABLES:
            out += METHOD_TABLES.get(name)(records)
    return out
