"""Compiled regular expressions kept between runs of the command line.

Importing what ``inject render`` needs (hvac, requests, urllib3, http.client, email,
jinja2, click) compiles about 120 regular expressions at import time: ~15 ms of every
start, more than rendering 10 templates. What ``re`` compiles a pattern to (the program
the ``_sre`` engine runs, its group count and names) depends only on the pattern, its
flags and the Python build. So the programs are kept in one entry of inject's cache
directory (``cachedir``: private to inject's user), named by the Python build and
``_sre``'s version; a pattern found there is handed to ``_sre.compile`` as ``re`` itself
would hand it, skipping the parse and the code generation, and a pattern that is not is
compiled as usual and added to the entry when inject exits. The cache never creates the
directory: it is there once a run has compiled templates (or made by hand, or in an image),
so a run that renders nothing leaves HOME as it found it.

Nothing else changes: ``re``'s own per-process cache still sits in front; a pattern with
the DEBUG flag, or an entry of the wrong shape, is compiled as usual; ``_sre`` checks
every program it is given. The entry is loaded only from a trusted directory, like the
compiled templates. It is installed by the command line alone (``entry``), never by the
library: it changes ``re`` for the whole process.
"""

from __future__ import annotations

import _thread
import sys
from collections.abc import Callable, Mapping
from re import _compiler  # type: ignore[attr-defined]
from typing import Any

from .cachedir import KeptEntry, StartCache, default_dir

FORMAT = "1"
MAX_ENTRY_BYTES = 4 * 1024 * 1024
MAX_PATTERNS = 4096  # a loop that compiles ever new patterns does not grow the entry forever
_DEBUG = 128  # re.DEBUG (re itself is not imported for this)

Key = tuple[str | bytes, int]
Program = tuple[int, list[int], int, dict[str, int], tuple[str | None, ...]]


class _Recorder:
    """Stands for ``_sre`` inside ``re._compiler``: ``compile`` notes the program it is
    given for the pattern being compiled on this thread; every other name is ``_sre``'s."""

    def __init__(self, sre: Any, cache: RegexCache) -> None:
        self._sre = sre
        self._cache = cache

    def compile(self, pattern: Any, flags: int, code: list[int], *rest: Any) -> Any:
        self._cache.note(pattern, flags, code, rest)
        return self._sre.compile(pattern, flags, code, *rest)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sre, name)


class RegexCache(StartCache[Key, Program]):
    """The programs loaded from the entry, those compiled since, and the hook into ``re``."""

    def __init__(self, entry: KeptEntry[Key, Program]) -> None:
        super().__init__(entry)  # programs are checked at use: _sre.compile refuses bad ones
        self._compiling: dict[int, Key] = {}  # thread id -> the pattern it compiles
        self._sre = _compiler._sre
        self._compile: Callable[..., Any] = _compiler.compile

    @classmethod
    def install(cls, environ: Mapping[str, str]) -> RegexCache | None:
        """Load the entry of this Python build (if the cache directory exists and is
        trusted) and hook ``re``; None (``re`` untouched) when there is no cache directory."""
        directory = default_dir(environ)
        if not directory:
            return None
        cache = cls(
            KeptEntry(directory, entry_name(), "regex", max_bytes=MAX_ENTRY_BYTES, limit=MAX_PATTERNS)
        )
        _compiler.compile = cache.compile
        _compiler._sre = _Recorder(cache._sre, cache)
        return cache

    def uninstall(self) -> None:
        """Give ``re`` its own compile back."""
        _compiler.compile = self._compile
        _compiler._sre = self._sre

    def compile(self, pattern: Any, flags: int = 0) -> Any:
        """``re._compiler.compile``, from the cache when the pattern is in it."""
        if isinstance(pattern, (str, bytes)) and not flags & _DEBUG:
            program = self._entry.stored.get((pattern, int(flags)))
            if isinstance(program, tuple) and len(program) == 5:
                try:
                    return self._sre.compile(pattern, *program)
                except (TypeError, ValueError, RuntimeError, OverflowError):
                    pass  # compiled as usual below, and the entry's program replaced
            self._compiling[_thread.get_ident()] = (pattern, int(flags))
        try:
            return self._compile(pattern, flags)
        finally:
            self._compiling.pop(_thread.get_ident(), None)

    def note(self, pattern: Any, flags: int, code: list[int], rest: tuple[Any, ...]) -> None:
        """What ``re`` handed ``_sre`` for the pattern this thread is compiling."""
        key = self._compiling.get(_thread.get_ident())
        if key is None or key[0] is not pattern:
            return
        if len(rest) != 3:  # another _sre.compile than Python 3.11-3.13's: store nothing
            return
        groups, groupindex, indexgroup = rest
        self._entry.add(
            key, (int(flags), [int(op) for op in code], int(groups), dict(groupindex), tuple(indexgroup))
        )


def entry_name() -> str:
    """The entry of this Python version and ``_sre`` version (no hashlib: it loads OpenSSL,
    ~4 ms, which the plain PID 1 does not otherwise need)."""
    sre = _compiler._sre
    return f"regex-{FORMAT}-{sys.implementation.cache_tag}-{sys.hexversion:x}-{sre.MAGIC}-{sre.CODESIZE}"
