"""The package's imports flow one way: errors -> io -> model -> core -> training -> CLI / napari.

Read from the source with :mod:`ast` (function-level imports included), so a cycle or an
upward import fails here before it can bite at import time.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "napari_fcnseg"
#: The layers, lowest first; everything else (cli, _qt, widgets, the manifest's modules) is on top.
LAYERS = ("errors", "io", "model", "core", "training")
GUI_PACKAGES = ("qtpy", "napari", "magicgui", "superqt", "PyQt5", "PyQt6", "PySide2", "PySide6")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(imports of napari_fcnseg modules, imports of other top-level packages) per module."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    inside: dict[str, set[str]] = defaultdict(set)
    outside: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if target.split(".")[0] != "napari_fcnseg":
                    outside[name].add(target.split(".")[0])
                    continue
                hits = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in modules]
                inside[name].update(hits or [target])
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    top = alias.name.split(".")[0]
                    (inside[name] if top == "napari_fcnseg" else outside[name]).add(
                        alias.name if top == "napari_fcnseg" else top
                    )
    return inside, outside


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else len(LAYERS)


def test_no_upward_imports():
    inside, _ = _imports()
    upward = [
        f"{a} -> {b}" for a, targets in inside.items() for b in targets if _layer(b) > _layer(a)
    ]
    assert not upward, "imports against the layering " + ", ".join(LAYERS) + ": " + str(upward)


def test_no_import_cycles():
    inside, _ = _imports()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in inside.get(v, ()):
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

    for module in list(inside):
        if module not in index:
            visit(module)
    assert not cycles, f"import cycles: {cycles}"


@pytest.mark.parametrize("layer", LAYERS)
def test_core_layers_import_no_gui(layer):
    _, outside = _imports()
    gui = {
        m: sorted(outside[m] & set(GUI_PACKAGES))
        for m in outside
        if _layer(m) == LAYERS.index(layer) and outside[m] & set(GUI_PACKAGES)
    }
    assert not gui, f"GUI imports below the napari layer: {gui}"


def test_the_checker_reads_the_package():
    """The rules above see real imports (a checker that found none would pass vacuously)."""
    inside, outside = _imports()
    assert "napari_fcnseg.io.images" in inside["napari_fcnseg.core.predict"]
    assert "torch" in outside["napari_fcnseg.model.unet"]
    assert "qtpy" in set().union(
        *(outside[m] for m in outside if m.startswith("napari_fcnseg._qt"))
    )
