"""inject's own cache directory: what it keeps between runs (compiled templates, regular
expressions and dataclass methods) is loaded as trusted as inject's own files, so the
directory and every entry must belong to inject's effective user and be writable by no
one else.

* the directory is ``$INJECT_CACHE_DIR`` (empty: no cache), else
  ``$XDG_CACHE_HOME/vault-inject``, else ``$HOME/.cache/vault-inject``; missing ones are
  created 0700. It is opened once (``O_NOFOLLOW``) and used only through that descriptor;
  the open directory must belong to inject's effective user and be writable by no one
  else (no group or other write bit), or there is no cache for this run (logged once).
* an entry is opened with ``O_NOFOLLOW`` relative to that descriptor and read only if it
  is a regular file of the same owner, writable by no one else, and not over its size
  bound; anything else is a miss.
* entries are written to a temp name and renamed, so a reader never sees half of one.

A cache failure of any kind is never an error: the caller does the work as without one.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Mapping

ENV_VAR = "INJECT_CACHE_DIR"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def default_dir(environ: Mapping[str, str]) -> str:
    """Where the cache lives by default ("" when there is no such place)."""
    if ENV_VAR in environ:
        return environ[ENV_VAR]
    base = environ.get("XDG_CACHE_HOME") or (
        os.path.join(environ["HOME"], ".cache") if environ.get("HOME") else ""
    )
    return os.path.join(base, "vault-inject") if base else ""


class CacheDir:
    """Read and write entries of one trusted directory (see the module docstring)."""

    def __init__(self, dir_fd: int) -> None:
        self._dir_fd = dir_fd

    @classmethod
    def open(cls, directory: str, what: str, *, create: bool = True, warn: bool = True) -> CacheDir | None:
        """The cache in ``directory`` (created 0700 if missing and ``create``), or None when
        it cannot be used or could be written by another user (a warning naming ``what``,
        if ``warn``)."""
        if not directory:
            return None
        try:
            if create:
                os.makedirs(directory, mode=0o700, exist_ok=True)
            fd = os.open(directory, _DIR_FLAGS)
        except OSError as exc:
            _log(False, "no %s cache in %s: %s", what, directory, exc.strerror)
            return None
        if not trusted(os.fstat(fd)):
            os.close(fd)
            _log(warn, "not using %s cache %s: it must belong to uid %d and be writable "
                       "by no one else", what, directory, os.geteuid())  # fmt: skip
            return None
        return cls(fd)

    def close(self) -> None:
        """Close the directory descriptor."""
        if self._dir_fd >= 0:
            os.close(self._dir_fd)
            self._dir_fd = -1

    def read(self, entry: str, max_bytes: int) -> bytes | None:
        """The entry's bytes, or None (missing, untrusted, not a regular file, too large)."""
        try:
            fd = os.open(entry, _READ_FLAGS, dir_fd=self._dir_fd)
        except OSError:
            return None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or not trusted(info) or info.st_size > max_bytes:
                return None
            return os.read(fd, info.st_size + 1)
        except OSError:
            return None
        finally:
            os.close(fd)

    def write(self, entry: str, data: bytes) -> None:
        """Replace the entry with ``data`` (best effort, atomic, 0600)."""
        temp = f".{entry}.{os.urandom(6).hex()}.tmp"
        try:
            fd = os.open(temp, _WRITE_FLAGS, 0o600, dir_fd=self._dir_fd)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.rename(temp, entry, src_dir_fd=self._dir_fd, dst_dir_fd=self._dir_fd)
        except (OSError, ValueError) as exc:
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=self._dir_fd)
            _log(False, "cache: could not store %s: %s", entry, exc)


def trusted(info: os.stat_result) -> bool:
    """Owned by inject's effective user and writable by no one else."""
    return info.st_uid == os.geteuid() and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _log(warn: bool, message: str, *args: object) -> None:
    """A warning or a debug line."""
    import logging

    logger = logging.getLogger(__name__)
    (logger.warning if warn else logger.debug)(message, *args)
