"""The architecture, checked by parsing imports (STYLE: pure middle, one owner per kind of I/O)."""

from __future__ import annotations

import ast
import sys
from functools import cache
from pathlib import Path

import pytest

PACKAGE = "vault_inject"
PACKAGE_DIR = Path(__file__).resolve().parents[2] / "src" / PACKAGE
PURE_MODULES = (
    "config",
    "refs",
    "durations",
    "backoff",
    "render",
    "outputs",
    "debounce",
    "leases",
    "polling",
    "controller",
    "model",
    "actions",
    "splay",
    "health",
)
IO_PACKAGES = frozenset({"hvac", "click", "subprocess", "watchfiles", "psutil", "requests"})


def modules() -> list[str]:
    """Every module of the package, by short name (``config``, ``__main__``, ...)."""
    return sorted(path.stem for path in PACKAGE_DIR.glob("*.py"))


@cache
def imports_of(module: str) -> frozenset[str]:
    """Absolute dotted names ``module`` imports anywhere in its source (relative ones resolved)."""
    tree = ast.parse((PACKAGE_DIR / f"{module}.py").read_text(), filename=f"{module}.py")
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = PACKAGE if node.level else ""
            if node.module:
                base = f"{base}.{node.module}" if base else node.module
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return frozenset(found)


def top_levels(names: frozenset[str]) -> set[str]:
    """The top-level package of every imported name."""
    return {name.split(".")[0] for name in names}


def own_modules_imported_by(module: str) -> set[str]:
    """The package's own modules that ``module`` imports directly."""
    known = set(modules())
    own = set()
    for name in imports_of(module):
        parts = name.split(".")
        if parts[0] == PACKAGE and len(parts) > 1 and parts[1] in known:
            own.add(parts[1])
    return own


def transitive_imports(module: str) -> set[str]:
    """Top-level packages ``module`` loads, following the package's own modules."""
    seen, todo, result = {module}, [module], set()
    while todo:
        current = todo.pop()
        result |= top_levels(imports_of(current))
        for child in own_modules_imported_by(current) - seen:
            seen.add(child)
            todo.append(child)
    return result


def test_package_has_the_expected_modules() -> None:
    """The import checks below see the real package (guards against checking an empty dir)."""
    assert {"config", "refs", "render", "vault", "cli", "files", "child"} <= set(modules())


@pytest.mark.parametrize("module", PURE_MODULES)
def test_pure_modules_import_no_io_packages(module: str) -> None:
    """Pure modules import none of hvac, click, subprocess, watchfiles, psutil, requests."""
    assert top_levels(imports_of(module)) & IO_PACKAGES == set()


@pytest.mark.parametrize("module", PURE_MODULES)
def test_pure_modules_do_not_load_io_packages_through_our_modules(module: str) -> None:
    """Importing a pure module does not pull an I/O package in through another of our modules."""
    assert transitive_imports(module) & IO_PACKAGES == set()


@pytest.mark.parametrize("module", PURE_MODULES)
def test_pure_modules_do_not_read_os_environ(module: str) -> None:
    """Pure modules take the environment as an argument instead of reading os.environ."""
    source = (PACKAGE_DIR / f"{module}.py").read_text()
    tree = ast.parse(source)
    uses = [
        node
        for node in ast.walk(tree)
        if (
            isinstance(node, ast.Attribute)
            and node.attr in ("environ", "getenv")
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
        )
        or (
            isinstance(node, ast.ImportFrom)
            and node.module == "os"
            and any(a.name in ("environ", "getenv") for a in node.names)
        )
    ]
    assert uses == []


def test_nothing_imports_cli_except_the_entry_point() -> None:
    """Only the console-script entry imports vault_inject.cli (the CLI is the outermost layer)."""
    importers = {
        module
        for module in modules()
        if any(name == f"{PACKAGE}.cli" or name.startswith(f"{PACKAGE}.cli.") for name in imports_of(module))
    }
    assert importers == {"entry"}


@pytest.mark.parametrize("package", ["hvac", "requests", "urllib3"])
def test_only_transport_imports_http_packages(package: str) -> None:
    """transport.py is the only module that imports hvac, requests or urllib3 (vault.py holds
    the Vault operations on top of it)."""
    importers = {module for module in modules() if package in top_levels(imports_of(module))}
    assert importers == {"transport"}


def test_no_module_shadows_secrets_or_logging() -> None:
    """There is no secrets.py or logging.py in the package."""
    assert not (PACKAGE_DIR / "secrets.py").exists()
    assert not (PACKAGE_DIR / "logging.py").exists()


def test_no_module_shadows_any_stdlib_module() -> None:
    """No module in the package is named like a standard-library module."""
    clashes = {name for name in modules() if not name.startswith("__") and name in sys.stdlib_module_names}
    assert clashes == set()


def test_import_parser_resolves_relative_imports() -> None:
    """The import parser used above sees render's relative imports (so the checks can fail)."""
    assert f"{PACKAGE}.refs" in imports_of("render")
    assert "jinja2" in top_levels(imports_of("render"))
    assert "hvac" in top_levels(imports_of("transport"))
