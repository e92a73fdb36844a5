"""Compiled templates kept on disk between runs, keyed by their source: loading a template's
code back is far cheaper than Jinja's parse and compile of it (``benchmarks/RESULTS.md``).

What is cached is the Python code object the sandbox produced for one template, the
secrets it names literally, and every name it writes literally (``names``: which keys and
paths its error messages may quote). Loading it runs that code, so it lives in inject's private cache
directory (``cachedir``: refused unless only inject's user can write it and each entry), and:

* the entry's name is the SHA-256 of a header (cache format, inject, Jinja and Python
  versions, and the size and mtime of ``render.py`` and ``sandbox.py``, which make the
  code) and of the template's name and source: a different source, a different inject
  or a changed sandbox is a different entry.
* an entry is the SHA-256 of its payload, then the payload (marshal of the code and the
  keys): a truncated or damaged entry fails the digest and is compiled again, never
  handed to ``marshal`` (whose loads of damaged code can crash the interpreter). Anything
  else unexpected (not marshal data, the wrong shape, code that fails to load) is a miss too.

A cache failure of any kind is never an error: the template is compiled as without one.
"""

from __future__ import annotations

import hashlib
import marshal
import os
import sys
from types import CodeType
from typing import Any

from .cachedir import CacheDir

FORMAT = b"inject-compile-cache-3"  # 2: entries carry their payload's digest; 3: and the names
DIGEST_BYTES = 32
MAX_ENTRY_BYTES = 4 * 1024 * 1024

Keys = tuple[tuple[str, int | None], ...]
Names = tuple[str | int, ...]


class CompileCache:
    """Load and store compiled templates in inject's cache directory (see the module docstring)."""

    def __init__(self, directory: CacheDir, header: bytes) -> None:
        self._dir = directory
        self._header = header

    @classmethod
    def open(cls, directory: str, header: bytes) -> CompileCache | None:
        """The cache in ``directory`` (created 0700 if missing), or None when it cannot be
        used or could be written by another user."""
        opened = CacheDir.open(directory, "template")
        return cls(opened, header) if opened is not None else None

    def close(self) -> None:
        """Close the directory descriptor."""
        self._dir.close()

    def load(self, name: str, source: str) -> tuple[CodeType, Keys, Names] | None:
        """The code, literal secret keys and literal names stored for this template, or None."""
        data = self._dir.read(self._entry(name, source), MAX_ENTRY_BYTES)
        if data is None:
            return None
        digest, payload = data[:DIGEST_BYTES], data[DIGEST_BYTES:]
        if hashlib.sha256(payload).digest() != digest:
            return None  # damaged or cut short: compiled again
        try:
            code, keys, names = marshal.loads(payload)  # noqa: S302 - passed the directory's owner and mode checks
        except (ValueError, EOFError, TypeError):
            return None
        if isinstance(code, CodeType) and _are_keys(keys) and _are_names(names):
            return code, keys, names
        return None

    def store(self, name: str, source: str, code: CodeType, keys: Keys, names: Names = ()) -> None:
        """Keep ``code``, ``keys`` and ``names`` for this template (best effort, atomic)."""
        payload = marshal.dumps((code, keys, names))
        self._dir.write(self._entry(name, source), hashlib.sha256(payload).digest() + payload)

    def _entry(self, name: str, source: str) -> str:
        digest = hashlib.sha256(self._header)
        digest.update(b"\0" + name.encode(errors="surrogatepass") + b"\0")
        digest.update(source.encode(errors="surrogatepass"))
        return digest.hexdigest()


def header(*stamps_of: str) -> bytes:
    """What every entry's key starts with: format, versions, and the code-making files."""
    from .._version import __version__

    jinja_version = sys.modules["jinja2"].__version__ if "jinja2" in sys.modules else "?"
    parts = [FORMAT, __version__.encode(), jinja_version.encode(), sys.version.encode()]
    for path in stamps_of:
        info = os.stat(path)
        parts.append(f"{os.path.basename(path)}:{info.st_size}:{info.st_mtime_ns}".encode())
    return b"\0".join(parts)


def _are_keys(keys: Any) -> bool:
    return isinstance(keys, tuple) and all(
        isinstance(k, tuple)
        and len(k) == 2
        and isinstance(k[0], str)
        and (k[1] is None or (isinstance(k[1], int) and not isinstance(k[1], bool)))
        for k in keys
    )


def _are_names(names: Any) -> bool:
    return isinstance(names, tuple) and all(
        isinstance(n, str) or (isinstance(n, int) and not isinstance(n, bool)) for n in names
    )
