"""The import rules of docs/architecture.md, checked on the code's own import statements (every
``import`` and ``from ... import`` in every module, those inside functions included)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "cnnx"

# area -> the areas it may import (its own included); "cnnx" itself (the version) is open to all
ALLOWED: dict[str, set[str]] = {
    "core": {"core"},
    "runtime": {"core", "runtime"},
    "serve": {"core", "runtime", "serve"},
    "train": {"core", "train"},
    "export": {"core", "train", "export"},
    "tools": {"core", "runtime", "train", "export", "tools"},
    "bench": {"core", "train", "export", "bench"},
    "testing": {"core", "runtime", "train", "testing"},
    "cli": {"core", "runtime", "serve", "train", "export", "tools", "bench", "cli"},
}
# The one arrow from the torch side into the edge runtime: an image-folder dataset is decoded
# with the runtime's own preprocessing recipe, so training and inference prepare a file alike.
# Generated non-digits and photographed digits for outlier exposure go through that same recipe, so
# the network sees them exactly as it will see a user's photo.
EXCEPTIONS = {("cnnx.train.data.folder", "cnnx.runtime.image"), ("cnnx.train.data.negatives", "cnnx.runtime.image")}
HEAVY = ("torch", "torchvision", "onnx")  # never imported, even lazily, where a device runs
TORCH_FREE = ("core", "runtime", "serve")


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts).removesuffix(".__init__")] = path
    return found


MODULES = _modules()


def _imports(name: str) -> tuple[set[str], set[str]]:
    """(cnnx modules, other top-level packages) that module ``name`` imports anywhere in its code."""
    ours, others = set(), set()
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from cnnx.x import y` names the module cnnx.x.y when there is one, else cnnx.x
            targets = [
                f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module for a in node.names
            ]
        else:
            continue
        for target in targets:
            (ours if target.split(".")[0] == "cnnx" else others).add(target)
    return ours - {name}, {t.split(".")[0] for t in others}


GRAPH = {name: _imports(name)[0] for name in MODULES}


def _area(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_no_import_cycles() -> None:
    """Tarjan's strongly connected components: any component of two or more modules is a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in GRAPH.get(v, ()):
            if w not in MODULES:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(MODULES):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_every_area_imports_only_what_it_may() -> None:
    wrong = []
    for name, targets in GRAPH.items():
        area = _area(name)
        if area not in ALLOWED:
            continue  # cnnx/__init__.py, cnnx/__main__.py
        for target in targets:
            if target == "cnnx" or _area(target) in ALLOWED[area] or (name, target) in EXCEPTIONS:
                continue
            wrong.append(f"{name} -> {target}")
    assert not wrong, "imports against docs/architecture.md: " + ", ".join(sorted(wrong))


def test_every_module_belongs_to_an_area() -> None:
    stray = [n for n in MODULES if _area(n) not in ALLOWED and n not in ("cnnx", "cnnx.__main__")]
    assert not stray, f"modules outside the areas of docs/architecture.md: {stray}"


@pytest.mark.parametrize("area", TORCH_FREE)
def test_edge_areas_never_import_torch_or_onnx(area: str) -> None:
    found = [
        f"{name} imports {pkg}" for name in MODULES if _area(name) == area for pkg in _imports(name)[1] if pkg in HEAVY
    ]
    assert not found, found


def test_the_checks_see_imports_inside_functions() -> None:
    """The rules would be empty words if lazy imports were missed: cnnx.cli.train imports the
    training loop inside its command, and cnnx.tools.modelfile imports torch inside a function."""
    assert "cnnx.train.loop" in GRAPH["cnnx.cli.train"]
    assert "torch" in _imports("cnnx.tools.modelfile")[1]
