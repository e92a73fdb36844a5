"""The architecture as rules per package, checked on the source's imports (``architecture``):
packages on floors with imports running one way, no circle, each package reached through
its face, each kind of I/O owned by one package, pure modules free of I/O."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.architecture import (
    FLOOR,
    PACKAGE,
    PACKAGE_DIR,
    circles,
    imports_of,
    modules,
    package_of,
    source_of,
    third_party,
    transitive_third_party,
    upward_imports,
)

PACKAGES = sorted({package_of(module) for module in modules()} - {"face", "base"})

# Which package owns each I/O library: nothing else imports it (type-only imports aside).
IO_OWNERS = {
    "hvac": {"client"},
    "requests": {"client"},
    "urllib3": {"client"},
    "jinja2": {"render"},
    "markupsafe": {"render"},
    "click": {"cli"},
    "watchfiles": {"loop"},
    "psutil": {"process", "observe"},  # observe reads the child's CPU and memory, never signals
    "prometheus_client": {"observe"},
    "subprocess": {"cli"},  # `inject dev` runs the bao binary (a server, not the app)
    "cryptography": {"files"},
    # sockets: the server connection (client), the endpoints and systemd's notify socket
    # (observe), the dev server's free port (cli)
    "socket": {
        "client",
        "observe",
        "cli",
    },  # the state file (files.sealed), loaded only when a state is configured
}
IO_PACKAGES = frozenset({"hvac", "click", "subprocess", "watchfiles", "psutil", "requests"})

# Decisions and values, per package: no I/O library (not even through our modules), no
# os.environ. A whole package (config) or the named modules of one.
PURE: dict[str, frozenset[str] | None] = {
    "config": None,  # every module
    "base": frozenset({"errors", "refs", "model", "identity"}),
    "client": frozenset({"leases", "backoff", "failover", "replies", "sshcert", "answers", "handover"}),
    "loop": frozenset({"debounce", "pending", "polling", "splay"}),
    "process": frozenset({"actions", "controller", "concealer"}),
    "observe": frozenset({"health", "slots", "wire", "sdnotify"}),
    "render": frozenset({"outputs", "renderer", "envcheck"}),
    "runtime": frozenset({"plan"}),
}


def pure_modules() -> list[str]:
    """Every module the PURE table names."""
    found = []
    for module in modules():
        package = package_of(module)
        if package not in PURE or module.endswith("__init__"):
            continue
        names = PURE[package]
        if names is None or module.split(".")[-1] in names:
            found.append(module)
    return found


# --- the floors ----------------------------------------------------------------------------


def test_the_package_is_laid_out_in_packages() -> None:
    """The checks below see the real package: its packages, and modules in each."""
    assert set(PACKAGES) == {
        "cli",
        "client",
        "config",
        "files",
        "loop",
        "observe",
        "process",
        "render",
        "runtime",
    }
    assert {"client.vault", "render.sandbox", "process.child", "files.write", "errors"} <= set(modules())


def test_every_package_is_on_a_floor() -> None:
    """A new package must be placed on a floor before anything can import it."""
    assert set(PACKAGES) | {"face", "base"} <= set(FLOOR)


def test_no_module_imports_its_own_floor_or_above() -> None:
    """Imports between packages run one way: down the floors (cli > loop, runtime > client >
    process, render > files, observe > config > base)."""
    assert upward_imports() == []


def test_no_import_circle_anywhere() -> None:
    """No module reaches itself through imports (type-only and deferred imports count)."""
    assert circles() == []


def planted(tmp_path: Path, module: str, line: str) -> Path:
    """A copy of the package with ``line`` added to ``module``."""
    copy = tmp_path / PACKAGE
    shutil.copytree(PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / (module.replace(".", "/") + ".py")
    target.write_text(target.read_text() + f"\n{line}\n")
    return copy


def test_a_planted_upward_import_is_found(tmp_path: Path) -> None:
    """The floor check can fail: config importing the command line is reported."""
    copy = planted(tmp_path, "config.settings", "from ..cli import app  # noqa")
    assert upward_imports(copy) == ["config.settings (config) imports cli.app (cli)"]


def test_a_planted_circle_is_found(tmp_path: Path) -> None:
    """The circle check can fail: errors importing refs (which imports errors) is reported."""
    copy = planted(tmp_path, "errors", "from .refs import Ref  # noqa")
    assert ["errors", "refs", "errors"] in circles(copy)


# --- faces ---------------------------------------------------------------------------------


def reaches_past_a_face(module: str) -> list[str]:
    """Names ``module`` imports from another package's inner module instead of its face
    (``from ..client.vault import VaultClient`` rather than ``from ..client import ...``);
    importing an inner module itself (``from ..files import write``) is allowed."""
    tree = ast.parse(source_of(module))
    here = package_of(module)
    wrong = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level and node.module:
            parts = node.module.split(".")
            there = parts[0] if len(parts) > 1 and (node.level == 2 or here in ("base", "face")) else None
            if there is not None and there != here:
                wrong.append(f"{module}: from {'.' * node.level}{node.module}")
    return wrong


@pytest.mark.parametrize("module", modules())
def test_other_packages_are_reached_through_their_face(module: str) -> None:
    """A package's names are taken from its ``__init__`` (its public face), so its inner
    modules can move without touching the packages that use it."""
    assert reaches_past_a_face(module) == []


def loaded_by(code: str) -> list[str]:
    """The I/O libraries (and our modules) in sys.modules after ``code``, in a fresh interpreter."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    names: list[str] = json.loads(result.stdout)
    return names


def test_importing_every_package_runs_none_of_its_modules() -> None:
    """Faces are lazy: importing all nine packages loads no I/O library and none of their
    inner modules (only the faces themselves and the shared base)."""
    loaded = loaded_by("".join(f"import {PACKAGE}.{package}\n" for package in PACKAGES))
    assert set(loaded) & (IO_PACKAGES | {"jinja2", "prometheus_client", "urllib3"}) == set()
    ours = {name.removeprefix(f"{PACKAGE}.") for name in loaded if name.startswith(f"{PACKAGE}.")}
    assert ours == set(PACKAGES) | {"_face", "_version", "errors"}


@pytest.mark.parametrize("package", PACKAGES)
def test_every_name_on_a_face_resolves(package: str) -> None:
    """Each name a face lists in __all__ is importable from it (the lazy table is not stale)."""
    face = __import__(f"{PACKAGE}.{package}", fromlist=["__all__"])
    assert face.__all__
    for name in face.__all__:
        assert getattr(face, name) is not None, name
    with pytest.raises(AttributeError):
        _ = face.no_such_name


@pytest.mark.parametrize("package", PACKAGES)
def test_no_name_on_a_face_is_also_one_of_its_modules(package: str) -> None:
    """Importing ``package.x`` sets ``x`` on the package, hiding a lazy name ``x`` of its face
    (``from ..client import release`` once got the module, not the function)."""
    inner = {module.rpartition(".")[2] for module in modules() if package_of(module) == package}
    face = __import__(f"{PACKAGE}.{package}", fromlist=["__all__"])
    assert set(face.__all__) & inner == set()


# --- who owns which I/O ----------------------------------------------------------------------


@pytest.mark.parametrize("module", modules())
def test_io_libraries_are_imported_by_their_owner_only(module: str) -> None:
    """hvac/requests/urllib3 only in client, jinja2 only in render, click only in cli,
    watchfiles only in loop, psutil in process (and observe's reads), subprocess only for
    cli's dev server."""
    here = package_of(module)
    wrong = {name for name in third_party(module) if name in IO_OWNERS and here not in IO_OWNERS[name]}
    assert wrong == set()


def test_the_ownership_check_can_fail() -> None:
    """client.adapter does import hvac, client.wire requests, render.sandbox jinja2 (so the check sees them)."""
    assert "hvac" in third_party("client.adapter")
    assert "requests" in third_party("client.wire")
    assert "jinja2" in third_party("render.sandbox")


def os_calls(module: str, names: frozenset[str], owners: tuple[str, ...] = ("os", "signal")) -> set[str]:
    """``os.NAME`` / ``signal.NAME`` attributes in ``module`` (and names imported from os/signal) in ``names``."""
    found = set()
    for node in ast.walk(ast.parse(source_of(module))):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in owners:
            if node.attr in names:
                found.add(node.attr)
        elif isinstance(node, ast.ImportFrom) and node.module in owners:
            found |= {alias.name for alias in node.names if alias.name in names}
    return found


# What spawns, signals or reaps a process.
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


@pytest.mark.parametrize("module", [m for m in modules() if package_of(m) != "process"])
def test_only_the_process_package_spawns_signals_or_reaps(module: str) -> None:
    """No package but process calls os.fork/exec*/kill/wait* (cli's dev server runs bao
    through subprocess, owned above)."""
    assert os_calls(module, PROCESS_CALLS) == set()


def test_the_process_check_can_fail() -> None:
    """process.child does call os.execvpe and os.killpg."""
    assert {"execvpe", "killpg"} <= os_calls("process.child", PROCESS_CALLS)


# What creates, replaces or changes a file or directory.
WRITE_CALLS = frozenset(
    {
        *("rename", "replace", "link", "symlink", "unlink", "remove", "rmdir", "mkdir", "makedirs"),
        *("chmod", "fchmod", "lchmod", "chown", "fchown", "lchown", "truncate", "ftruncate"),
        *("mkfifo", "mknod", "utime", "rmtree", "copy", "copyfile", "copy2", "copytree", "move"),
    }
)
# Where else a file is written or removed, and why: none of these is a destination.
WRITE_EXCEPTIONS = {
    "client.auth": {"unlink"},  # `remove_secret_id_file`: deletes the consumed approle secret_id file
    "cli.devserver": {"open", "rmtree"},  # the dev server's own 0600 state dir and token file
    "render.cachedir": {"open", "rename", "unlink"},  # inject's private template cache (entries)
}


def writes_in(module: str) -> set[str]:
    """The file-changing calls in ``module``: os/shutil writers, and open() in a writing mode."""
    found = os_calls(module, WRITE_CALLS, ("os", "shutil"))
    for node in ast.walk(ast.parse(source_of(module))):
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


@pytest.mark.parametrize("module", [m for m in modules() if package_of(m) != "files"])
def test_only_the_files_package_writes(module: str) -> None:
    """No package but files creates, renames, removes or chmods files (auth's secret_id
    removal, the dev server's own state and the template cache are the named exceptions)."""
    assert writes_in(module) - WRITE_EXCEPTIONS.get(module, set()) == set()


def test_the_write_check_can_fail() -> None:
    """files.tempfiles and files.safepath do rename and mkdir."""
    assert "replace" in writes_in("files.tempfiles")
    assert "mkdir" in writes_in("files.safepath")


# --- pure modules ------------------------------------------------------------------------------


def test_the_pure_table_names_real_modules() -> None:
    """Every module the PURE table names exists (a renamed module cannot drop out unnoticed)."""
    named = {f"{p}.{m}" if p != "base" else m for p, ms in PURE.items() if ms for m in ms}
    assert named <= set(modules())
    assert {"config.settings", "config.durations"} <= set(pure_modules())


@pytest.mark.parametrize("module", pure_modules())
def test_pure_modules_load_no_io_library(module: str) -> None:
    """A pure module imports no hvac, click, subprocess, watchfiles, psutil or requests,
    not even through another of our modules."""
    assert transitive_third_party(module) & IO_PACKAGES == set()


@pytest.mark.parametrize("module", pure_modules())
def test_pure_modules_do_not_read_os_environ(module: str) -> None:
    """Pure modules take the environment as an argument instead of reading os.environ."""
    assert os_calls(module, frozenset({"environ", "getenv"}), ("os",)) == set()


def test_only_the_package_entry_imports_the_command_line() -> None:
    """Nothing imports cli but cli itself and ``python -m vault_inject`` (the CLI is outermost)."""
    importers = {
        module
        for module in modules()
        if package_of(module) != "cli" and any(i.target.startswith("cli.") for i in imports_of(module))
    }
    assert importers == {"__main__"}


def test_no_module_shadows_a_standard_library_module() -> None:
    """No module or package is named like a standard-library module (``secrets``, ``token``,
    ``logging``...), wherever it sits."""
    names = {part for module in modules() for part in module.split(".") if not part.startswith("_")}
    assert names & set(sys.stdlib_module_names) == set()


# --- nothing of Python or a dependency is patched ---------------------------------------------

PATCH_HOOKS = ("meta_path", "path_hooks", "path_importer_cache", "_sre", "re._compiler", "dataclasses.exec")


def patches_in(module: str, root: Path = PACKAGE_DIR) -> list[str]:
    """Where ``module`` changes another module: an assignment to (or ``setattr`` / ``del``
    on) an attribute of a module it imported, or a mention of an import-system or compiler
    hook (``sys.meta_path``, ``_sre``, ``re._compiler``, ``dataclasses.exec``...)."""
    source = source_of(module, root)
    tree = ast.parse(source)
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level:
            imported |= {alias.asname or alias.name for alias in node.names}
    found = [f"{module}: mentions {hook}" for hook in PATCH_HOOKS if hook in source]
    for node in ast.walk(tree):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign | ast.Delete):
            targets = list(node.targets)
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("setattr", "delattr")
        ):
            first = node.args[0] if node.args else None
            if isinstance(first, ast.Name) and first.id in imported:
                found.append(f"{module}:{node.lineno}: {node.func.id}({first.id}, ...)")
        for target in targets:
            if (
                isinstance(target, ast.Attribute)
                and isinstance(target.value, ast.Name)
                and target.value.id in imported
            ):
                found.append(f"{module}:{node.lineno}: assigns {target.value.id}.{target.attr}")
    return found


def test_nothing_patches_python_or_a_dependency() -> None:
    """No module replaces a name in the standard library or a dependency, or touches the
    import system or the regex compiler: inject runs as root and PID 1."""
    assert [found for module in modules() for found in patches_in(module)] == []


def test_a_planted_patch_is_found(tmp_path: Path) -> None:
    """The patch check can fail: replacing ``dataclasses.field`` or hooking ``sys.meta_path`` is reported."""
    copy = planted(
        tmp_path, "log", "import dataclasses\ndataclasses.field = None\nsys.meta_path.insert(0, None)"
    )
    found = patches_in("log", copy)
    assert found[0] == "log: mentions meta_path"
    assert [line.split(": ", 1)[1] for line in found[1:]] == ["assigns dataclasses.field"]


def test_one_module_turns_the_garbage_collector_off_and_on() -> None:
    """Only cli.collector imports gc (the console script pauses the collector for start-up;
    it is resumed in one place, where the command's work begins)."""
    importers = {module for module in modules() if "gc" in third_party(module, runtime_only=False)}
    assert importers == {"cli.collector"}
