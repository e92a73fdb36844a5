"""The dataclass cache: a class built from stored code behaves exactly as one whose methods
``dataclasses`` compiled itself; an entry another user could have written, or one of the
wrong shape, is never used; only the command line installs it."""

from __future__ import annotations

import dataclasses
import inspect
import marshal
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import InitVar, dataclass, field, make_dataclass
from pathlib import Path
from types import CodeType, FunctionType
from typing import Any

import pytest

from tests.unit.cache_entries import only_a_private_entry_loads
from vault_inject import dataclasscache
from vault_inject.dataclasscache import DataclassCache


def define() -> list[type]:
    """Fresh classes: the decorator runs, and so compiles or looks up its text, at every call."""

    @dataclass
    class Plain:
        name: str
        port: int = 8200
        tags: list[str] = field(default_factory=list)
        secret: str = field(default="", repr=False, compare=False)

    @dataclass(frozen=True, order=True)
    class Frozen:
        path: str
        version: int | None = None

    @dataclass(slots=True, kw_only=True, unsafe_hash=True)
    class Slotted:
        a: int
        b: tuple[int, ...] = ()

    @dataclass(eq=False)
    class Posted:
        raw: InitVar[str]
        parsed: str = field(init=False)

        def __post_init__(self, raw: str) -> None:
            self.parsed = raw.upper()

    made = make_dataclass("Made", [("x", int), ("y", str, field(default="y"))], frozen=True)
    return [Plain, Frozen, Slotted, Posted, made]


ARGS: dict[str, list[tuple[tuple[Any, ...], dict[str, Any]]]] = {
    "Plain": [(("vault",), {}), (("vault",), {"port": 1, "tags": ["a"], "secret": "s"})],
    "Frozen": [(("secret/a",), {}), (("secret/a", 2), {})],
    "Slotted": [((), {"a": 1}), ((), {"a": 1, "b": (2, 3)})],
    "Posted": [(("raw",), {}), (("raw",), {})],
    "Made": [((1,), {}), ((1, "z"), {})],
}


def attempt(action: Any) -> object:
    """What ``action()`` gives, or the type and message of what it raises."""
    try:
        return action()
    except Exception as exc:  # the error itself is what is compared
        return (type(exc).__name__, str(exc))


def generated(cls: type) -> dict[str, tuple[object, ...]]:
    """The code of every method dataclasses made from text for ``cls``."""
    found = {}
    for name, value in vars(cls).items():
        function = inspect.unwrap(value) if callable(value) else None
        if isinstance(function, FunctionType) and function.__code__.co_filename == "<string>":
            code = function.__code__
            found[name] = (code.co_code, code.co_consts, code.co_names, code.co_varnames, code.co_qualname)
            found[name] += (code.co_firstlineno, function.__qualname__, function.__annotations__)
    return found


def behaviour(cls: type) -> list[object]:
    """What a class is and does, to compare two builds of it."""
    fields = [
        (f.name, f.type, f.default, f.default_factory, f.init, f.repr, f.compare, f.kw_only)
        for f in dataclasses.fields(cls)
    ]
    found: list[object] = [cls.__name__, fields, str(inspect.signature(cls)), generated(cls)]
    found += [getattr(cls, "__match_args__", None), getattr(cls, "__slots__", None), cls.__hash__ is None]
    (args1, kwargs1), (args2, kwargs2) = ARGS[cls.__name__]
    one, same, other = cls(*args1, **kwargs1), cls(*args1, **kwargs1), cls(*args2, **kwargs2)
    found += [
        repr(one),
        repr(other),
        one == same,
        one == other,
        vars(one) if hasattr(one, "__dict__") else None,
    ]
    found += [attempt(lambda: hash(one) == hash(same)), attempt(lambda: one < other)]
    found += [attempt(lambda: setattr(one, "extra", 1)), attempt(lambda: delattr(one, fields[0][0]))]
    return found


def built_alone() -> list[list[object]]:
    """Each class as dataclasses builds it without the cache."""
    assert "exec" not in vars(dataclasses)
    return [behaviour(cls) for cls in define()]


@pytest.fixture
def cache_dir(tmp_path: Path) -> Iterator[Path]:
    """A private cache directory; dataclasses calls the builtin exec again after the test."""
    directory = tmp_path / "cache"
    directory.mkdir(mode=0o700)
    try:
        yield directory
    finally:
        vars(dataclasses).pop("exec", None)


def install(directory: Path) -> DataclassCache:
    cache = DataclassCache.install({"INJECT_CACHE_DIR": str(directory)})
    assert cache is not None
    return cache


def fill(directory: Path) -> None:
    """A run that defines the test's classes and saves what it compiled."""
    cache = install(directory)
    define()
    cache.close()


def entry_of(directory: Path) -> Path:
    return directory / dataclasscache.entry_name()


def nested_code(code: CodeType) -> Iterator[CodeType]:
    """``code`` and every code object among its constants, at any depth."""
    yield code
    for const in code.co_consts:
        if isinstance(const, CodeType):
            yield from nested_code(const)


def test_stored_code_gives_the_same_classes(cache_dir: Path) -> None:
    """Compiled once (stored at save), then built from the entry: the same fields, defaults,
    default factories, signature and annotations, repr, eq, hash, order, frozen errors,
    slots and __match_args__, the same method code; nothing new to store the second time."""
    expected = built_alone()
    first = install(cache_dir)
    assert [behaviour(cls) for cls in define()] == expected
    first.close()
    assert "exec" not in vars(dataclasses)
    second = install(cache_dir)
    classes = define()
    assert [behaviour(cls) for cls in classes] == expected
    assert second._entry.new == {}  # every text came from the entry
    stored = [c for code in second._entry.stored.values() for c in nested_code(code)]
    assert any(classes[0].__init__.__code__ is c for c in stored)  # the entry's own code object
    second.close()


def test_a_second_start_stores_nothing(cache_dir: Path) -> None:
    """A run that defines only classes the entry has does not write it again."""
    fill(cache_dir)
    entry = entry_of(cache_dir)
    before = entry.stat().st_ino, entry.stat().st_mtime_ns, entry.read_bytes()
    cache = install(cache_dir)
    define()
    cache.close()
    assert (entry.stat().st_ino, entry.stat().st_mtime_ns, entry.read_bytes()) == before


def test_exec_with_its_other_arguments_is_the_builtins(cache_dir: Path) -> None:
    """Called as exec is otherwise (code objects, no globals): what the builtin would do,
    with the caller's namespaces, and the code object itself is never stored."""
    cache = install(cache_dir)
    namespace: dict[str, Any] = {}
    cache.exec(compile("y = 2", "<test>", "exec"), namespace)
    assert namespace["y"] == 2
    cache.exec("def f(a: int) -> None: pass", namespace)
    assert namespace["f"].__annotations__ == {"a": int, "return": None}  # not this module's strings
    cache.exec("assert __name__ == 'tests.unit.test_dataclasscache'")
    assert list(cache._entry.new) == [
        "def f(a: int) -> None: pass",
        "assert __name__ == 'tests.unit.test_dataclasscache'",
    ]


def test_an_entry_of_the_wrong_shape_is_ignored_item_by_item(cache_dir: Path) -> None:
    """A value that is not code, or a key that is not text, is not used: the text is compiled
    anew, the classes are right, and the entry is repaired at save."""
    expected = built_alone()
    fill(cache_dir)
    entry = entry_of(cache_dir)
    stored = marshal.loads(entry.read_bytes())  # noqa: S302 - the test's own file
    texts = sorted(stored)
    bogus: dict[object, object] = {text: stored[text] for text in texts[2:]}
    bogus |= {texts[0]: b"not code", texts[1]: ("a", 1), 7: stored[texts[2]], b"bytes": stored[texts[3]]}
    entry.write_bytes(marshal.dumps(bogus))
    cache = install(cache_dir)
    assert sorted(cache._entry.stored) == texts[2:]
    assert [behaviour(cls) for cls in define()] == expected
    assert sorted(cache._entry.new) == texts[:2]
    cache.close()
    repaired = marshal.loads(entry.read_bytes())  # noqa: S302 - the test's own file
    assert sorted(repaired) == texts
    assert all(isinstance(code, CodeType) for code in repaired.values())


@pytest.mark.parametrize(
    "garbage", [b"\x00garbage", marshal.dumps(["a", "list"]), b""], ids=["garbage", "a list", "empty"]
)
def test_a_corrupt_entry_is_no_cache(cache_dir: Path, garbage: bytes) -> None:
    """Garbage, or marshal data that is not a dict: nothing loaded, classes built as usual."""
    expected = built_alone()
    fill(cache_dir)
    entry_of(cache_dir).write_bytes(garbage)
    cache = install(cache_dir)
    assert cache._entry.stored == {}
    assert [behaviour(cls) for cls in define()] == expected


def test_a_directory_others_can_write_is_neither_read_nor_written(cache_dir: Path) -> None:
    """A group- or world-writable directory: its entry is not loaded, nothing is stored."""
    fill(cache_dir)
    entry = entry_of(cache_dir)
    before = entry.read_bytes()
    for mode in (0o770, 0o777):
        cache_dir.chmod(mode)
        cache = install(cache_dir)
        assert cache._entry.stored == {}
        make_dataclass(f"New{mode}", [("z", int)])
        cache.close()
        assert entry.read_bytes() == before
    assert DataclassCache.install({"INJECT_CACHE_DIR": ""}) is None
    assert "exec" not in vars(dataclasses)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a file to another user")
def test_an_entry_another_user_wrote_is_not_loaded(cache_dir: Path) -> None:
    """An attacker's entry (another owner, or group-writable) is never read: its code would
    run as inject's own methods."""
    fill(cache_dir)
    entry = entry_of(cache_dir)
    only_a_private_entry_loads(entry, lambda: install(cache_dir)._entry.stored)


def test_a_missing_directory_is_not_created(cache_dir: Path, tmp_path: Path) -> None:
    """Without a cache directory nothing is made: a run that renders no template leaves
    HOME as it was, and the classes are still built."""
    cache = install(tmp_path / "home" / ".cache" / "vault-inject")
    assert [behaviour(cls) for cls in define()] != []
    cache.close()
    assert not (tmp_path / "home").exists()


def test_the_entry_stops_growing(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """At MAX_FUNCTIONS texts, new classes are built but their code is not stored."""
    monkeypatch.setattr(dataclasscache, "MAX_FUNCTIONS", 3)
    cache = install(cache_dir)
    for n in range(10):
        assert make_dataclass(f"Many{n}", [(f"f{n}", int)])(n) is not None
    assert len(cache._entry.new) == 3
    cache.close()
    assert len(marshal.loads(entry_of(cache_dir).read_bytes())) == 3  # noqa: S302 - the test's own file


def test_the_command_line_fills_it_and_a_second_start_finds_everything(tmp_path: Path) -> None:
    """`inject --help` (the config's and the launcher's dataclasses) writes the entry; a
    second run compiles nothing new, so the entry is not written again."""
    env = {**os.environ, "INJECT_CACHE_DIR": str(tmp_path)}
    run = [sys.executable, "-m", "vault_inject", "--help"]
    subprocess.run(run, env=env, check=True, capture_output=True)
    (entry,) = tmp_path.glob("dataclass-*")
    stored = marshal.loads(entry.read_bytes())  # noqa: S302 - the test's own file
    assert len(stored) > 20
    assert any("def __init__(self,address:" in text for text in stored)  # config.Config
    before = entry.stat().st_ino, entry.stat().st_mtime_ns  # a rewrite is a rename: a new inode
    subprocess.run(run, env=env, check=True, capture_output=True)
    assert (entry.stat().st_ino, entry.stat().st_mtime_ns) == before


def test_the_library_leaves_dataclasses_alone() -> None:
    """Importing the library (Secrets and what it loads to log in) does not hook dataclasses."""
    code = (
        "import vault_inject, vault_inject.runtime, vault_inject.runtime_connect, dataclasses\n"
        "assert 'exec' not in vars(dataclasses), dataclasses.exec\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
