"""``allow_symlink``: the one symlink inject may follow, the destination's own last component.

Parents are never followed, with or without the option: the destination is walked as
configured (``safepath.open_parent``), so a directory another user swapped for a link, and
a directory others may write, are refused exactly as without it. Only then, if the name
in that directory is a symlink, it is followed once, when nobody but root and inject's user
could have made it or changed where it leads:

* the link belongs to root or inject's user. Not to the file's owner: an app could then
  point a root write, chowned to the app, at any file root can write;
* the directory holding it is writable by no one but root and inject's user (not sticky,
  not ``allow_shared_dir``, not the file's owner), so nobody can swap the link between the
  look at its owner and the read of where it points;
* where it points is walked like any destination (no symlink on the way, the same
  shared-directory rules) and its directory is not one others may write; the target is
  not a link itself (one link, once).

``refusal`` and ``target_path`` decide; ``follow`` and ``check_landing`` do the looking.
"""

from __future__ import annotations

import os
import stat

from ..errors import FileWriteError
from .safepath import Owner, Place, other_writers

_ONLY_INJECT = Owner()  # trusts root and inject's own user, nobody else


def refusal(link: os.stat_result, directory: os.stat_result, dir_path: str) -> str | None:
    """Why the link ``link`` in the directory ``directory`` (at ``dir_path``) may not be
    followed, or None when it may."""
    if not _ONLY_INJECT.trusts_uid(link.st_uid):
        return (
            f"the symlink there belongs to uid {link.st_uid}; allow_symlink follows only links "
            "made by root or inject's user"
        )
    who = other_writers(directory, _ONLY_INJECT)
    if who is not None:
        return (
            f"it is a symlink in {dir_path}, which is {who}; allow_symlink follows a link only in a "
            "directory no one but root and inject's user can write"
        )
    return None


def target_path(dir_path: str, text: str) -> str:
    """The absolute path a link in ``dir_path`` holding ``text`` points to (``dir_path`` was
    walked without following anything, so ``..`` in ``text`` is resolved by the text alone)."""
    return os.path.normpath(os.path.join(dir_path, text))


def follow(place: Place, destination: str) -> str | None:
    """Where the link at ``place`` leads (an absolute path), None if no link is there."""
    try:
        info = os.stat(place.name, dir_fd=place.dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    if not stat.S_ISLNK(info.st_mode):
        return None
    reason = refusal(info, os.fstat(place.dir_fd), place.dir_path)
    if reason is not None:
        raise FileWriteError(f"cannot write {destination}: {reason}")
    try:
        text = os.readlink(place.name, dir_fd=place.dir_fd)
    except OSError as exc:
        raise FileWriteError(f"cannot write {destination}: cannot read its link: {exc.strerror}") from exc
    return target_path(place.dir_path, text)


def check_landing(place: Place, destination: str) -> None:
    """The link's target at ``place``: not in a directory others may write, not a link again."""
    if place.shared:
        raise FileWriteError(
            f"cannot write {destination}: its symlink leads into {place.dir_path}, a directory "
            "other users can write; allow_symlink follows a link only into a private directory"
        )
    try:
        info = os.stat(place.name, dir_fd=place.dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode):
        raise FileWriteError(
            f"cannot write {destination}: its symlink leads to {place.path}, another symlink; "
            "allow_symlink follows one link only (point it at the real file)"
        )
