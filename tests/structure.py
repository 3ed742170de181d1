"""The package's import structure, measured with an AST walk (issue 43).

`python tests/structure.py` prints the figures the closing notes quote: upward folder arrows, import
circles (function-level imports counted), the longest function, the largest module and `Any` in the
plugin signatures. tests/test_structure.py asserts the layering on the same measurements.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "boxbench"
SKIP = {"tests", "results", "runs", "docs", ".venv", ".venv-vllm", ".ci", "boxbench.egg-info"}
# Layers, lowest first: a folder may import its own layer and the ones below it, never above.
LAYERS: list[set[str]] = [{"core"}, {"backends"}, {"methods"}, {"reports"}, {"benchmarks"}]
# The command line sits on top of everything (benchmarks/cli.py writes reports after a run).
TOP_MODULES = {"boxbench.benchmarks.cli"}


@dataclass
class Module:
    name: str
    path: Path
    lines: int
    imports: list[tuple[str, bool]] = field(default_factory=list)   # (module, at module level)
    functions: list[tuple[str, int]] = field(default_factory=list)  # (qualified name, lines)


def package_files() -> list[Path]:
    """The package's .py files (hidden folders such as a venv, and SKIP, pruned before descending)."""
    import os

    out = []
    for folder, dirs, files in os.walk(ROOT):
        if Path(folder) == ROOT:
            dirs[:] = [d for d in dirs if d not in SKIP]
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__pycache__")))
        out += [Path(folder) / f for f in files if f.endswith(".py")]
    return sorted(out)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([PACKAGE, *parts])


def _resolve(mod: str, node: ast.ImportFrom) -> list[str]:
    """Absolute names an ImportFrom brings in (a name may be a submodule or an attribute)."""
    if node.level:
        base = mod.split(".")[: -node.level]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    return [prefix] + [f"{prefix}.{a.name}" for a in node.names]


def scan() -> dict[str, Module]:
    modules: dict[str, Module] = {}
    for path in package_files():
        text = path.read_text()
        tree = ast.parse(text)
        name = module_name(path)
        name_for_rel = name + ".__init__" if path.name == "__init__.py" else name
        m = Module(name, path, len(text.splitlines()))

        def visit(node: ast.AST, prefix: str, at_top: bool) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    q = f"{prefix}{child.name}"
                    m.functions.append((q, (child.end_lineno or child.lineno) - child.lineno + 1))
                    visit(child, q + ".", False)
                elif isinstance(child, ast.ClassDef):
                    visit(child, f"{prefix}{child.name}.", at_top)
                elif isinstance(child, ast.Import):
                    m.imports += [(a.name, at_top) for a in child.names if a.name.startswith(PACKAGE)]
                elif isinstance(child, ast.ImportFrom):
                    names = _resolve(name_for_rel, child)
                    if names[0].startswith(PACKAGE):
                        m.imports += [(n, at_top) for n in names]
                else:
                    # `if TYPE_CHECKING:` imports are not run: they do not count
                    if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                        continue
                    visit(child, prefix, at_top)

        visit(tree, "", True)
        modules[name] = m
    # keep only imports naming a module of the package (an attribute import names its module)
    for m in modules.values():
        kept: list[tuple[str, bool]] = []
        for target, at_top in m.imports:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != m.name and (target, at_top) not in kept:
                kept.append((target, at_top))
        m.imports = kept
    return modules


def layer(name: str) -> int | None:
    if name in TOP_MODULES:
        return len(LAYERS)
    f = name.split(".")[1] if name.count(".") >= 1 else ""
    for i, group in enumerate(LAYERS):
        if f in group:
            return i
    return None   # a root module (boxbench/__init__.py)


def upward(modules: dict[str, Module]) -> list[tuple[str, str, bool]]:
    """Imports from a lower layer to a higher one (and from a layered module to an unlayered root one)."""
    out = []
    for m in modules.values():
        lm = layer(m.name)
        for target, at_top in m.imports:
            lt = layer(target)
            if lm is None:
                continue
            if lt is None or lt > lm:
                out.append((m.name, target, at_top))
    return out


def folder_pairs(modules: dict[str, Module]) -> set[tuple[str, str]]:
    """Folder pairs that import each other (function-level imports counted)."""
    edges = {(m.name.split(".")[1] if "." in m.name else "", t.split(".")[1] if "." in t else "")
             for m in modules.values() for t, _ in m.imports}
    return {(a, b) for a, b in edges if a < b and (b, a) in edges}


def circles(modules: dict[str, Module]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), function-level imports counted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w, _ in modules[v].imports:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in modules:
        if v not in index:
            strong(v)
    return out


def figures() -> dict[str, object]:
    modules = scan()
    imports = [(m.name, t, top) for m in modules.values() for t, top in m.imports]
    funcs = [(f"{m.name}.{q}", n) for m in modules.values() for q, n in m.functions]
    longest = max(funcs, key=lambda f: f[1])
    largest = max(modules.values(), key=lambda m: m.lines)
    return {
        "modules": len(modules),
        "internal imports": len(imports),
        "inside functions": sum(1 for *_, top in imports if not top),
        "upward imports": len(upward(modules)),
        "folder pairs importing each other": sorted(folder_pairs(modules)),
        "circles": circles(modules),
        "longest function": longest,
        "functions over 60 lines": sorted([f for f in funcs if f[1] > 60], key=lambda f: -f[1]),
        "largest module": (largest.name, largest.lines),
    }


if __name__ == "__main__":
    for key, value in figures().items():
        if isinstance(value, list) and value and isinstance(value[0], (list, tuple)):
            print(f"{key}: {len(value)}")
            for v in value:
                print(f"    {v}")
        else:
            print(f"{key}: {value}")
    print("upward imports:")
    for a, b, top in upward(scan()):
        print(f"    {a} -> {b}{'' if top else '  (in a function)'}")


def any_in_signatures(path: Path, classes: tuple[str, ...]) -> list[str]:
    """Parameters and returns typed ``Any`` in the methods of ``classes`` (the plugin seams)."""
    out = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ClassDef) and node.name in classes:
            for f in node.body:
                if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    args = f.args.posonlyargs + f.args.args + f.args.kwonlyargs + [a for a in (f.args.vararg, f.args.kwarg) if a]
                    out += [f"{node.name}.{f.name}({a.arg})" for a in args if a.annotation is not None and "Any" in ast.unparse(a.annotation)]
                    if f.returns is not None and "Any" in ast.unparse(f.returns):
                        out.append(f"{node.name}.{f.name} -> {ast.unparse(f.returns)}")
    return out


def private_imports() -> list[str]:
    """``from boxbench.X import _name``: a module reaching into another's private names."""
    out = []
    for path in package_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(PACKAGE):
                out += [f"{module_name(path)}: {node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
    return out


def many_positional(limit: int = 6) -> list[str]:
    """Functions taking more than ``limit`` positional parameters (self and cls not counted)."""
    out = []
    for path in package_files():
        for n in ast.walk(ast.parse(path.read_text())):
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
                pos = [a for a in n.args.posonlyargs + n.args.args if a.arg not in ("self", "cls")]
                if len(pos) > limit:
                    out.append(f"{module_name(path)}.{n.name} ({len(pos)})")
    return out
