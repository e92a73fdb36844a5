"""The state file on disk: one file, ``inject.state``, in a directory reached like a
destination's (``safepath``: no symlink followed, a missing directory made 0700, a directory
others could write refused), written atomically 0600 (a locked temp file, fsynced, renamed,
the directory fsynced: a kill at any point leaves the old file or the new one, whole), and
read only when it is a regular file of inject's own user that no one else can read.
"""

from __future__ import annotations

import contextlib
import os
import stat

from ..errors import UsageError
from . import safepath, tempfiles
from .sealed import Refused

NAME = "inject.state"
MODE = 0o600
MAX_BYTES = 64 * 1024 * 1024
MAX_KEY_BYTES = 4096


def path_in(directory: str) -> str:
    """Where the state file of ``directory`` is."""
    return os.path.join(os.path.abspath(directory), NAME)


def load(directory: str) -> bytes | None:
    """The state file's bytes, None when there is none yet; Refused (one line) when it is
    there but must not be used (another owner, readable by others, not a regular file);
    FileWriteError when the directory cannot be reached safely."""
    place = safepath.open_parent(path_in(directory), safepath.Rules())
    try:
        tempfiles.sweep(place.dir_fd, place.dir_path)  # a writer killed before its rename
        info = safepath.existing(place, safepath.Owner(), place.path)
        if info is None:
            return None
        if info.st_uid != os.geteuid():
            raise Refused(f"belongs to uid {info.st_uid}, not to inject's user ({os.geteuid()})")
        if info.st_mode & 0o077:
            raise Refused(
                f"has mode {stat.S_IMODE(info.st_mode):04o}; other users could read it (0600 expected)"
            )
        fd = safepath.open_existing(place, info, place.path)
        try:
            return safepath.read_bounded(fd, MAX_BYTES, place.path)
        finally:
            os.close(fd)
    finally:
        place.close()


def save(directory: str, data: bytes) -> None:
    """Replace the state file with ``data`` atomically, 0600."""
    place = safepath.open_parent(path_in(directory), safepath.Rules())
    try:
        safepath.existing(place, safepath.Owner(), place.path)  # never over a symlink or a FIFO
        temp = tempfiles.write_temp(place.dir_fd, data, MODE, -1, -1)
        temp.replace(place, place.path)
        with contextlib.suppress(OSError):
            os.fsync(place.dir_fd)  # the rename itself survives a crash
    finally:
        place.close()


def read_key(path: str) -> bytes:
    """The key file's bytes (a mounted secret may be a symlink, as Kubernetes makes them);
    UsageError naming the file when it is missing, not a regular file, or too large."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise UsageError(f"state key file {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UsageError(f"state key file {path} is {safepath.describe(info)}, not a regular file")
        data = safepath.read_upto(fd, MAX_KEY_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_KEY_BYTES:
        raise UsageError(f"state key file {path} is larger than {MAX_KEY_BYTES} bytes")
    return data
