"""The regex cache: a pattern built from a stored program behaves exactly as one compiled by
``re``; an entry another user could have written, or a program ``_sre`` refuses, is never
used; only the command line installs it."""

from __future__ import annotations

import marshal
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from re import _compiler  # type: ignore[attr-defined]

import pytest

from tests.unit.cache_entries import only_a_private_entry_loads
from vault_inject import regexcache
from vault_inject.regexcache import RegexCache

PATTERNS: list[tuple[str | bytes, int]] = [
    (r"(?P<scheme>[a-z]+)://(?P<host>[^/:]+)(?::(?P<port>\d+))?(/.*)?", 0),
    (r"^\s*#.*$", re.MULTILINE),
    (r"[a-zé]+", re.IGNORECASE),
    (rb"\r?\n", 0),
    (r"(a|b)*?c{2,5}", re.VERBOSE | re.DOTALL),
]
SAMPLES = ["https://vault.example:8200/v1/secret", "  # note\nx", "CAFÉ", b"a\r\nb", "abacccc", "x"]
ORIGINAL = _compiler.compile


def outcomes(pattern: re.Pattern[str] | re.Pattern[bytes]) -> list[object]:
    """What a pattern is and does, to compare two compiles of it."""
    found: list[object] = [pattern.flags, pattern.groups, dict(pattern.groupindex)]
    for sample in SAMPLES:
        if isinstance(sample, type(pattern.pattern)):
            found.append([m.span() + m.groups() for m in pattern.finditer(sample)])  # type: ignore[arg-type]
    return found


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private cache directory; re's own compile is back after the test."""
    directory = tmp_path / "cache"
    directory.mkdir(mode=0o700)
    monkeypatch.setenv("INJECT_CACHE_DIR", str(directory))
    try:
        yield directory
    finally:
        _compiler.compile, _compiler._sre = ORIGINAL, sys.modules["_sre"]
        re.purge()


def install(directory: Path) -> RegexCache:
    cache = RegexCache.install({"INJECT_CACHE_DIR": str(directory)})
    assert cache is not None
    re.purge()  # re's per-process cache would answer before ours
    return cache


def compiled_alone() -> list[list[object]]:
    """Each pattern as re compiles it, without the cache."""
    re.purge()
    return [outcomes(re.compile(p, f)) for p, f in PATTERNS]


def test_a_stored_program_gives_the_same_pattern(cache_dir: Path) -> None:
    """Compiled once (programs stored at save), then built from the entry: same flags,
    groups, names and matches as re's own compile, and nothing new to store."""
    expected = compiled_alone()
    first = install(cache_dir)
    assert [outcomes(re.compile(p, f)) for p, f in PATTERNS] == expected
    first.close()
    assert _compiler.compile is ORIGINAL
    second = install(cache_dir)
    assert [outcomes(re.compile(p, f)) for p, f in PATTERNS] == expected
    assert second._entry.new == {}  # every one came from the entry
    second.close()


def test_patterns_compiled_on_many_threads_keep_their_own_programs(cache_dir: Path) -> None:
    """Compiling on 8 threads that switch every microsecond stores each pattern's own
    program (never one compiled meanwhile for another pattern on another thread), so every
    one still matches what it should when loaded back."""
    words = [f"w{i}x{'y' * (i % 7)}(?P<g{i}>\\d{{{i % 5 + 1}}})" for i in range(200)]
    cache = install(cache_dir)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch inside each other's compiles
    threads = [
        threading.Thread(target=lambda part=words[n::8]: [re.compile(w) for w in part]) for n in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sys.setswitchinterval(interval)
    cache.close()
    install(cache_dir)
    for i, word in enumerate(words):
        text = f"w{i}x{'y' * (i % 7)}{'7' * (i % 5 + 1)}"
        assert re.fullmatch(word, text) is not None, word
        assert re.compile(word).groupindex == {f"g{i}": 1}


def test_a_program_sre_refuses_is_compiled_as_usual(cache_dir: Path) -> None:
    """A stored program of the wrong shape or one _sre's validator rejects is not used; the
    pattern is compiled by re, matches right, and the entry is repaired at save."""
    install(cache_dir).close()
    entry = cache_dir / regexcache.entry_name()
    bogus = {("a+b", 0): (32, [99999, 1, 2], 0, {}, (None,)), ("c+d", 0): (1, 2, 3)}
    entry.write_bytes(marshal.dumps(bogus))
    cache = install(cache_dir)
    assert re.fullmatch("a+b", "aaab") is not None
    assert re.fullmatch("c+d", "ccd") is not None
    assert re.fullmatch("a+b", "ab ") is None
    cache.close()
    install(cache_dir)
    assert re.fullmatch("a+b", "aab") is not None


def test_a_corrupt_entry_is_no_cache(cache_dir: Path) -> None:
    """Garbage in the entry: nothing loaded, patterns compiled as usual."""
    install(cache_dir).close()
    (cache_dir / regexcache.entry_name()).write_bytes(b"\x00garbage")
    cache = install(cache_dir)
    assert cache._entry.stored == {}
    assert [outcomes(re.compile(p, f)) for p, f in PATTERNS] == compiled_alone()


def test_a_directory_others_can_write_is_neither_read_nor_written(cache_dir: Path) -> None:
    """A group- or world-writable directory: its entry is not loaded, nothing is stored."""
    cache = install(cache_dir)
    re.compile("kept-[0-9]+")
    cache.close()
    (entry,) = cache_dir.iterdir()
    before = entry.read_bytes()
    for mode in (0o770, 0o777):
        cache_dir.chmod(mode)
        cache = install(cache_dir)
        assert cache._entry.stored == {}
        re.compile(f"new-{mode}")
        cache.close()
        assert entry.read_bytes() == before
    assert RegexCache.install({"INJECT_CACHE_DIR": ""}) is None
    assert _compiler.compile is ORIGINAL


def test_a_missing_directory_is_not_created(cache_dir: Path, tmp_path: Path) -> None:
    """Without a cache directory nothing is made: a run that renders no template (which
    would make it for the compiled templates) leaves HOME as it was."""
    cache = install(tmp_path / "home" / ".cache" / "vault-inject")
    re.compile("anything-[0-9]+")
    cache.close()
    assert not (tmp_path / "home").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a file to another user")
def test_an_entry_another_user_wrote_is_not_loaded(cache_dir: Path) -> None:
    """An attacker's entry (another owner, or group-writable) is never read: its programs
    would run in inject's regex engine."""
    cache = install(cache_dir)
    re.compile("stored-[0-9]+")
    cache.close()
    entry = cache_dir / regexcache.entry_name()
    only_a_private_entry_loads(entry, lambda: install(cache_dir)._entry.stored)


def test_the_entry_stops_growing(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """At MAX_PATTERNS programs, new patterns are compiled but not stored."""
    monkeypatch.setattr(regexcache, "MAX_PATTERNS", 3)
    cache = install(cache_dir)
    for n in range(10):
        assert re.fullmatch(f"z{n}+", f"z{n}{n}")
    assert len(cache._entry.new) == 3


def test_the_command_line_fills_it_and_a_second_start_finds_everything(tmp_path: Path) -> None:
    """`inject --help` (click and its patterns) writes the entry; a second run compiles
    nothing new, so the entry is not written again."""
    env = {**os.environ, "INJECT_CACHE_DIR": str(tmp_path)}
    run = [sys.executable, "-m", "vault_inject", "--help"]
    subprocess.run(run, env=env, check=True, capture_output=True)
    (entry,) = tmp_path.glob("regex-*")
    assert len(marshal.loads(entry.read_bytes())) > 5  # noqa: S302 - the test's own file
    before = entry.stat().st_mtime_ns
    subprocess.run(run, env=env, check=True, capture_output=True)
    assert entry.stat().st_mtime_ns == before


def test_the_library_leaves_re_alone() -> None:
    """Importing the library (Secrets and what it loads to log in) does not hook re."""
    code = (
        "import vault_inject, vault_inject.runtime, vault_inject.runtime_connect\n"
        "from re import _compiler\n"
        "assert _compiler.compile.__module__ == 're._compiler', _compiler.compile\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
