"""Compiled templates kept on disk between runs, keyed by their source (the Jinja compile of
a small template takes ~0.4 ms; loading it back ~0.01 ms: 500 templates, 0.2 s per start).

What is cached is the Python code object the sandbox produced for one template, and the
secrets it names literally. Loading it runs that code, so the cache is as trusted as
inject's own files, and refused unless only inject's user can write it:

* the directory is ``$INJECT_CACHE_DIR`` (empty: no cache), else
  ``$XDG_CACHE_HOME/vault-inject``, else ``$HOME/.cache/vault-inject``; missing ones are
  created 0700. It is opened once (``O_NOFOLLOW``) and used only through that descriptor;
  the open directory must belong to inject's effective user and be writable by no one
  else (no group or other write bit), or the cache is off for this run (logged once).
* an entry is opened with ``O_NOFOLLOW`` relative to that descriptor and used only if it
  is a regular file of the same owner, writable by no one else; anything else is a miss.
* the entry's name is the SHA-256 of a header (cache format, inject, Jinja and Python
  versions, and the size and mtime of ``render.py`` and ``sandbox.py``, which make the
  code) and of the template's name and source: a different source, a different inject
  or a changed sandbox is a different entry. Entries are written to a temp name and
  renamed, so a reader never sees half of one; an unreadable entry is compiled again.

A cache failure of any kind is never an error: the template is compiled as without one.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import marshal
import os
import stat
import sys
from collections.abc import Mapping
from types import CodeType
from typing import Any

log = logging.getLogger(__name__)

FORMAT = b"inject-compile-cache-1"
ENV_VAR = "INJECT_CACHE_DIR"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_ENTRY_BYTES = 4 * 1024 * 1024

Keys = tuple[tuple[str, int | None], ...]


def default_dir(environ: Mapping[str, str]) -> str:
    """Where the cache lives by default ("" when there is no such place)."""
    if ENV_VAR in environ:
        return environ[ENV_VAR]
    base = environ.get("XDG_CACHE_HOME") or (
        os.path.join(environ["HOME"], ".cache") if environ.get("HOME") else ""
    )
    return os.path.join(base, "vault-inject") if base else ""


class CompileCache:
    """Load and store compiled templates in one trusted directory (see the module docstring)."""

    def __init__(self, dir_fd: int, header: bytes) -> None:
        self._dir_fd = dir_fd
        self._header = header

    @classmethod
    def open(cls, directory: str, header: bytes) -> CompileCache | None:
        """The cache in ``directory`` (created 0700 if missing), or None when it cannot be
        used or could be written by another user."""
        if not directory:
            return None
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            fd = os.open(directory, _DIR_FLAGS)
        except OSError as exc:
            log.debug("no template cache in %s: %s", directory, exc.strerror)
            return None
        if not _trusted(os.fstat(fd)):
            os.close(fd)
            log.warning("not using template cache %s: it must belong to uid %d and be writable "
                        "by no one else", directory, os.geteuid())  # fmt: skip
            return None
        return cls(dir_fd=fd, header=header)

    def close(self) -> None:
        """Close the directory descriptor."""
        if self._dir_fd >= 0:
            os.close(self._dir_fd)
            self._dir_fd = -1

    def load(self, name: str, source: str) -> tuple[CodeType, Keys] | None:
        """The code and literal secret keys stored for this template, or None."""
        data = self._read(self._entry(name, source))
        if data is None:
            return None
        try:
            code, keys = marshal.loads(data)  # noqa: S302 - passed _read's owner and mode checks
        except (ValueError, EOFError, TypeError):
            return None
        return (code, keys) if isinstance(code, CodeType) and _are_keys(keys) else None

    def store(self, name: str, source: str, code: CodeType, keys: Keys) -> None:
        """Keep ``code`` and ``keys`` for this template (best effort, atomic)."""
        entry = self._entry(name, source)
        temp = f".{entry}.{os.urandom(6).hex()}.tmp"
        try:
            fd = os.open(temp, _WRITE_FLAGS, 0o600, dir_fd=self._dir_fd)
            with os.fdopen(fd, "wb") as handle:
                handle.write(marshal.dumps((code, keys)))
            os.rename(temp, entry, src_dir_fd=self._dir_fd, dst_dir_fd=self._dir_fd)
        except (OSError, ValueError) as exc:
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=self._dir_fd)
            log.debug("template cache: could not store %s: %s", name, exc)

    def _entry(self, name: str, source: str) -> str:
        digest = hashlib.sha256(self._header)
        digest.update(b"\0" + name.encode(errors="surrogatepass") + b"\0")
        digest.update(source.encode(errors="surrogatepass"))
        return digest.hexdigest()

    def _read(self, entry: str) -> bytes | None:
        try:
            fd = os.open(entry, _READ_FLAGS, dir_fd=self._dir_fd)
        except OSError:
            return None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or not _trusted(info) or info.st_size > MAX_ENTRY_BYTES:
                return None
            return os.read(fd, info.st_size + 1)
        except OSError:
            return None
        finally:
            os.close(fd)


def header(*stamps_of: str) -> bytes:
    """What every entry's key starts with: format, versions, and the code-making files."""
    from . import __version__

    jinja_version = sys.modules["jinja2"].__version__ if "jinja2" in sys.modules else "?"
    parts = [FORMAT, __version__.encode(), jinja_version.encode(), sys.version.encode()]
    for path in stamps_of:
        info = os.stat(path)
        parts.append(f"{os.path.basename(path)}:{info.st_size}:{info.st_mtime_ns}".encode())
    return b"\0".join(parts)


def _trusted(info: os.stat_result) -> bool:
    return info.st_uid == os.geteuid() and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _are_keys(keys: Any) -> bool:
    return isinstance(keys, tuple) and all(
        isinstance(k, tuple)
        and len(k) == 2
        and isinstance(k[0], str)
        and (k[1] is None or (isinstance(k[1], int) and not isinstance(k[1], bool)))
        for k in keys
    )
