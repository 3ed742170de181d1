"""The generic registry: lazy built-ins, decorators, clear errors for unknown names."""

from __future__ import annotations

import pytest

from boxbench.core.registry import Registry
from boxbench.core.errors import UserError


def test_lazy_entries_and_decorator():
    reg: Registry = Registry("widget", {"path": "os.path:join"})
    assert reg.names() == ["path"]

    @reg.register("mine")
    class Mine:
        pass

    import os.path

    assert reg.get("path") is os.path.join and reg.get("mine") is Mine
    assert "mine" in reg and "other" not in reg
    with pytest.raises(UserError, match="unknown widget 'other'; known widgets: mine, path"):
        reg.get("other")


def test_methods_have_params_with_help_and_defaults():
    import dataclasses

    from boxbench.methods.registry import METHODS

    from boxbench.core.method import FAMILIES

    for name, cls in METHODS.items():
        assert cls.name == name and cls.description
        assert cls.family in FAMILIES[cls.access] + ("baseline",), f"{name}: sub-class {cls.family!r}"
        for f in dataclasses.fields(cls.Params):
            assert f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
