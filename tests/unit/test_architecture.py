"""The architecture, checked by parsing imports (STYLE: pure middle, one owner per kind of I/O)."""

from __future__ import annotations

import ast
import sys
from functools import cache
from pathlib import Path

import pytest

PACKAGE = "vault_inject"
PACKAGE_DIR = Path(__file__).resolve().parents[2] / "src" / PACKAGE
# Decisions and values: no I/O package, no os.environ, nothing I/O through our own modules.
PURE_MODULES = (
    "actions",
    "backoff",
    "config",
    "controller",
    "debounce",
    "durations",
    "errors",
    "health",
    "failover",
    "leases",
    "model",
    "outputs",
    "pending",
    "polling",
    "refs",
    "render",
    "runtime_plan",
    "splay",
)
# Every other module, with the I/O it owns or drives (a new module must be sorted here or above).
IO_MODULES = {
    "__init__": "the library's public names (Secrets reaches the server)",
    "__main__": "python -m vault_inject",
    "alone": "runs the child alone (signals, the process group) when nothing can change",
    "app": "composition root: builds the real collaborators",
    "apply": "re-render, write, check, roll back on a worker thread",
    "auth": "reads credential files, logs in",
    "child": "the only place that spawns, signals and reaps processes",
    "cli": "click, os.environ",
    "deadline": "helper threads and the watchdog that end HTTP attempts at their deadline",
    "dev": "inject dev: a dev server for the run",
    "devserver": "starts the bao binary (see test_only_child_spawns_processes)",
    "engine": "render state; re-renders through the server",
    "entry": "the console script",
    "fanout": "threads",
    "files": "the only writer of destinations",
    "inbox": "signals and the loop's queue",
    "lifecycle": "renews leases and the token on the server",
    "launch": "runs one command: config, logging, the app call, exit codes",
    "cachedir": "inject's private cache directory (trusted entries, atomic writes)",
    "compilecache": "the on-disk cache of compiled templates",
    "log": "handlers and the redaction filter",
    "observe": "the health/metrics HTTP listener",
    "readfile": "reads inject's own input files",
    "renewals": "runs lifecycle on a worker",
    "runtime": "the Secrets library object (os.environ, threads)",
    "runtime_connect": "the library's connection settings (env, config file)",
    "runtime_thread": "the library's background thread",
    "runtime_token": "the library's token refresh",
    "safepath": "directory-fd walks for files",
    "sandbox": "the Jinja sandbox and its memory/time budget (/proc/self/statm)",
    "sources": "poll timer, file watcher: change producers",
    "stats": "the loop's counters (signal names, clock)",
    "supervisor": "the loop",
    "tempfiles": "temp files and renames for files",
    "transport": "HTTP to the server",
    "vault": "the Vault operations over transport",
    "wiring": "builds and runs the long-running loop",
}
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


def test_every_module_is_sorted_into_pure_or_io() -> None:
    """Each module is either pure (checked below) or named with the I/O it owns: a new module cannot skip the pure checks unnoticed."""
    assert set(PURE_MODULES).isdisjoint(IO_MODULES)
    assert sorted({*PURE_MODULES, *IO_MODULES}) == modules()


# What spawns, signals or reaps a process: imports, and calls on os / signal.
PROCESS_PACKAGES = frozenset({"subprocess", "multiprocessing", "pty", "psutil"})
PROCESS_CALLS = frozenset(
    {
        *(
            "fork",
            "forkpty",
            "kill",
            "killpg",
            "system",
            "popen",
            "wait",
            "waitpid",
            "wait3",
            "wait4",
            "waitid",
        ),
        *("execv", "execve", "execvp", "execvpe", "execl", "execle", "execlp", "execlpe"),
        *("spawnv", "spawnve", "spawnvp", "spawnvpe", "spawnl", "spawnle", "spawnlp", "spawnlpe"),
        *("posix_spawn", "posix_spawnp", "pidfd_open", "pthread_kill"),
    }
)
# Where else it is allowed, and why.
PROCESS_EXCEPTIONS = {
    # `inject dev` runs the bao binary itself: a server for the run, not the app, and it is
    # never signalled by the loop (Popen.terminate on the way out, PDEATHSIG if inject dies).
    "devserver": {"subprocess"},
    # /metrics reads CPU and memory of the child's process tree at scrape time; never signals.
    "observe": {"psutil"},
}


def os_calls(module: str, names: frozenset[str], owners: tuple[str, ...] = ("os", "signal")) -> set[str]:
    """``os.NAME`` / ``signal.NAME`` attributes in ``module`` (and names imported from os/signal) in ``names``."""
    tree = ast.parse((PACKAGE_DIR / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in owners:
            if node.attr in names:
                found.add(node.attr)
        elif isinstance(node, ast.ImportFrom) and node.module in owners:
            found |= {alias.name for alias in node.names if alias.name in names}
    return found


@pytest.mark.parametrize("module", sorted(set(IO_MODULES) - {"child"}))
def test_only_child_spawns_processes(module: str) -> None:
    """No module but child imports subprocess/psutil or calls os.fork/exec*/kill/wait* (devserver's bao and observe's psutil reads are the named exceptions)."""
    allowed = PROCESS_EXCEPTIONS.get(module, set())
    assert (top_levels(imports_of(module)) & PROCESS_PACKAGES) - allowed == set()
    assert os_calls(module, PROCESS_CALLS) - allowed == set()


def test_child_is_where_processes_are_spawned() -> None:
    """The process check can fail: child.py does import psutil and call os.execvpe and os.killpg."""
    assert "psutil" in top_levels(imports_of("child"))
    assert {"execvpe", "killpg"} <= os_calls("child", PROCESS_CALLS)


# What creates, replaces or changes a file or directory.
WRITE_CALLS = frozenset(
    {
        *("rename", "replace", "link", "symlink", "unlink", "remove", "rmdir", "mkdir", "makedirs"),
        *("chmod", "fchmod", "lchmod", "chown", "fchown", "lchown", "truncate", "ftruncate"),
        *("mkfifo", "mknod", "utime", "rmtree", "copy", "copyfile", "copy2", "copytree", "move"),
    }
)
WRITERS = frozenset({"files", "safepath", "tempfiles"})
# Where else a file is written or removed, and why: none of these is a destination.
WRITE_EXCEPTIONS = {
    "auth": {"unlink"},  # `remove_secret_id_file`: deletes the consumed approle secret_id file
    "devserver": {"open", "rmtree"},  # the dev server's own 0600 state dir and token file
    # inject's own private cache dir (compiled templates, regexes, dataclass code; never a destination)
    "cachedir": {"makedirs", "open", "rename", "unlink"},
}


def writes_in(module: str) -> set[str]:
    """The file-changing calls in ``module``: os/shutil writers, and open() in a writing mode."""
    found = os_calls(module, WRITE_CALLS, ("os", "shutil"))
    tree = ast.parse((PACKAGE_DIR / f"{module}.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "open":
            mode = (
                node.args[1]
                if len(node.args) > 1
                else next((k.value for k in node.keywords if k.arg == "mode"), None)
            )
            if (
                isinstance(mode, ast.Constant)
                and isinstance(mode.value, str)
                and set(mode.value) & set("wax+")
            ):
                found.add("open")
        if isinstance(node, ast.Attribute) and node.attr in (
            "write_text",
            "write_bytes",
            "O_CREAT",
            "O_TRUNC",
        ):
            found.add(node.attr if node.attr.startswith("write") else "open")
    return found


@pytest.mark.parametrize("module", sorted({*PURE_MODULES, *IO_MODULES} - WRITERS))
def test_only_files_writes_destinations(module: str) -> None:
    """No module but files (and its helpers safepath, tempfiles) creates, renames, removes or chmods files (auth's secret_id removal and devserver's own state are the named exceptions)."""
    assert writes_in(module) - WRITE_EXCEPTIONS.get(module, set()) == set()


def test_files_is_where_destinations_are_written() -> None:
    """The write check can fail: tempfiles and safepath do rename and mkdir."""
    assert "replace" in writes_in("tempfiles")
    assert "mkdir" in writes_in("safepath")


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
    """Only the console-script entry imports vault_inject.cli.commands (the CLI is the outermost layer)."""
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
    assert f"{PACKAGE}.outputs" in imports_of("render")
    assert "jinja2" in top_levels(imports_of("render"))
    assert "hvac" in top_levels(imports_of("transport"))
