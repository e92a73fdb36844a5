"""The only module that writes rendered files.

Each file is written atomically: a temp file in the destination directory created
0600, written, fsynced, chmod to the wanted mode (and chown), renamed over the
destination, then the directory is fsynced. A set of files is staged completely
before the first rename, so a failure while staging leaves every destination as it
was. Unchanged content is not rewritten. ``Commit.rollback`` puts the previous
contents back (used when a check command rejects the new files).

Every write also sweeps the destination directories for temp files a killed writer
left behind, and warns once per directory that is world-writable without the sticky
bit (anyone there can replace the rendered files).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import stat
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from .errors import FileWriteError

log = logging.getLogger(__name__)

DIR_MODE = 0o700
TEMP_PREFIX = ".inject-"
STALE_TEMP_S = 2.0

_warned_dirs: set[str] = set()  # world-writable directories already warned about


@dataclass(frozen=True)
class FileWrite:
    """What one destination should contain."""

    destination: str
    content: str
    perms: int = 0o600
    allow_symlink: bool = False
    uid: int = -1
    gid: int = -1


@dataclass(frozen=True)
class _Previous:
    destination: str
    content: bytes | None  # None: the file did not exist
    mode: int


@dataclass
class Commit:
    """The files one write replaced, so they can be put back."""

    changed: list[str] = field(default_factory=list)
    previous: list[_Previous] = field(default_factory=list)

    def rollback(self) -> None:
        """Restore every replaced file (atomically) and remove the ones that were created."""
        for prev in reversed(self.previous):
            if prev.content is None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(prev.destination)
            else:
                _stage_and_replace(prev.destination, prev.content, prev.mode, -1, -1)


def write_all(writes: Iterable[FileWrite]) -> Commit:
    """Write every changed file, all or nothing; return what changed (FileWriteError names it)."""
    writes = list(writes)
    pending = [w for w in writes if _needs_write(w)]
    for directory in dict.fromkeys(_directory_of(w) for w in writes):
        _warn_if_world_writable(directory)
        sweep_stale_temps(directory)  # also when nothing changed: a crash may have left them
    staged: list[tuple[FileWrite, _Temp]] = []
    commit = Commit()
    try:
        for write in pending:
            staged.append((write, _stage(write)))
    except FileWriteError:
        for _, temp in staged:
            temp.discard()
        raise
    directories = []
    for write, temp in staged:
        commit.previous.append(_snapshot(write.destination))
        directories.append(temp.replace(write.destination))
        commit.changed.append(write.destination)
        log.info("wrote %s", write.destination)
    for directory in dict.fromkeys(directories):  # each directory once, after all renames
        _fsync_dir(directory)
    return commit


def _needs_write(write: FileWrite) -> bool:
    _check_destination(write)
    data = _encoded(write)
    try:
        with open(write.destination, "rb") as handle:
            same = handle.read() == data
        if same:
            _fix_mode(write)
        return not same
    except FileNotFoundError:
        return True
    except OSError as exc:
        raise FileWriteError(f"cannot read {write.destination}: {exc.strerror}") from None


def _encoded(write: FileWrite) -> bytes:
    try:
        return write.content.encode()
    except UnicodeEncodeError:  # e.g. env() of a variable holding bytes that are not UTF-8
        raise FileWriteError(
            f"cannot write {write.destination}: the rendered text is not valid UTF-8 "
            "(a value from the environment or the server holds undecodable bytes)"
        ) from None


def _fix_mode(write: FileWrite) -> None:
    try:
        if stat.S_IMODE(os.stat(write.destination).st_mode) != write.perms:
            os.chmod(write.destination, write.perms)
    except OSError as exc:
        raise FileWriteError(f"cannot set mode of {write.destination}: {exc.strerror}") from None


def _check_destination(write: FileWrite) -> None:
    try:
        info = os.lstat(write.destination)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise FileWriteError(f"cannot inspect {write.destination}: {exc.strerror}") from None
    if stat.S_ISLNK(info.st_mode) and not write.allow_symlink:
        raise FileWriteError(
            f"destination {write.destination} is a symlink; refusing to write through it "
            "(set allow_symlink = true on the template to allow)"
        )
    if stat.S_ISDIR(info.st_mode):
        raise FileWriteError(f"destination {write.destination} is a directory")


def _directory_of(write: FileWrite) -> str:
    return os.path.dirname(os.path.realpath(write.destination) if write.allow_symlink else write.destination)


def _warn_if_world_writable(directory: str) -> None:
    """Warn once per directory that any local user may write and rename in (no sticky bit).

    Not refused: Kubernetes emptyDir volumes, the usual sidecar volume, are 0777."""
    try:
        mode = os.stat(directory or ".").st_mode
    except OSError:
        return  # missing: make_dirs creates it 0700
    if mode & stat.S_IWOTH and not mode & stat.S_ISVTX and directory not in _warned_dirs:
        _warned_dirs.add(directory)
        log.warning(
            "destination directory %s is world-writable: any local user can replace the files "
            "rendered there (render into a directory only inject and the app can write, or set "
            "the sticky bit)",
            directory or ".",
        )


def _stage(write: FileWrite) -> _Temp:
    directory = _directory_of(write)
    try:
        make_dirs(directory)
        return _write_temp(directory, _encoded(write), write.perms, write.uid, write.gid)
    except OSError as exc:
        raise FileWriteError(f"cannot write {write.destination}: {exc.strerror or exc}") from None


def make_dirs(directory: str) -> None:
    """Create ``directory`` and missing parents with mode 0700 whatever the umask."""
    if not directory or os.path.isdir(directory):
        return
    make_dirs(os.path.dirname(directory))
    with contextlib.suppress(FileExistsError):
        os.mkdir(directory, DIR_MODE)
        os.chmod(directory, DIR_MODE)


@dataclass
class _Temp:
    """A fully written temp file, locked (flock) until it is renamed or discarded, so a
    sweeper can tell a live writer's temp file from one a killed writer left behind."""

    path: str
    fd: int

    def replace(self, destination: str) -> str:
        """Rename over ``destination``; return the directory to fsync afterwards."""
        target = os.path.realpath(destination) if os.path.islink(destination) else destination
        try:
            os.replace(self.path, target)
        except OSError as exc:
            self.discard()
            raise FileWriteError(f"cannot replace {destination}: {exc.strerror}") from None
        os.close(self.fd)
        return os.path.dirname(target)

    def discard(self) -> None:
        _remove_quietly(self.path)
        with contextlib.suppress(OSError):
            os.close(self.fd)


def _write_temp(directory: str, data: bytes, mode: int, uid: int, gid: int) -> _Temp:
    fd, temp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".tmp", dir=directory)  # 0600
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
        if uid != -1 or gid != -1:
            os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)
    except BaseException:
        _Temp(temp, fd).discard()
        raise
    return _Temp(temp, fd)


def sweep_stale_temps(directory: str) -> int:
    """Remove temp files that a killed writer left in ``directory``; return how many.

    A live writer holds an exclusive flock on its temp file until the rename, and a
    file younger than STALE_TEMP_S may be between creation and locking: both stay."""
    removed = 0
    try:
        names = [n for n in os.listdir(directory) if n.startswith(TEMP_PREFIX) and n.endswith(".tmp")]
    except OSError:
        return 0
    for name in names:
        removed += _remove_if_abandoned(os.path.join(directory, name))
    return removed


def _remove_if_abandoned(path: str) -> int:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return 0
    try:
        if time.time() - os.fstat(fd).st_mtime < STALE_TEMP_S:
            return 0
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return 0  # locked: a writer is alive
    finally:
        os.close(fd)
    _remove_quietly(path)
    log.debug("removed abandoned temp file %s", path)
    return 1


def _stage_and_replace(destination: str, data: bytes, mode: int, uid: int, gid: int) -> None:
    directory = os.path.dirname(destination)
    try:
        temp = _write_temp(directory, data, mode, uid, gid)
    except OSError as exc:
        raise FileWriteError(f"cannot restore {destination}: {exc.strerror}") from None
    _fsync_dir(temp.replace(destination))


def _snapshot(destination: str) -> _Previous:
    try:
        with open(destination, "rb") as handle:
            return _Previous(destination, handle.read(), stat.S_IMODE(os.fstat(handle.fileno()).st_mode))
    except FileNotFoundError:
        return _Previous(destination, None, 0)


def _fsync_dir(directory: str) -> None:
    # The renames are done: a directory that cannot be synced is worth a note, not a failure.
    try:
        fd = os.open(directory or ".", os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        log.debug("could not fsync directory %s: %s", directory, exc.strerror)


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
