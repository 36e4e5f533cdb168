"""The package's import structure: no import circles (counting imports inside functions too) and no
arrow from a lower layer to an upper one (cli -> training/inference -> models/data ->
evaluation/codecs -> keypoints/geometry). Read from the source with ``ast``; nothing is imported."""

from __future__ import annotations

import ast
from pathlib import Path

import wholebody

ROOT = Path(wholebody.__file__).parent
#: Layer of each top-level module or package (higher imports lower, never the reverse).
LAYERS = {"cli": 5, "training": 4, "inference": 4, "datatools": 4, "models": 3, "data": 3, "viz": 3,
          "evaluation": 2, "codecs": 2, "keypoints": 1, "geometry": 1, "images": 1, "io_utils": 1, "cocowb": 1, "column_file": 1,
          "column_cache": 1, "_lazy": 1, "conf": 1}


def _modules() -> dict[str, tuple[Path, bool]]:
    mods = {}
    for p in sorted(ROOT.rglob("*.py")):
        parts = list(p.relative_to(ROOT.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        mods[".".join(parts[:-1] if is_pkg else parts)] = (p, is_pkg)
    return mods


def _imports(name: str, path: Path, is_pkg: bool, mods: dict) -> set[str]:
    """Modules of the package that ``name`` imports anywhere in its file (not under TYPE_CHECKING)."""
    out: set[str] = set()

    def visit(node: ast.AST) -> None:
        for ch in ast.iter_child_nodes(node):
            if isinstance(ch, ast.If) and "TYPE_CHECKING" in ast.unparse(ch.test):
                continue
            if isinstance(ch, ast.Import):
                out.update(a.name for a in ch.names if a.name in mods)
            elif isinstance(ch, ast.ImportFrom):
                if ch.level:
                    pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                    pkg = pkg[: len(pkg) - (ch.level - 1)]
                    base = ".".join(pkg + ([ch.module] if ch.module else []))
                else:
                    base = ch.module or ""
                for a in ch.names:
                    sub = f"{base}.{a.name}"
                    out.add(sub if sub in mods else base)
            visit(ch)

    visit(ast.parse(path.read_text()))
    return {m for m in out if m in mods and m != name}


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {n: _imports(n, p, pk, mods) for n, (p, pk) in mods.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
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
                found.append(sorted(comp))

    for v in graph:
        if v not in index:
            strong(v)
    return found


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


def test_no_import_circles():
    assert _cycles(_graph()) == []


def test_no_upward_imports():
    graph = _graph()
    up = [f"{a} -> {b}" for a in sorted(graph) for b in sorted(graph[a])
          if _layer(a) is not None and _layer(b) is not None and _layer(b) > _layer(a)]
    assert up == []


def test_every_top_level_module_has_a_layer():
    tops = {m.split(".")[1] for m in _modules() if m.count(".") >= 1} - {"resources"}
    assert tops <= set(LAYERS) | {"__main__"}, tops - set(LAYERS)


def test_the_check_sees_a_circle():
    """The checker itself: a two-module circle and an upward arrow are found."""
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]
    assert _layer("wholebody.cli.train") > _layer("wholebody.models.zoomnet")
