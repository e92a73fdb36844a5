"""The only module that writes rendered files (with its helpers ``safepath``, the walk to a
destination's directory, and ``tempfiles``, the locked temp files and their sweep).

Destinations may sit on a volume other users can write, so every step works on an open
directory descriptor, never on a path the kernel resolves again (``safepath`` explains
the walk and what it refuses: symlinks on the path, directories others may write,
entries other users planted in a sticky directory, anything but a regular file at the
destination).

For each file:

1. ``safepath.open_parent`` opens the destination's directory (creating missing ones 0700,
   owned by the file's owner); with ``allow_symlink``, a link at the destination's own name
   (never a directory on the way) is followed once, if ``links`` allows it, and its target's
   directory is walked the same way.
2. What is there now must be absent or a regular file (``fstatat``, no open before that).
   If its size equals the new content's, it is read (``O_NONBLOCK|O_NOFOLLOW``, never more
   than that size) and compared; unchanged content is not rewritten, only its mode and
   owner are corrected.
3. Staging: the old file is read for rollback (bounded by ``MAX_FILE_BYTES``) with its
   mode and owner; a temp file is created in the directory descriptor (``tempfiles``:
   ``O_CREAT|O_EXCL|O_NOFOLLOW``, 0600, locked), written, chowned and chmodded; then every
   temp file is fsynced, several at once (the filesystem commits them together).
4. Only when every file is staged: each temp file is renamed over its destination with
   ``renameat`` (both names relative to the same directory descriptor), then each
   directory is fsynced. A failure before this step leaves every destination as it was.

``Commit.rollback`` walks to each directory the same way and puts back the old content,
mode and owner (or removes a file that did not exist), used when a check command rejects
the new files.

Every write also sweeps the destination directories for temp files a killed writer
left behind (a live writer holds an flock on its own until the rename).
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..errors import FileWriteError
from ..fanout import fan_out
from ..model import FileWrite as FileWrite  # here since model: the loop holds writes without files
from . import links, safepath, tempfiles
from .safepath import MAX_FILE_BYTES, Owner, Place, Rules
from .tempfiles import STALE_TEMP_S as STALE_TEMP_S
from .tempfiles import TEMP_PREFIX as TEMP_PREFIX
from .tempfiles import sweep_stale_temps as sweep_stale_temps

log = logging.getLogger(__name__)

SYNC_WORKERS = 8  # concurrent fsyncs of the staged temp files


@dataclass(frozen=True)
class _Previous:
    destination: str  # as configured, for messages
    real: str  # the path replaced (a followed link's target), so rollback resolves nothing
    content: bytes | None  # None: the file did not exist
    mode: int = 0
    uid: int = -1
    gid: int = -1
    allow_shared_dir: bool = False


@dataclass
class Commit:
    """The files one write replaced, so they can be put back."""

    changed: list[str] = field(default_factory=list)
    previous: list[_Previous] = field(default_factory=list)

    def rollback(self) -> None:
        """Restore every replaced file (atomically, with its owner and mode); remove created ones."""
        for prev in reversed(self.previous):
            _restore(prev)


@dataclass
class _Target:
    """One destination, its directory open, and what is there now."""

    write: FileWrite
    place: Place
    data: bytes
    current: os.stat_result | None


def write_all(writes: Iterable[FileWrite]) -> Commit:
    """Write every changed file, all or nothing; return what changed (FileWriteError names it)."""
    with _Dirs() as dirs:
        targets = [_open_target(write, dirs) for write in writes]
        for target in _one_per_directory(targets):
            tempfiles.sweep(target.place.dir_fd, target.place.dir_path)  # also when nothing changed
        pending = [t for t in targets if not _unchanged(t)]
        staged = _stage_all(pending)
        return _replace_all(staged)


def _one_per_directory(targets: list[_Target]) -> list[_Target]:
    return list({t.place.dir_path: t for t in targets}.values())


class _Dirs:
    """The directories of one write, each walked once: destinations in one directory (with
    the same owner and rules) share its descriptor, which is closed when the write ends.
    500 files in one directory: one walk from ``/``, not 500."""

    def __init__(self) -> None:
        self._walked: dict[tuple[str, Rules], Place] = {}

    def __enter__(self) -> _Dirs:
        return self

    def __exit__(self, *_: object) -> None:
        for place in self._walked.values():
            place.close()

    def place(self, path: str, rules: Rules) -> Place:
        """Where ``path`` is: its directory walked now or earlier in this write."""
        parent, name = os.path.split(os.path.abspath(path))
        if not name:
            return safepath.open_parent(path, rules)  # names a directory: the walk says so
        walked = self._walked.get((parent, rules))
        if walked is None:
            walked = self._walked[(parent, rules)] = safepath.open_parent(path, rules)
        return Place(walked.dir_fd, walked.dir_path, name, walked.shared)


def _open_target(write: FileWrite, dirs: _Dirs) -> _Target:
    data = _encoded(write)
    rules = Rules(Owner(write.uid, write.gid), write.allow_shared_dir)
    place = dirs.place(write.destination, rules)
    target = links.follow(place, write.destination) if write.allow_symlink else None
    if target is not None:
        place = _walk_to_target(dirs, target, rules, write.destination)
        links.check_landing(place, write.destination)
    return _Target(write, place, data, safepath.existing(place, rules.owner, write.destination))


def _walk_to_target(dirs: _Dirs, target: str, rules: Rules, destination: str) -> Place:
    """The directory a followed link points into, walked as strictly as any destination's."""
    try:
        return dirs.place(target, rules)
    except FileWriteError as exc:
        raise FileWriteError(f"{destination} is a symlink to {target}: {exc}") from None


def _encoded(write: FileWrite) -> bytes:
    try:
        return write.content.encode()
    except UnicodeEncodeError:  # e.g. env() of a variable holding bytes that are not UTF-8
        raise FileWriteError(
            f"cannot write {write.destination}: the rendered text is not valid UTF-8 "
            "(a value from the environment or the server holds undecodable bytes)"
        ) from None


def _unchanged(target: _Target) -> bool:
    """True when the file there already holds the content (sizes first, then a bounded read)."""
    if target.current is None or target.current.st_size != len(target.data):
        return False
    fd = safepath.open_existing(target.place, target.current, target.write.destination)
    try:
        same = safepath.read_upto(fd, len(target.data) + 1) == target.data
        if same:
            _fix_mode_and_owner(fd, target.write)
        return same
    except OSError as exc:
        raise FileWriteError(f"cannot read {target.write.destination}: {exc.strerror}") from exc
    finally:
        os.close(fd)


def _fix_mode_and_owner(fd: int, write: FileWrite) -> None:
    info = os.fstat(fd)
    try:
        if (write.uid not in (-1, info.st_uid)) or (write.gid not in (-1, info.st_gid)):
            os.fchown(fd, write.uid, write.gid)
        if stat.S_IMODE(info.st_mode) != write.perms:
            os.fchmod(fd, write.perms)
    except OSError as exc:
        raise FileWriteError(f"cannot set mode of {write.destination}: {exc.strerror}") from exc


def _stage_all(pending: list[_Target]) -> list[tuple[_Target, _Previous, tempfiles.Temp]]:
    staged: list[tuple[_Target, _Previous, tempfiles.Temp]] = []
    try:
        for target in pending:
            staged.append(_stage(target))
        _sync_all(staged)
    except BaseException:
        for _, _, temp in staged:
            temp.discard()
        raise
    return staged


def _sync_all(staged: list[tuple[_Target, _Previous, tempfiles.Temp]]) -> None:
    """fsync every temp file before any rename, on a few threads at once: the filesystem
    commits concurrent fsyncs together (far faster than one after another: see
    ``benchmarks/RESULTS.md``), and each file is still on disk before its rename."""

    def sync(item: tuple[_Target, _Previous, tempfiles.Temp]) -> None:
        try:
            item[2].sync()
        except OSError as exc:
            raise FileWriteError(f"cannot write {item[0].write.destination}: {exc.strerror}") from None

    fan_out(staged, sync, workers=SYNC_WORKERS, name="inject-fsync")


def _stage(target: _Target) -> tuple[_Target, _Previous, tempfiles.Temp]:
    write = target.write
    previous = _snapshot(target)
    try:
        temp = tempfiles.write_temp(
            target.place.dir_fd, target.data, write.perms, write.uid, write.gid, sync=False
        )
    except OSError as exc:
        raise FileWriteError(f"cannot write {write.destination}: {exc.strerror or exc}") from exc
    return target, previous, temp


def _snapshot(target: _Target) -> _Previous:
    write, place = target.write, target.place
    if target.current is None:
        return _Previous(write.destination, place.path, None, allow_shared_dir=write.allow_shared_dir)
    fd = safepath.open_existing(place, target.current, write.destination)
    try:
        content = safepath.read_bounded(fd, MAX_FILE_BYTES, write.destination)
        info = os.fstat(fd)
    except OSError as exc:
        raise FileWriteError(f"cannot read {write.destination}: {exc.strerror}") from exc
    finally:
        os.close(fd)
    mode = stat.S_IMODE(info.st_mode)
    return _Previous(
        write.destination, place.path, content, mode, info.st_uid, info.st_gid, write.allow_shared_dir
    )


def _replace_all(staged: list[tuple[_Target, _Previous, tempfiles.Temp]]) -> Commit:
    commit = Commit()
    for n, (target, previous, temp) in enumerate(staged):
        try:
            temp.replace(target.place, target.write.destination)
        except FileWriteError:
            for _, _, later in staged[n + 1 :]:
                later.discard()
            raise
        commit.previous.append(previous)
        commit.changed.append(target.write.destination)
        log.info("wrote %s", target.write.destination)
    for target in _one_per_directory([s[0] for s in staged]):  # each directory once, after all renames
        _fsync_dir(target.place)
    return commit


def _restore(prev: _Previous) -> None:
    place = safepath.open_parent(prev.real, Rules(Owner(prev.uid, prev.gid), prev.allow_shared_dir))
    try:
        if prev.content is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(place.name, dir_fd=place.dir_fd)
        else:
            tempfiles.write_temp(place.dir_fd, prev.content, prev.mode, prev.uid, prev.gid).replace(
                place, prev.destination
            )
        _fsync_dir(place)
    except OSError as exc:
        raise FileWriteError(f"cannot restore {prev.destination}: {exc.strerror}") from exc
    finally:
        place.close()


def _fsync_dir(place: Place) -> None:
    # The renames are done: a directory that cannot be synced is worth a note, not a failure.
    try:
        os.fsync(place.dir_fd)
    except OSError as exc:
        log.debug("could not fsync directory %s: %s", place.dir_path, exc.strerror)
