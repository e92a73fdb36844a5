"""Reach a destination's directory without following anything another user could plant.

Destinations often sit on volumes other containers can write, so no path is resolved by
the kernel after the first look. ``open_parent`` walks the absolute path from ``/`` one
component at a time, each with ``openat(dir_fd, name, O_DIRECTORY|O_NOFOLLOW)``, and
returns an open descriptor of the destination's directory plus the file name in it. All
later work (read, temp file, rename, unlink) is relative to that descriptor, so swapping
a directory or the file for a symlink after the walk redirects nothing.

On the way, every directory must be *trusted*:

* no component is a symlink, whatever the template says (``allow_symlink`` concerns only
  the destination's own name, after this walk: ``links``);
* a directory is not writable by anyone but root, inject's user and the file's owner
  (owned by another user, or group/world-writable for another group), unless it has the
  sticky bit (like /tmp) or the template sets ``allow_shared_dir``. In such a shared
  directory another user can still create names, so every entry inject relies on there
  (the next directory, the destination) must belong to root, inject or the file's owner;
* a missing directory is created 0700 with ``mkdirat`` and then given to the file's owner
  (``fchown``/``fchmod`` on its own descriptor), so an app run with ``--user`` can reach it.

``open_existing`` opens what is at the destination only after ``fstatat`` shows a regular
file, with ``O_NONBLOCK|O_NOFOLLOW`` so nothing can make it block, and ``read_bounded``
never reads more than it was asked for.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from dataclasses import dataclass

from ..errors import FileWriteError

log = logging.getLogger(__name__)

DIR_MODE = 0o700
MAX_FILE_BYTES = 16 * 1024 * 1024  # nothing inject renders is larger (render.py's cap)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC
_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFDIR: "a directory",
    stat.S_IFLNK: "a symlink",
    stat.S_IFREG: "a regular file",
}

_warned_dirs: set[str] = set()  # shared directories already warned about


@dataclass(frozen=True)
class Owner:
    """Who the file will belong to; with root and inject's user, the only trusted writers."""

    uid: int = -1
    gid: int = -1

    def trusts_uid(self, uid: int) -> bool:
        """True for root, inject's own user and the file's owner."""
        return uid in (0, os.geteuid(), self.uid)

    def trusts_gid(self, gid: int) -> bool:
        """True for root's group, inject's own group and the file's group."""
        return gid in (0, os.getegid(), self.gid)


@dataclass(frozen=True)
class Rules:
    """How strict the walk is for one destination."""

    owner: Owner = Owner()
    allow_shared_dir: bool = False


@dataclass
class Place:
    """An open directory and a name in it: where one destination is."""

    dir_fd: int
    dir_path: str
    name: str
    shared: bool  # others may create names in the directory: entries' owners are checked

    @property
    def path(self) -> str:
        """The destination as a path (for messages)."""
        return os.path.join(self.dir_path, self.name)

    def close(self) -> None:
        """Close the directory descriptor (idempotent)."""
        if self.dir_fd >= 0:
            os.close(self.dir_fd)
            self.dir_fd = -1


def open_parent(destination: str, rules: Rules) -> Place:
    """Walk to ``destination``'s directory (see module docstring); FileWriteError names the culprit."""
    path = os.path.abspath(destination)
    parent, name = os.path.split(path)
    if not name:
        raise FileWriteError(f"cannot write {destination}: it names a directory")
    fd, shared = _open_root(destination)
    current = "/"
    for component in [c for c in parent.split("/") if c]:
        here = os.path.join(current, component)
        try:
            fd, shared = _step(fd, shared, here, component, destination, rules)
        except OSError as exc:
            raise FileWriteError(f"cannot write {destination}: {here}: {exc.strerror or exc}") from exc
        current = here
    return Place(fd, current, name, shared)


def _open_root(destination: str) -> tuple[int, bool]:
    try:
        return os.open("/", _DIR_FLAGS), False
    except OSError as exc:
        raise FileWriteError(f"cannot write {destination}: cannot open /: {exc.strerror}") from exc


def _step(
    fd: int, shared: bool, here: str, component: str, destination: str, rules: Rules
) -> tuple[int, bool]:
    """From the open directory ``fd`` into ``component``: checked, created if missing."""
    try:
        info = _lstat_at(fd, component)
        if info is None:
            child = _make_dir(fd, component, here, destination, rules.owner)
        else:
            _check_entry(info, here, destination, shared, rules.owner, want_dir=True)
            child = _open_dir(fd, component, info, here, destination)
    finally:
        os.close(fd)
    try:
        return child, _check_dir(os.fstat(child), here, destination, rules)
    except BaseException:
        os.close(child)
        raise


def _lstat_at(fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _make_dir(fd: int, name: str, here: str, destination: str, owner: Owner) -> int:
    try:
        os.mkdir(name, DIR_MODE, dir_fd=fd)
    except FileExistsError:  # created meanwhile: look at it like any existing entry
        info = _lstat_at(fd, name)
        if info is None:
            raise FileWriteError(f"cannot write {destination}: {here} keeps changing") from None
        _check_entry(info, here, destination, True, owner, want_dir=True)
        return _open_dir(fd, name, info, here, destination)
    child = _open_dir(fd, name, None, here, destination)
    try:
        if os.fstat(child).st_uid != os.geteuid():  # swapped between mkdir and open
            raise FileWriteError(f"cannot write {destination}: {here} changed while inject created it")
        if owner.uid != -1 or owner.gid != -1:
            os.fchown(child, owner.uid, owner.gid)  # so an app run as that user can traverse it
        os.fchmod(child, DIR_MODE)  # whatever the umask
    except OSError as exc:
        os.close(child)
        raise FileWriteError(
            f"cannot write {destination}: cannot set owner of {here}: {exc.strerror}"
        ) from exc
    except BaseException:
        os.close(child)
        raise
    return child


def _open_dir(fd: int, name: str, seen: os.stat_result | None, here: str, destination: str) -> int:
    try:
        child = os.open(name, _DIR_FLAGS, dir_fd=fd)
    except PermissionError:  # traversable but not readable (non-root inject): a path-only fd
        child = os.open(name, _DIR_FLAGS | os.O_PATH, dir_fd=fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise FileWriteError(
                f"cannot write {destination}: {here} changed while inject opened it"
            ) from exc
        raise
    if seen is not None and (os.fstat(child).st_ino, os.fstat(child).st_dev) != (seen.st_ino, seen.st_dev):
        os.close(child)
        raise FileWriteError(f"cannot write {destination}: {here} changed while inject opened it")
    return child


def _check_entry(
    info: os.stat_result, here: str, destination: str, shared: bool, owner: Owner, *, want_dir: bool
) -> None:
    """An existing name on the path: the right kind, and in a shared directory, a trusted owner."""
    kind = stat.S_IFMT(info.st_mode)
    if kind == stat.S_IFLNK:
        raise FileWriteError(
            f"cannot write {destination}: {here} is a symlink; refusing to follow it "
            "(give the real path; allow_symlink concerns only the file's own name, never a directory)"
        )
    if want_dir and kind != stat.S_IFDIR:
        raise FileWriteError(f"cannot write {destination}: {here} is {describe(info)}, not a directory")
    if shared and not owner.trusts_uid(info.st_uid):
        raise FileWriteError(
            f"cannot write {destination}: {here} belongs to uid {info.st_uid}, who could replace "
            "what inject writes; remove it (it is in a directory other users can write)"
        )


def _check_dir(info: os.stat_result, here: str, destination: str, rules: Rules) -> bool:
    """Refuse a directory others may write; return True when it is shared (sticky or allowed)."""
    who = other_writers(info, rules.owner)
    if who is None:
        return False
    if sticky(info, rules.owner):
        return True
    if not rules.allow_shared_dir:
        raise FileWriteError(
            f"cannot write {destination}: directory {here} is {who}, so another user could replace "
            "what inject writes there (render into a directory only inject and the app can write, "
            "set its sticky bit, or set allow_shared_dir = true on the template)"
        )
    if here not in _warned_dirs:
        _warned_dirs.add(here)
        log.warning("destination directory %s is %s (allowed by allow_shared_dir)", here, who)
    return True


def sticky(info: os.stat_result, owner: Owner) -> bool:
    """A directory like /tmp: others may add names in it but not rename or remove inject's."""
    return bool(info.st_mode & stat.S_ISVTX) and owner.trusts_uid(info.st_uid)


def other_writers(info: os.stat_result, owner: Owner) -> str | None:
    """Who besides root, inject's user and ``owner`` may write ``info`` ("owned by uid N",
    "world-writable", "writable by group G"), or None when no one else may."""
    if not owner.trusts_uid(info.st_uid):
        return f"owned by uid {info.st_uid}"
    if info.st_mode & stat.S_IWOTH:
        return "world-writable"
    if info.st_mode & stat.S_IWGRP and not owner.trusts_gid(info.st_gid):
        return f"writable by group {info.st_gid}"
    return None


def describe(info: os.stat_result) -> str:
    """What kind of file ``info`` is, for messages ("a FIFO", "a directory", ...)."""
    return _KINDS.get(stat.S_IFMT(info.st_mode), "not a regular file")


def existing(place: Place, owner: Owner, destination: str) -> os.stat_result | None:
    """What is at ``place`` now: None, or a regular file (anything else is a FileWriteError)."""
    info = _lstat_at(place.dir_fd, place.name)
    if info is None:
        return None
    if not stat.S_ISREG(info.st_mode):
        kind = describe(info)
        hint = "; refusing to write through it (set allow_symlink = true on the template to allow)"
        raise FileWriteError(
            f"destination {destination} is {kind}, not a regular file" + (hint if kind == "a symlink" else "")
        )
    if place.shared and not owner.trusts_uid(info.st_uid):
        raise FileWriteError(
            f"cannot write {destination}: {place.path} belongs to uid {info.st_uid} in a directory "
            "other users can write; remove it"
        )
    if place.shared and info.st_nlink > 1:  # a hard link someone made to another file
        raise FileWriteError(
            f"cannot write {destination}: {place.path} has {info.st_nlink} hard links in a directory "
            "other users can write; remove it"
        )
    return info


def open_existing(place: Place, seen: os.stat_result, destination: str) -> int:
    """Open the regular file ``seen`` at ``place`` for reading, never blocking, never following."""
    try:
        fd = os.open(place.name, _FILE_FLAGS, dir_fd=place.dir_fd)
    except OSError as exc:
        raise FileWriteError(f"cannot read {destination}: {exc.strerror}") from exc
    info = os.fstat(fd)
    if (info.st_ino, info.st_dev) != (seen.st_ino, seen.st_dev) or not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise FileWriteError(f"cannot read {destination}: it changed while inject opened it")
    return fd


def read_upto(fd: int, count: int) -> bytes:
    """At most ``count`` bytes from ``fd`` (fewer at end of file)."""
    chunks, total = [], 0
    while total < count:
        chunk = os.read(fd, min(1 << 20, count - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def read_bounded(fd: int, limit_bytes: int, destination: str) -> bytes:
    """All of ``fd`` if it holds at most ``limit_bytes``; a file holding more is a FileWriteError."""
    data = read_upto(fd, limit_bytes + 1)
    if len(data) <= limit_bytes:
        return data
    raise FileWriteError(
        f"cannot replace {destination}: the file there is larger than {limit_bytes} bytes, "
        "more than inject ever renders (remove it if it is not needed)"
    )


def read_regular_file(path: str, limit_bytes: int = MAX_FILE_BYTES) -> bytes | None:
    """The content of ``path`` if it is a regular file of at most ``limit_bytes``, else None.

    For reports (``inject plan``): never blocks on a FIFO, never opens a device."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > limit_bytes:
            return None
        return read_bounded(fd, limit_bytes, path)
    except (OSError, FileWriteError):
        return None
    finally:
        os.close(fd)
