"""Compiled dataclass methods kept between runs of the command line.

``@dataclass`` writes the source of each class's ``__init__``, ``__repr__``, ``__eq__``,
``__hash__``, ``__setattr__``... as text and runs it with ``exec``; compiling it is ~12 ms
of every ``inject render`` (the 31 dataclasses of inject, ~170 functions with hvac's and
Jinja's). What a text compiles to depends only on the text and the Python build, so the
code objects are kept in one entry of inject's cache directory (``cachedir``: private to
inject's user), named by the Python build, the optimisation level and the marshal
format, and handed to ``exec`` instead of the text at the next start: ~9 ms saved.

The hook is ``dataclasses.exec``: ``dataclasses`` calls the global name ``exec`` (Python
3.11 and 3.12 in ``_create_fn``, 3.13 in ``_FuncBuilder.add_fns_to_class``), and a module
global comes before the builtin. The class is still built by ``dataclasses`` itself, from
the same globals and locals: only the compile of its text is skipped. A ``dataclasses``
that no longer calls ``exec`` never calls the hook, and nothing changes.

The entry is loaded only from a trusted directory, like the compiled templates (it is
code inject runs), and only str -> code items of it are used; a text not in it is
compiled as usual and added when inject exits, up to ``MAX_FUNCTIONS``. The cache never
creates the directory. It is installed by the command line alone (``entry``), never by
the library: it changes ``dataclasses`` for the whole process.
"""

from __future__ import annotations

import builtins
import dataclasses
import marshal
import sys
from collections.abc import Mapping
from types import CodeType
from typing import Any

from .cachedir import KeptEntry, StartCache, default_dir

FORMAT = "1"
MAX_ENTRY_BYTES = 4 * 1024 * 1024
MAX_FUNCTIONS = 2048  # a loop that defines ever new dataclasses does not grow the entry forever
_ABSENT = object()


class DataclassCache(StartCache[str, CodeType]):
    """The code loaded from the entry, that compiled since, and the hook into ``dataclasses``."""

    def __init__(self, entry: KeptEntry[str, CodeType]) -> None:
        super().__init__(entry)
        stored = entry.stored
        for text in [t for t, code in stored.items() if not (type(t) is str and type(code) is CodeType)]:
            del stored[text]  # not what this module stores: compiled anew, replaced at save
        self._previous = vars(dataclasses).get("exec", _ABSENT)

    @classmethod
    def install(cls, environ: Mapping[str, str]) -> DataclassCache | None:
        """Load the entry of this Python build (if the cache directory exists and is
        trusted) and hook ``dataclasses``; None (untouched) when there is no cache directory."""
        directory = default_dir(environ)
        if not directory:
            return None
        entry: KeptEntry[str, CodeType] = KeptEntry(
            directory, entry_name(), "dataclass", max_bytes=MAX_ENTRY_BYTES, limit=MAX_FUNCTIONS
        )
        cache = cls(entry)
        dataclasses.exec = cache.exec  # type: ignore[attr-defined]
        return cache

    def uninstall(self) -> None:
        """Give ``dataclasses`` the builtin ``exec`` back."""
        if self._previous is _ABSENT:
            vars(dataclasses).pop("exec", None)
        else:
            dataclasses.exec = self._previous  # type: ignore[attr-defined]

    def exec(
        self,
        source: Any,
        globals: dict[str, Any] | None = None,
        locals: Mapping[str, object] | None = None,
        /,
        **options: Any,
    ) -> None:
        """``exec`` as ``dataclasses`` calls it, with the text's code from the entry when it
        is there. A text is compiled here, not by the builtin, with ``dont_inherit``: the
        builtin would compile it with the future flags of its caller, this module (its
        ``annotations`` would turn the methods' annotations into strings), where
        ``dataclasses``, which has none, gets none."""
        if globals is None:  # exec's own default: the caller's namespaces, not this frame's
            caller = sys._getframe(1)
            globals = caller.f_globals
            locals = caller.f_locals if locals is None else locals
        if isinstance(source, str) and not options:
            code = self._entry.stored.get(source)
            if code is None:
                code = compile(source, "<string>", "exec", dont_inherit=True)
                self._entry.add(source, code)
            source = code
        elif isinstance(source, (str, bytes)):
            source = compile(source, "<string>", "exec", dont_inherit=True)
        builtins.exec(source, globals, locals, **options)  # noqa: S102 - what dataclasses runs anyway


def entry_name() -> str:
    """The entry of this Python build, ``-O`` level and marshal format (the code is
    bytecode of this interpreter; no hashlib: it loads OpenSSL, ~4 ms)."""
    build = f"{sys.implementation.cache_tag}-{sys.hexversion:x}-O{sys.flags.optimize}"
    return f"dataclass-{FORMAT}-{build}-{marshal.version}"
