"""The package's import structure stays clean: imports run down the declared layers only, no import
cycles, no private names used across modules.

Both rules are checked on the source (ast), imports inside functions included: an import placed
in a function to dodge a cycle is still a cycle, and `other._name` couples two files as tightly
as `from other import _name`. Shared names are public (no leading underscore) in the module that
owns them.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("regbench", "hydra_plugins/regbench_plugins")
EXEMPT_PRIVATE: tuple[str, ...] = ()  # nothing is exempt

# The layers, lowest first (docs/architecture.md draws them): a module may import its own package and the
# packages of lower layers, never a higher one nor a sibling of its own layer, except in the catalogue,
# whose three packages meet in mixing augmentations (regularizers/mixing.py registers into data's pipeline).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("regbench.core", "regbench.conf"),  # conf: the YAML groups (an empty __init__ for importlib.resources)
    ("regbench.data", "regbench.models", "regbench.regularizers"),
    ("regbench.rules",),
    ("regbench.records",),
    ("regbench.engine", "regbench.report"),
    ("regbench.sweeps",),
    ("hydra_plugins.regbench_plugins",),
    ("regbench.cli",),
    ("regbench.api",),
    ("regbench",),  # the package's own __init__ only (its lazy attributes import api); a new top-level module
)                   # belongs to no layer and fails test_every_module_is_in_a_layer
MUTUAL_LAYERS = {1}  # indexes into LAYERS whose packages may import each other


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _type_checking_only(node: ast.AST, parents: dict) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imports(name: str, path: Path, known: dict[str, Path]) -> list[tuple[str, str | None, int]]:
    """(imported module, imported name or None, line) for every import of our own modules in a file."""
    tree = ast.parse(path.read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(tree):
        if _type_checking_only(node, parents):
            continue
        if isinstance(node, ast.Import):
            found += [(a.name, None, node.lineno) for a in node.names if a.name in known]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in known:
                    found.append((sub, None, node.lineno))
                elif base in known:
                    found.append((base, alias.name, node.lineno))
    return found


def module_aliases(path: Path, known: dict[str, Path]) -> dict[str, str]:
    """Local names bound to one of our modules (`from regbench import train` -> {"train": "regbench.engine.train"})."""
    aliases = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                if f"{node.module}.{a.name}" in known:
                    aliases[a.asname or a.name] = f"{node.module}.{a.name}"
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.asname and a.name in known:
                    aliases[a.asname] = a.name
    return aliases


def _private(attr: str) -> bool:
    return attr.startswith("_") and not attr.startswith("__")


def package_of(module: str) -> tuple[str, int] | None:
    """The declared package holding a module, and its layer (None: a module no layer declares)."""
    best = None
    for layer, packages in enumerate(LAYERS):
        for package in packages:
            inside = module == package or (package != "regbench" and module.startswith(package + "."))
            if inside and (best is None or len(package) > len(best[0])):
                best = (package, layer)
    return best


def test_every_module_is_in_a_layer():
    assert sorted(name for name in modules() if package_of(name) is None) == []


def test_imports_run_down_the_layers():
    known = modules()
    found = []
    for name, path in sorted(known.items()):
        (package, layer) = package_of(name)
        for module, _, line in imports(name, path, known):
            (to_package, to_layer) = package_of(module)
            sideways = to_layer == layer and to_package != package and layer not in MUTUAL_LAYERS
            if to_layer > layer or sideways:
                found.append(f"{path.relative_to(ROOT)}:{line}: {package} (layer {layer}) imports {module} "
                             f"(layer {to_layer})")
    assert found == []


def test_no_import_cycles():
    known = modules()
    graph = {name: sorted({dep for dep, _, _ in imports(name, path, known) if dep != name})
             for name, path in known.items()}
    cycles, state = [], {}  # state: 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in graph.get(node, []):
            if state.get(dep) == 1:
                cycles.append(" -> ".join([*path[path.index(dep):], dep]))
            elif dep not in state:
                visit(dep, [*path, dep])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_no_private_names_across_modules():
    known = modules()
    found = []
    for name, path in sorted(known.items()):
        if name.startswith(EXEMPT_PRIVATE):
            continue
        for module, imported, line in imports(name, path, known):
            if imported and _private(imported) and module != name:
                found.append(f"{path.relative_to(ROOT)}:{line}: from {module} import {imported}")
        aliases = module_aliases(path, known)
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and _private(node.attr) and aliases[node.value.id] != name):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {aliases[node.value.id]}.{node.attr}")
    assert found == []


def test_the_checks_see_a_cycle_and_a_private_import(tmp_path, monkeypatch):
    """The two rules above really fire: a tiny package with both faults."""
    pkg = tmp_path / "regbench"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from regbench.b import thing\n")
    (pkg / "b.py").write_text("def f():\n    from regbench import a\n    return a._hidden\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGES", ("regbench",))
    known = modules()
    assert ("regbench.b", "thing", 1) in imports("regbench.a", pkg / "a.py", known)
    assert ("regbench.a", None, 2) in imports("regbench.b", pkg / "b.py", known)
    monkeypatch.setattr(sys.modules[__name__], "LAYERS", (("regbench.a",), ("regbench.b",), ("regbench",)))
    for check in (test_no_import_cycles, test_no_private_names_across_modules, test_imports_run_down_the_layers):
        try:
            check()
        except AssertionError as exc:
            assert "regbench.a" in str(exc) or "_hidden" in str(exc) or "imports regbench.b" in str(exc)
        else:
            raise AssertionError(f"{check.__name__} did not fire")


def test_test_modules_are_loaded_once():
    """pytest loads tests/*.py as top-level modules (`conftest`, `test_report`); importing one again as
    `tests.conftest` runs it a second time, with its own copy of every global (the cache folder, fixtures'
    state). Test files import each other by the top-level name."""
    import sys

    twice = sorted(name for name in sys.modules if name.startswith("tests.") and name[len("tests."):] in sys.modules)
    assert twice == []


MAX_ENGINE_FUNCTION_LINES = 80  # the engine is read top to bottom: a step does one thing (docs/architecture.md)


def test_engine_functions_are_short():
    long = []
    for path in sorted((ROOT / "regbench" / "engine").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_ENGINE_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.name} has {lines} lines")
    assert not long, "\n".join(long)
