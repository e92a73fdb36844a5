"""Temp files beside a destination: created safely in an open directory, locked while a
writer lives, swept once a killed writer left them.

A temp file is ``.inject-<random>.tmp``, created with ``O_CREAT|O_EXCL|O_NOFOLLOW`` (0600)
relative to the directory descriptor (another user may pre-create names in a shared
directory: another name is tried), locked with an exclusive flock, written, fsynced,
chowned and chmodded, then renamed over its destination (``renameat``) or discarded. The
sweep removes temp files that are unlocked and older than STALE_TEMP_S.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import stat
import time
from dataclasses import dataclass

from ..errors import FileWriteError
from .safepath import Place

log = logging.getLogger(__name__)

TEMP_PREFIX = ".inject-"
TEMP_SUFFIX = ".tmp"
STALE_TEMP_S = 2.0
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_TEMP_NAME_TRIES = 100  # another user may pre-create names in a shared directory


@dataclass
class Temp:
    """A fully written temp file in an open directory, locked (flock) until it is renamed or
    discarded, so a sweeper can tell a live writer's temp file from one a killed writer left."""

    dir_fd: int
    name: str
    fd: int

    def replace(self, place: Place, destination: str) -> None:
        """Rename over ``place.name``, both names relative to the directory descriptor."""
        try:
            os.replace(self.name, place.name, src_dir_fd=self.dir_fd, dst_dir_fd=place.dir_fd)
        except OSError as exc:
            self.discard()
            raise FileWriteError(f"cannot replace {destination}: {exc.strerror}") from exc
        os.close(self.fd)

    def sync(self) -> None:
        """Flush the content and metadata to disk (before the rename, so a crash cannot
        leave an empty file under the destination's name)."""
        os.fsync(self.fd)

    def discard(self) -> None:
        """Remove the temp file and close it (quietly: this runs on failure paths)."""
        with contextlib.suppress(OSError):
            os.unlink(self.name, dir_fd=self.dir_fd)
        with contextlib.suppress(OSError):
            os.close(self.fd)


def write_temp(dir_fd: int, data: bytes, mode: int, uid: int, gid: int, *, sync: bool = True) -> Temp:
    """A locked temp file in ``dir_fd`` holding ``data`` with this mode and owner; fsynced
    unless ``sync`` is False (then the caller syncs it with ``Temp.sync`` before renaming)."""
    name, fd = _create_temp(dir_fd)
    temp = Temp(dir_fd, name, fd)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if uid != -1 or gid != -1:
            os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)
        if sync:
            temp.sync()
    except BaseException:
        temp.discard()
        raise
    return temp


def _create_temp(dir_fd: int) -> tuple[str, int]:
    for _ in range(_TEMP_NAME_TRIES):
        # os.urandom(8).hex() is what secrets.token_hex(8) returns, without importing secrets
        # (and with it random and hmac, at every start)
        name = f"{TEMP_PREFIX}{os.urandom(8).hex()}{TEMP_SUFFIX}"
        try:
            return name, os.open(name, _TEMP_FLAGS, 0o600, dir_fd=dir_fd)
        except FileExistsError:
            continue
    raise FileExistsError("no free temp file name")


def sweep_stale_temps(directory: str) -> int:
    """Remove temp files that a killed writer left in ``directory``; return how many."""
    try:
        fd = os.open(directory or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return 0
    try:
        return sweep(fd, directory)
    finally:
        os.close(fd)


def sweep(dir_fd: int, directory: str) -> int:
    """A live writer holds an exclusive flock on its temp file until the rename, and a
    file younger than STALE_TEMP_S may be between creation and locking: both stay."""
    try:
        names = [n for n in os.listdir(dir_fd) if n.startswith(TEMP_PREFIX) and n.endswith(TEMP_SUFFIX)]
    except OSError:
        return 0  # e.g. a directory inject may traverse but not list
    removed = sum(_remove_if_abandoned(dir_fd, name) for name in names)
    if removed:
        log.debug("removed %d abandoned temp file(s) in %s", removed, directory)
    return removed


def _remove_if_abandoned(dir_fd: int, name: str) -> int:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return 0
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or time.time() - info.st_mtime < STALE_TEMP_S:
            return 0
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return 0  # locked: a writer is alive
    finally:
        os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(name, dir_fd=dir_fd)
    return 1
