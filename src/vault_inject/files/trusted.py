"""Open one of inject's own input files (the config file, a template source) only when no
user but root and inject's own could have written it: as root, such a file decides what
root writes where and which commands it runs.

The rules are the destinations' (``safepath``): the path is walked from ``/`` one name at a
time with ``lstat``; every directory on the way must be writable by no one but root and
inject's user (owned by another uid, world-writable, or group-writable for another group is
refused), except a sticky one of a trusted owner like ``/tmp``, where every name inject goes
through must then belong to root or inject. A symlink is followed only if root or inject
made it (a Kubernetes ConfigMap's ``..data`` links are root's), and the walk goes on through
its target under the same rules. The file itself must be a regular file that no one else
can write, with one link when it sits in a sticky directory.

Since nothing on the way can be changed by another user, the file opened afterwards
(``O_NOFOLLOW``, checked to be the one looked at) is the one checked.
"""

from __future__ import annotations

import errno
import os
import stat

from . import safepath

MAX_LINKS = 40  # as the kernel's ELOOP
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class Untrusted(Exception):
    """Another user could have written the file: the message says what and how."""


def open_trusted(path: str) -> int:
    """A read-only descriptor of ``path`` once the walk found no other writer; Untrusted
    (the reason) or OSError (missing, not a directory, too many links) otherwise."""
    real, seen = _walk(os.path.abspath(path))
    fd = os.open(real, _OPEN_FLAGS)
    info = os.fstat(fd)
    if (info.st_dev, info.st_ino) != (seen.st_dev, seen.st_ino):
        os.close(fd)
        raise Untrusted(f"{real} changed while inject opened it")
    return fd


def _walk(path: str) -> tuple[str, os.stat_result]:
    """The real path of ``path``'s file and what ``lstat`` found there, every step checked."""
    owner = safepath.Owner()
    dirs = [("/", _shared_dir("/", os.lstat("/"), owner))]  # the directories walked into
    pending = [name for name in path.split("/") if name]
    links = 0
    while pending:
        name = pending.pop(0)
        if name == ".":
            continue
        if name == "..":
            del dirs[max(1, len(dirs) - 1) :]
            continue
        current, shared = dirs[-1]
        here = os.path.join(current, name)
        info = os.lstat(here)
        _check_entry(here, info, owner, shared)
        if stat.S_ISLNK(info.st_mode):
            links += 1
            if links > MAX_LINKS:
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP))
            target = os.readlink(here)
            if target.startswith("/"):
                del dirs[1:]
            pending[:0] = [part for part in target.split("/") if part]
        elif pending:
            if not stat.S_ISDIR(info.st_mode):
                raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
            dirs.append((here, _shared_dir(here, info, owner)))
        else:
            return here, _checked_file("it" if here == path else here, info, owner, shared)
    raise OSError(errno.EISDIR, os.strerror(errno.EISDIR))


def _check_entry(here: str, info: os.stat_result, owner: safepath.Owner, shared: bool) -> None:
    """A name in a sticky directory must be root's or inject's; so must any symlink."""
    if (shared or stat.S_ISLNK(info.st_mode)) and not owner.trusts_uid(info.st_uid):
        what = "the symlink " if stat.S_ISLNK(info.st_mode) else ""
        where = " in a directory other users can write" if shared else ""
        raise Untrusted(f"{what}{here} belongs to uid {info.st_uid}{where}")


def _shared_dir(here: str, info: os.stat_result, owner: safepath.Owner) -> bool:
    """Refuse a directory another user may write; True for a sticky one like /tmp."""
    who = safepath.other_writers(info, owner)
    if who is None:
        return False
    if safepath.sticky(info, owner):
        return True
    raise Untrusted(f"directory {here} is {who}")


def _checked_file(here: str, info: os.stat_result, owner: safepath.Owner, shared: bool) -> os.stat_result:
    """The file at the end of the walk (``here``: its real path, or "it"): regular, no other writer."""
    if stat.S_ISDIR(info.st_mode):
        raise OSError(errno.EISDIR, os.strerror(errno.EISDIR))
    if not stat.S_ISREG(info.st_mode):
        raise Untrusted(f"{here} is {safepath.describe(info)}, not a regular file")
    who = safepath.other_writers(info, owner)
    if who is not None:
        raise Untrusted(f"{here} is {who}")
    if shared and info.st_nlink > 1:  # a hard link someone made to a file of root's
        raise Untrusted(f"{here} has {info.st_nlink} hard links in a directory other users can write")
    return info
