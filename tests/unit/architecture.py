"""The package's import graph, read from its source with ``ast`` (no import runs): which
module imports which, to which package each belongs, and on which floor that package is.

Used by ``test_architecture`` (the rules) and by tests that pin one module as pure.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

PACKAGE = "vault_inject"
PACKAGE_DIR = Path(__file__).resolve().parents[2] / "src" / PACKAGE

# Floors, top down. A module may import modules of its own package and of any package on a
# lower floor; never one on its own floor or above. "face" is the top-level __init__ and
# __main__ (``from vault_inject import Secrets``, ``python -m vault_inject``); "base" the
# top-level modules everything shares (errors, refs, model, log, fanout, _face, _version).
FLOORS: tuple[tuple[str, ...], ...] = (
    ("face",),
    ("cli",),
    ("loop", "runtime"),
    ("client",),
    ("process", "render"),
    ("files", "observe"),
    ("config",),
    ("base",),
)
FLOOR = {package: index for index, packages in enumerate(FLOORS) for package in packages}


@dataclass(frozen=True)
class Import:
    """One import statement's target: the module it loads, and whether it runs only for
    type checkers (under ``if TYPE_CHECKING:``)."""

    target: str
    type_only: bool


def module_name(path: Path, root: Path = PACKAGE_DIR) -> str:
    """``client/vault.py`` -> ``client.vault``; ``errors.py`` -> ``errors``."""
    return ".".join(path.relative_to(root).with_suffix("").parts)


def modules(root: Path = PACKAGE_DIR) -> list[str]:
    """Every module of the package, by dotted name below ``vault_inject``."""
    return sorted(module_name(path, root) for path in root.rglob("*.py"))


def package_of(module: str) -> str:
    """The package a module belongs to (``client.vault`` -> ``client``)."""
    if "." in module:
        return module.split(".")[0]
    return "face" if module in ("__init__", "__main__") else "base"


def source_of(module: str, root: Path = PACKAGE_DIR) -> str:
    """The module's source text."""
    return (root / (module.replace(".", "/") + ".py")).read_text()


def _walk(tree: ast.AST, type_only: bool = False) -> Iterator[tuple[ast.AST, bool]]:
    """Every node, with whether it sits under ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for child in node.body:
                yield child, True
                yield from _walk(child, True)
            for child in node.orelse:
                yield child, type_only
                yield from _walk(child, type_only)
            continue
        yield node, type_only
        yield from _walk(node, type_only)


def _resolve(module: str, level: int, name: str | None) -> str:
    """The absolute dotted name a relative import of ``module`` reaches."""
    here = [PACKAGE, *module.split(".")[:-1]]  # the importing module's package
    base = here[: len(here) - (level - 1)]
    return ".".join([*base, *([name] if name else [])])


def _own(absolute: str, root: Path) -> str | None:
    """Our module for an absolute name (a package means its ``__init__``), or None."""
    parts = absolute.split(".")
    if parts[0] != PACKAGE:
        return None
    rel = parts[1:]
    if rel and (root.joinpath(*rel).with_suffix(".py")).is_file():
        return ".".join(rel)
    if root.joinpath(*rel, "__init__.py").is_file():
        return ".".join([*rel, "__init__"])
    return None


@cache
def imports_of(module: str, root: Path = PACKAGE_DIR) -> frozenset[Import]:
    """Everything ``module`` imports anywhere in its source: our modules by dotted name,
    other packages by their top-level name."""
    tree = ast.parse(source_of(module, root))
    found: set[Import] = set()
    for node, type_only in _walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                own = _own(alias.name, root)
                found.add(Import(own or alias.name.split(".")[0], type_only))
        elif isinstance(node, ast.ImportFrom):
            absolute = _resolve(module, node.level, node.module) if node.level else node.module or ""
            own = _own(absolute, root)
            if own is None:
                found.add(Import(absolute.split(".")[0], type_only))
                continue
            for alias in node.names:  # `from ..client import auth` names a module
                found.add(Import(_own(f"{absolute}.{alias.name}", root) or own, type_only))
    return frozenset(found)


def own_imports(module: str, root: Path = PACKAGE_DIR) -> set[str]:
    """Our modules that ``module`` imports."""
    known = set(modules(root))
    return {i.target for i in imports_of(module, root) if i.target in known}


def third_party(module: str, *, runtime_only: bool = True) -> set[str]:
    """Top-level names of other packages (stdlib included) ``module`` imports; by default
    only those that run (not under ``if TYPE_CHECKING:``)."""
    known = set(modules())
    return {
        i.target for i in imports_of(module) if i.target not in known and not (runtime_only and i.type_only)
    }


def transitive_third_party(module: str) -> set[str]:
    """Other packages ``module`` loads, following our own modules' runtime imports."""
    known = set(modules())
    seen, todo, result = {module}, [module], set()
    while todo:
        current = todo.pop()
        for found in imports_of(current):
            if found.type_only:
                continue
            if found.target not in known:
                result.add(found.target)
            elif found.target not in seen:
                seen.add(found.target)
                todo.append(found.target)
    return result


def upward_imports(root: Path = PACKAGE_DIR) -> list[str]:
    """Every import of a module on its own floor or above (another package), as text."""
    wrong = []
    for module in modules(root):
        here = package_of(module)
        for target in sorted(own_imports(module, root)):
            there = package_of(target)
            if there != here and FLOOR[there] <= FLOOR[here]:
                wrong.append(f"{module} ({here}) imports {target} ({there})")
    return wrong


def circles(root: Path = PACKAGE_DIR) -> list[list[str]]:
    """Import circles among our modules (any import, type-only and deferred ones too)."""
    graph = {module: sorted(own_imports(module, root)) for module in modules(root)}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    found: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in graph[module]:
            if state.get(target) == 1:
                found.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in graph:
        if module not in state:
            visit(module, [module])
    return found
