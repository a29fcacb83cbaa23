"""The library's layout, as ``t2i_lib/__init__.py`` describes it, checked from the source.

- every top-level module and package of ``t2i_lib`` is a concern named in ``LAYERS``, and the index of
  every package (its ``__init__`` docstring) lists every module in it;
- imports run one way, down the layers; there is no import cycle between modules, counting the imports
  deferred inside functions (a deferred import hides a cycle, it does not remove it);
- no private name (``_x``) is imported across a module boundary;
- every test file is named after the module or package it tests.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import t2i_lib

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / "t2i_lib"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(LIB.rglob("*.py"))}


def _imports(path: Path) -> list[tuple[str, tuple[str, ...], int]]:
    """(module imported from, names, line) for every import of t2i_lib in the file, nested ones included."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.module and node.module.split(".")[0] == "t2i_lib":
                out.append((node.module, tuple(a.name for a in node.names), node.lineno))
        elif isinstance(node, ast.Import):
            out += [(a.name, (), node.lineno) for a in node.names if a.name.split(".")[0] == "t2i_lib"]
    return out


def _targets(module: str, names: tuple[str, ...]) -> set[str]:
    """The library modules an import statement loads (``from t2i_lib.x import sub`` loads ``t2i_lib.x.sub``)."""
    subs = {f"{module}.{n}" for n in names if f"{module}.{n}" in MODULES}
    return subs | ({module} if len(subs) < len(names) or not names else set())


def _concern(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


GRAPH = {m: set().union(*[_targets(mod, names) for mod, names, _ in _imports(p)] or [set()]) - {m}
         for m, p in MODULES.items()}


def test_every_concern_is_in_the_layers_and_each_once():
    named = [c for layer in t2i_lib.LAYERS for c in layer]
    assert len(named) == len(set(named)), f"a concern appears twice in LAYERS: {named}"
    present = {p.stem if p.is_file() else p.name for p in LIB.iterdir()
               if (p.suffix == ".py" and p.stem != "__init__") or (p.is_dir() and (p / "__init__.py").exists())}
    assert present == set(named), (f"t2i_lib's top level and LAYERS differ: only in the tree "
                                   f"{sorted(present - set(named))}, only in LAYERS {sorted(set(named) - present)}")


def test_imports_run_down_the_layers():
    rank = {c: i for i, layer in enumerate(t2i_lib.LAYERS) for c in layer}
    bad = []
    for m, path in MODULES.items():
        for mod, names, line in _imports(path):
            for target in _targets(mod, names):
                a, b = _concern(m), _concern(target)
                if b and a and a != b and rank[b] >= rank[a]:
                    bad.append(f"{path.relative_to(ROOT)}:{line}: {a} (layer {rank[a]}) imports {target} "
                               f"({b}, layer {rank[b]})")
    assert not bad, "imports against the layer order:\n" + "\n".join(bad)


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_no_import_cycles_between_modules():
    # A package's __init__ re-exports from its own modules; those edges point down into the package and are
    # not dependencies of the modules on each other, so they are left out.
    graph = {m: {t for t in deps if not (MODULES[m].name == "__init__.py" and t.startswith(m + "."))}
             for m, deps in GRAPH.items()}
    cycle = _find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_imports_are_absolute():
    # A module reads the same wherever it moves, and the checks above see every import of the library.
    relative = [f"{p.relative_to(ROOT)}:{n.lineno}" for p in MODULES.values()
                for n in ast.walk(ast.parse(p.read_text())) if isinstance(n, ast.ImportFrom) and n.level]
    assert not relative, "relative imports (write from t2i_lib.x import y): " + ", ".join(relative)


def test_the_cycle_finder_finds_a_cycle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_private_name_crosses_a_module_boundary():
    bad = [f"{p.relative_to(ROOT)}:{line}: imports {', '.join(n for n in names if n.startswith('_'))} from {mod}"
           for m, p in MODULES.items() for mod, names, line in _imports(p)
           if mod != m and any(n.startswith("_") and n != "__version__" for n in names)]
    assert not bad, "private names imported across modules (make them public, or move them):\n" + "\n".join(bad)


@pytest.mark.parametrize("package", sorted(m for m, p in MODULES.items() if p.name == "__init__.py"))
def test_each_package_index_lists_its_modules(package):
    path = MODULES[package]
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    folder = path.parent
    children = sorted({p.stem for p in folder.glob("*.py") if p.stem != "__init__"}
                      | {p.name for p in folder.iterdir() if p.is_dir() and (p / "__init__.py").exists()})
    missing = [c for c in children if not re.search(rf"``{re.escape(c)}/?``", doc)]
    assert not missing, f"{path.relative_to(ROOT)}: its docstring (the folder's index) does not list {missing}"
    for line in doc.splitlines():
        if re.match(r"- ``\w+/?``", line) and package != "t2i_lib":
            assert re.search(r"Chapters? \d", line), f"{package}: index line names no chapter: {line!r}"


# Test files that check the project rather than one module.
PROJECT_TESTS = {"test_project", "test_layout", "test_colab_rehearsal", "test_book_browser", "test_nbval_keep"}


def test_each_test_file_is_named_after_what_it_tests():
    names = {m.removeprefix("t2i_lib.").replace(".", "_") for m in MODULES if m != "t2i_lib"}
    bad = [p.name for p in sorted((ROOT / "tests").glob("test_*.py"))
           if p.stem not in PROJECT_TESTS and p.stem.removeprefix("test_") not in names]
    assert not bad, (f"test files that match no module of t2i_lib (name them test_<package>_<module>.py, "
                     f"e.g. test_models_vqvae.py): {bad}")
