"""The generic registry: lazy built-ins, decorators, clear errors for unknown names."""

from __future__ import annotations

import pytest

from boxbench.core.backend import Access, GreyView, WhiteView
from boxbench.core.errors import UserError
from boxbench.core.method import Method, NoParams, PromptArtifact
from boxbench.core.registry import Registry


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


def contract_problems(cls: type) -> list[str]:
    """What a method class breaks of the Method contract (empty when it keeps it)."""
    import dataclasses
    import inspect
    import typing

    from boxbench.core.backend import VIEWS
    from boxbench.core.method import FAMILIES, Method

    out = []
    if not cls.description:
        out.append("no description")
    if cls.family not in FAMILIES[cls.access] + ("baseline",):
        out.append(f"sub-class {cls.family!r} is not one of {cls.access.name}'s")
    out += [f"params.{f.name} has no default" for f in dataclasses.fields(cls.Params)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    params = list(inspect.signature(cls.tune).parameters.values())
    if [p.name for p in params] != ["self", "view", "task", "train", "dev", "params", "seed"]:
        out.append(f"tune{inspect.signature(cls.tune)} is not tune(self, view, *, task, train, dev, params, seed)")
    elif not all(p.kind is p.KEYWORD_ONLY for p in params[2:]):
        out.append("tune's arguments after the view are not keyword-only")
    view = typing.get_type_hints(cls.tune).get("view")
    if view is not VIEWS[cls.access]:
        out.append(f"tune's view is typed {getattr(view, '__name__', view)}, its access {cls.access.name} gives a {VIEWS[cls.access].__name__}")
    generic = next((typing.get_args(b)[0] for k in cls.__mro__ for b in getattr(k, "__orig_bases__", ())
                    if typing.get_origin(b) is Method and typing.get_args(b)), None)
    if generic is not VIEWS[cls.access]:
        out.append(f"Method[{getattr(generic, '__name__', generic)}, …] does not match access {cls.access.name}")
    return out


def test_every_method_keeps_the_method_contract():
    """The one conformance test every registered method runs: described, a sub-class of its access
    class, params with defaults, ``tune(view, *, task, train, dev, params, seed)``, and the view it is
    typed to tune through is exactly the view of the access it declares."""
    from boxbench.methods.registry import METHODS

    problems = {name: contract_problems(cls) for name, cls in METHODS.items()}
    assert len(problems) >= 17 and not any(problems.values()), {k: v for k, v in problems.items() if v}


def test_the_contract_check_sees_a_method_asking_more_than_its_access():
    class Sneaky(Method[WhiteView, NoParams]):
        name, access, description, family = "sneaky", Access.grey, "declares grey, tunes through a white view", "prompt"

        def tune(self, view: WhiteView, *, task, train, dev, params, seed) -> PromptArtifact:  # type: ignore[override]
            return PromptArtifact()

    class Positional(Method[GreyView, NoParams]):
        name, access, description, family = "positional", Access.grey, "old positional tune", "prompt"

        def tune(self, view: GreyView, task, train, dev, params, seed) -> PromptArtifact:  # type: ignore[override]
            return PromptArtifact()

    assert contract_problems(Sneaky) == ["tune's view is typed WhiteView, its access grey gives a GreyView",
                                         "Method[WhiteView, …] does not match access grey"]
    assert contract_problems(Positional) == ["tune's arguments after the view are not keyword-only"]


def test_a_plugin_that_is_not_a_method_is_refused_in_one_line():
    reg: Registry = Registry("method", {"dirname": "os.path:dirname"}, base=Method)
    with pytest.raises(UserError, match=r"^method 'dirname': dirname is not a Method; a method plugin must be a class deriving from boxbench.core.method.Method$"):
        reg.get("dirname")
    with pytest.raises(UserError, match="method 'thing': Thing is not a Method"):
        @reg.register("thing")
        class Thing:
            pass
