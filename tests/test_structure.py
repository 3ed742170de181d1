"""The layering of issue 43, measured by an AST walk of the package (tests/structure.py): folders import
downward only (core → backends → methods → reports → benchmarks), no import circle (function-level
imports counted), and package imports sit at module level."""
from __future__ import annotations

import structure


def test_folders_import_downward_only() -> None:
    modules = structure.scan()
    up = structure.upward(modules)
    assert not up, "imports from a lower layer to a higher one: " + "; ".join(f"{a} -> {b}" for a, b, _ in up)
    assert not structure.folder_pairs(modules)


def test_no_import_circle_with_function_level_imports_counted() -> None:
    assert structure.circles(structure.scan()) == []


def test_package_imports_at_module_level() -> None:
    inside = [(m.name, t) for m in structure.scan().values() for t, top in m.imports if not top]
    assert not inside, f"function-level imports of the package's own modules: {inside}"


def test_the_walk_sees_a_layer_violation(tmp_path, monkeypatch) -> None:
    """The check can fail: a core module importing a method is reported."""
    pkg = tmp_path / "pkg"
    for folder, text in {"core": "from boxbench.methods.m import X\n", "methods": "X = 1\n"}.items():
        (pkg / folder).mkdir(parents=True)
        (pkg / folder / "__init__.py").write_text("")
        (pkg / folder / ("c.py" if folder == "core" else "m.py")).write_text(text)
    monkeypatch.setattr(structure, "ROOT", pkg)
    modules = structure.scan()
    assert structure.upward(modules) == [("boxbench.core.c", "boxbench.methods.m", True)]


def test_no_module_imports_another_modules_private_name() -> None:
    assert structure.private_imports() == []


def test_no_function_takes_more_than_six_positional_parameters() -> None:
    assert structure.many_positional() == []
