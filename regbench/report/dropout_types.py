"""What a report needs to know of each built-in dropout type (its colour, its rate keys), read from
the source files of regbench/regularizers/ without importing them.

Importing the dropout registry imports torch (1.5-2 s, more than all the report's tables), and a
report of run files needs nothing else from it. The spec classes declare these facts as literal
class attributes (`name = "none"`, `colour = "#4d4d4d"`, `rate_keys = ()`), so Python's own parser
reads them; no library does this for us. A type declared any other way, or not in the package (a
plugin), is left out here and looked up in the registry as before (table.dropout_spec);
tests/test_report_speed.py checks that both give the same facts for every registered type.
"""

from __future__ import annotations

import ast
import functools
import importlib
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "regularizers"  # regbench/regularizers, not imported
FACTS = ("name", "colour", "rate_keys")  # the class attributes read
TORCH_FREE = ("regbench.core.rates",)  # modules the spec files import constants from, safe to import here
UNKNOWN = object()  # an attribute whose value is not a literal (or an imported constant)


@dataclass(frozen=True)
class DeclaredType:
    """The part of a DropoutSpec a report reads (same attribute names)."""

    name: str
    colour: str | None
    rate_keys: tuple[str, ...]


def _value(node: ast.expr, constants: dict[str, object]) -> object:
    if isinstance(node, ast.Name):
        return constants.get(node.id, UNKNOWN)
    try:
        return ast.literal_eval(node)
    except ValueError:
        return UNKNOWN


def _constants(tree: ast.Module) -> dict[str, object]:
    """Module-level literals, and names imported from the regbench modules that import no torch."""
    constants: dict[str, object] = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module in TORCH_FREE:
            module = importlib.import_module(node.module)
            constants |= {a.asname or a.name: getattr(module, a.name, UNKNOWN) for a in node.names}
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            constants[node.targets[0].id] = _value(node.value, constants)
    return constants


def _class_facts(node: ast.ClassDef, constants: dict[str, object]) -> dict[str, object]:
    facts: dict[str, object] = {}
    for stmt in node.body:
        target, value = None, None
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            target, value = stmt.targets[0], stmt.value
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            target, value = stmt.target, stmt.value
        if isinstance(target, ast.Name) and target.id in FACTS:
            facts[target.id] = _value(value, constants)
    return facts


@functools.cache
def declared_types() -> dict[str, DeclaredType]:
    """name -> facts of every `@register`ed spec class whose facts are all literal (or inherited literals)."""
    classes: dict[str, tuple[list[str], dict[str, object], bool]] = {}  # class -> (bases, facts, registered)
    for path in sorted(PACKAGE.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        constants = _constants(tree)
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                bases = [b.id for b in node.bases if isinstance(b, ast.Name)]
                registered = any(isinstance(d, ast.Name) and d.id == "register" for d in node.decorator_list)
                classes[node.name] = (bases, _class_facts(node, constants), registered)

    def fact(cls: str, key: str) -> object:
        bases, facts, _ = classes.get(cls, ([], {}, False))
        if key in facts:
            return facts[key]
        inherited = (fact(base, key) for base in bases if base in classes)
        return next((v for v in inherited if v is not UNKNOWN), UNKNOWN)

    found: dict[str, DeclaredType] = {}
    for cls, (_, _, registered) in classes.items():
        values = [fact(cls, key) for key in FACTS]
        if registered and UNKNOWN not in values and isinstance(values[0], str):
            found[values[0]] = DeclaredType(*values)
    return found
