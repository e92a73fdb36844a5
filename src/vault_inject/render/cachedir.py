"""inject's own cache directory: what it keeps between runs (compiled templates) is code it
runs, so it is trusted only as far as inject's own files are.

* whether there is a cache at all (``usable``): only when inject runs as root (a root child
  could rewrite inject's installed code anyway) or the child runs as another user. A child
  of inject's own user could write the directory, and its entries would run inside inject
  with inject's token: so a same-user run has no cache.
* where: ``$INJECT_CACHE_DIR`` (empty: no cache), else ``$XDG_CACHE_HOME/vault-inject``,
  else ``$HOME/.cache/vault-inject``; an absolute path only.
* how it is reached: by the destinations' own walk (``files.safepath.open_parent``):
  component by component from ``/`` with ``O_NOFOLLOW`` (a symlink anywhere on the way is
  refused, never followed), every directory on the way writable only by root and inject's
  user (a sticky one like ``/tmp`` is fine: no one else can rename what is in it), so a
  HOME that belongs to another user is refused and nothing is ever created inside it;
  missing components are created 0700. The cache directory itself must then belong to
  inject's user and have no group or other write bit. Refusals are logged as a warning (a
  missing or read-only place only at debug level).
* an entry is opened with ``O_NOFOLLOW`` relative to the directory's descriptor and read
  only if it is a regular file of the same owner, writable by no one else, and not over
  its size bound; anything else is a miss.
* entries are written to a temp name and renamed, so a reader never sees half of one.

A cache failure of any kind is never an error: the caller does the work as without one.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Mapping

from ..errors import FileWriteError
from ..files import safepath

ENV_VAR = "INJECT_CACHE_DIR"
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


def usable(*, euid: int, child_uid: int) -> bool:
    """Whether a run may use the cache: as root, or with the child under another user
    (``child_uid`` -1: no child, or the child runs as inject's user)."""
    return euid == 0 or child_uid not in (-1, euid)


class CacheDir:
    """Read and write entries of one trusted directory (see the module docstring)."""

    def __init__(self, dir_fd: int) -> None:
        self._dir_fd = dir_fd

    @classmethod
    def open(cls, directory: str, what: str) -> CacheDir | None:
        """The cache in ``directory`` (missing components created 0700), or None when it
        cannot be used or could be written by another user (a warning naming ``what``)."""
        if not directory:
            return None
        if not os.path.isabs(directory):
            _log(True, "not using %s cache %s: not an absolute path", what, directory)
            return None
        try:
            # the destinations' walk, to a name inside the directory: the directory itself is
            # reached (created if missing) and checked like every directory before it
            place = safepath.open_parent(os.path.join(directory, "entry"), safepath.Rules())
        except FileWriteError as exc:
            # a missing or read-only place is no news (debug); a refusal is (warning)
            _log(not isinstance(exc.__cause__, OSError), "not using %s cache %s: %s", what, directory, exc)
            return None
        if not trusted(os.fstat(place.dir_fd)):
            place.close()
            _log(True, "not using %s cache %s: it must belong to uid %d and be writable by no one else",
                 what, directory, os.geteuid())  # fmt: skip
            return None
        return cls(place.dir_fd)

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
