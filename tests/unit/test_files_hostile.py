"""files.write_all against destinations another user can tamper with (issue 11): symlinks
flipped in, symlinked parents, FIFOs and devices, owners restored by rollback.

The attacker runs as uid 65534 (setpriv); tests that need two users skip when not root."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from vault_inject.errors import FileWriteError
from vault_inject.files.write import FileWrite, write_all

NOBODY = 65534
AS_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
RACE_WRITES = 2000
RACE_DEADLINE_S = 30.0

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (a second user, chown, mknod)")

# Flip a symlink at argv[1] (to argv[2]) in and out, each state held about half a millisecond
# (about as long as a write takes from its check to its rename), until argv[3] exists.
FLIPPER = """
import os, sys, time
link, target, stop = sys.argv[1:4]
while not os.path.exists(stop):
    for step in (lambda: os.symlink(target, link), lambda: os.unlink(link)):
        try:
            step()
        except OSError:
            pass
        time.sleep(0.0005)
"""


@pytest.fixture
def volume() -> Iterator[Path]:
    """A 1777 directory (like /tmp) under a 0755 one in /tmp, so uid 65534 can work in it."""
    base = Path(tempfile.mkdtemp(prefix="inject-vol-", dir="/tmp"))
    base.chmod(0o755)
    vol = base / "vol"
    vol.mkdir()
    vol.chmod(0o1777)
    try:
        yield vol
    finally:
        shutil.rmtree(base)


def _remove_our_file(path: Path) -> None:
    """Remove ``path`` if it is a regular file (in a sticky directory only we can have made it)."""
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISREG(os.lstat(path).st_mode):
            path.unlink()


@needs_root
def test_symlink_flipped_in_and_out_never_redirects_the_write(tmp_path: Path, volume: Path) -> None:
    """While uid 65534 flips a symlink to a root-only file in and out of the destination,
    RACE_WRITES writes never change that file: each writes the real name or is refused."""
    victim = tmp_path / "victim"
    victim.write_text("original\n")
    victim.chmod(0o644)
    destination = volume / "app.conf"
    stop = volume.parent / "stop"
    flipper = subprocess.Popen(
        [*AS_NOBODY, sys.executable, "-c", FLIPPER, str(destination), str(victim), str(stop)]
    )
    deadline = time.monotonic() + RACE_DEADLINE_S
    try:
        for n in range(RACE_WRITES):
            if time.monotonic() > deadline:
                break
            with contextlib.suppress(FileWriteError):  # refused: the link was there when looked at
                write_all([FileWrite(str(destination), f"secret {n}\n")])
            _remove_our_file(destination)  # only a missing name can be flipped again
    finally:
        stop.touch()
        flipper.wait(timeout=10)
    assert victim.read_text() == "original\n"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o644


def test_symlinked_parent_directory_is_refused(tmp_path: Path) -> None:
    """A symlink anywhere on the destination's path is refused, naming it; nothing is written
    where it points."""
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    destination = tmp_path / "link" / "sub" / "app.conf"
    with pytest.raises(FileWriteError) as info:
        write_all([FileWrite(str(destination), "x")])
    assert str(tmp_path / "link") in str(info.value)
    assert "symlink" in str(info.value)
    assert os.listdir(real) == []


def test_allow_symlink_never_follows_a_symlinked_parent(tmp_path: Path) -> None:
    """allow_symlink concerns the destination's last component only: a symlinked parent is
    refused even when root made it, naming it; nothing lands where it points (issue 24)."""
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(FileWriteError) as info:
        write_all([FileWrite(str(tmp_path / "link" / "app.conf"), "x", allow_symlink=True)])
    assert str(tmp_path / "link") in str(info.value)
    assert "\n" not in str(info.value)
    assert os.listdir(real) == []


def test_world_writable_directory_is_refused_naming_it(tmp_path: Path) -> None:
    """A 0777 destination directory (no sticky bit) is refused: the error names it and the option."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(FileWriteError) as info:
        write_all([FileWrite(str(shared / "a.conf"), "x")])
    assert str(shared) in str(info.value)
    assert "allow_shared_dir" in str(info.value)
    assert os.listdir(shared) == []


def test_world_writable_ancestor_is_refused_too(tmp_path: Path) -> None:
    """Not only the last directory: a 0777 directory higher up the path is refused, naming it."""
    shared = tmp_path / "shared"
    (shared / "private").mkdir(parents=True)
    shared.chmod(0o777)
    with pytest.raises(FileWriteError, match=str(shared)):
        write_all([FileWrite(str(shared / "private" / "a.conf"), "x")])


def test_allow_shared_dir_writes_into_a_world_writable_directory(tmp_path: Path) -> None:
    """allow_shared_dir lets a write into a 0777 directory through, with the usual mode."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    write_all([FileWrite(str(shared / "a.conf"), "x", allow_shared_dir=True)])
    assert (shared / "a.conf").read_text() == "x"
    assert stat.S_IMODE((shared / "a.conf").stat().st_mode) == 0o600


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _socket(path: Path) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))


def _char_device(path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("mknod of a device needs root")
    os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 3))  # like /dev/null


@pytest.mark.parametrize(("make", "kind"), [(_fifo, "FIFO"), (_socket, "socket"), (_char_device, "device")])
def test_destination_that_is_not_a_regular_file_is_an_error(tmp_path: Path, make: object, kind: str) -> None:
    """A FIFO, socket or device at the destination is an error naming it and its kind (never a hang)."""
    destination = tmp_path / "app.conf"
    make(destination)  # type: ignore[operator]
    with pytest.raises(FileWriteError) as info:
        write_all([FileWrite(str(destination), "x")])
    assert str(destination) in str(info.value)
    assert kind in str(info.value)
    assert not stat.S_ISREG(os.lstat(destination).st_mode)


def test_file_of_the_same_size_but_other_content_is_replaced(tmp_path: Path) -> None:
    """Equal size is only the first test: same-size different content is still rewritten."""
    destination = tmp_path / "app.conf"
    destination.write_text("aaaa")
    commit = write_all([FileWrite(str(destination), "bbbb")])
    assert commit.changed == [str(destination)]
    assert destination.read_text() == "bbbb"


@needs_root
def test_created_directories_belong_to_the_files_owner(tmp_path: Path) -> None:
    """Directories created for a file owned by uid 65534 are owned by it, mode 0700."""
    destination = tmp_path / "a" / "b" / "app.conf"
    write_all([FileWrite(str(destination), "x", uid=NOBODY, gid=NOBODY)])
    for directory in (tmp_path / "a", tmp_path / "a" / "b"):
        info = directory.stat()
        assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (NOBODY, NOBODY, 0o700)
    assert destination.stat().st_uid == NOBODY


@needs_root
def test_rollback_restores_the_previous_owner_and_mode(tmp_path: Path) -> None:
    """Rolling back puts back the old content with its old owner and mode, not inject's."""
    destination = tmp_path / "app.conf"
    destination.write_text("before")
    os.chown(destination, NOBODY, NOBODY)
    destination.chmod(0o640)
    commit = write_all([FileWrite(str(destination), "after")])
    assert destination.stat().st_uid == 0
    commit.rollback()
    info = destination.stat()
    assert destination.read_text() == "before"
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (NOBODY, NOBODY, 0o640)


@needs_root
def test_attacker_file_in_a_sticky_directory_is_refused(volume: Path) -> None:
    """In a 1777 directory, a destination another user created is refused, naming it and its owner."""
    planted = volume / "app.conf"
    subprocess.run([*AS_NOBODY, "touch", str(planted)], check=True)
    with pytest.raises(FileWriteError) as info:
        write_all([FileWrite(str(planted), "secret")])
    assert str(planted) in str(info.value)
    assert str(NOBODY) in str(info.value)
    assert planted.read_text() == ""


@needs_root
def test_allow_symlink_does_not_follow_another_users_link(tmp_path: Path, volume: Path) -> None:
    """Even with allow_symlink, a destination symlink made by uid 65534 is refused, naming its owner."""
    victim = tmp_path / "victim"
    victim.write_text("original\n")
    link = volume / "app.conf"
    subprocess.run([*AS_NOBODY, "ln", "-s", str(victim), str(link)], check=True)
    with pytest.raises(FileWriteError, match=str(NOBODY)):
        write_all([FileWrite(str(link), "secret", allow_symlink=True)])
    assert victim.read_text() == "original\n"


@needs_root
def test_hard_link_in_a_sticky_directory_is_refused(tmp_path: Path, volume: Path) -> None:
    """In a 1777 directory, a destination with more than one hard link is refused, naming it."""
    other = volume / "elsewhere"
    other.write_text("root's\n")
    destination = volume / "app.conf"
    os.link(other, destination)
    with pytest.raises(FileWriteError, match="hard link"):
        write_all([FileWrite(str(destination), "secret")])
    assert other.read_text() == "root's\n"


# --- allow_symlink: the last component only, a trusted link in a private directory (issue 24) ---


def _victim_dir(tmp_path: Path) -> Path:
    """A root-only directory holding a root-owned ``out.txt`` ("original")."""
    victim = tmp_path / "victimdir"
    victim.mkdir(mode=0o700)
    (victim / "out.txt").write_text("original\n")
    return victim


def _untouched(victim: Path) -> bool:
    info = (victim / "out.txt").stat()
    return (
        os.listdir(victim) == ["out.txt"]
        and (victim / "out.txt").read_text() == "original\n"
        and info.st_uid == 0
    )


def _refused(write: FileWrite) -> str:
    """The one-line message write_all refuses ``write`` with."""
    with pytest.raises(FileWriteError) as info:
        write_all([write])
    assert "\n" not in str(info.value)
    return str(info.value)


@needs_root
@pytest.mark.parametrize("allow_shared_dir", [False, True])
def test_allow_symlink_never_follows_a_parent_another_user_planted(
    tmp_path: Path, volume: Path, allow_shared_dir: bool
) -> None:
    """The attack of issue 24: destination shared/sub/out.txt with shared 0777; uid 65534 runs
    `ln -s victimdir shared/sub`. inject refuses (naming the shared directory or the link) and
    the root-owned victimdir/out.txt keeps its content."""
    shared = volume
    shared.chmod(0o777)
    victim = _victim_dir(tmp_path)
    subprocess.run([*AS_NOBODY, "ln", "-s", str(victim), str(shared / "sub")], check=True)
    write = FileWrite(
        str(shared / "sub" / "out.txt"), "secret", allow_symlink=True, allow_shared_dir=allow_shared_dir
    )
    message = _refused(write)
    assert str(shared / "sub" if allow_shared_dir else shared) in message
    assert _untouched(victim)


@needs_root
@pytest.mark.parametrize(("mode", "allow_shared_dir"), [(0o1777, False), (0o777, True)])
def test_allow_symlink_refuses_roots_link_in_a_directory_others_can_write(
    tmp_path: Path, volume: Path, mode: int, allow_shared_dir: bool
) -> None:
    """A link root made, but in a directory another user can write (sticky like /tmp, or 0777
    with allow_shared_dir), is not followed: that user could swap it while inject reads it."""
    volume.chmod(mode)
    victim = _victim_dir(tmp_path)
    link = volume / "out.txt"
    link.symlink_to(victim / "out.txt")
    message = _refused(FileWrite(str(link), "secret", allow_symlink=True, allow_shared_dir=allow_shared_dir))
    assert str(volume) in message
    assert _untouched(victim)
    assert link.is_symlink()


@needs_root
def test_allow_symlink_refuses_a_link_in_a_directory_the_files_owner_can_write(tmp_path: Path) -> None:
    """The file's owner (uid 65534) may write the link's directory: the link is not followed,
    or the app could point a root write (chowned to it) at any root file."""
    app = tmp_path / "app"
    app.mkdir(mode=0o700)
    os.chown(app, NOBODY, NOBODY)
    victim = _victim_dir(tmp_path)
    (app / "out.txt").symlink_to(victim / "out.txt")
    message = _refused(FileWrite(str(app / "out.txt"), "secret", uid=NOBODY, gid=NOBODY, allow_symlink=True))
    assert str(app) in message
    assert f"uid {NOBODY}" in message
    assert _untouched(victim)


@needs_root
def test_allow_symlink_refuses_a_link_into_a_directory_others_can_write(tmp_path: Path, volume: Path) -> None:
    """Root's link in a private directory that points into a sticky shared directory is refused,
    naming it; nothing is written there."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    (private / "out.txt").symlink_to(volume / "out.txt")
    message = _refused(FileWrite(str(private / "out.txt"), "secret", allow_symlink=True))
    assert str(volume) in message
    assert os.listdir(volume) == []


def test_allow_symlink_follows_one_link_only(tmp_path: Path) -> None:
    """A link to a link, or to a path with a symlinked directory on it, is refused naming the
    second link; the final targets are untouched."""
    real = tmp_path / "real"
    real.mkdir()
    (real / "out.txt").write_text("original\n")
    (tmp_path / "hop").symlink_to(real)
    (tmp_path / "second").symlink_to(real / "out.txt")
    for target, named in ((tmp_path / "hop" / "out.txt", "hop"), (tmp_path / "second", "second")):
        link = tmp_path / f"to-{named}"
        link.symlink_to(target)
        assert str(tmp_path / named) in _refused(FileWrite(str(link), "secret", allow_symlink=True))
    assert (real / "out.txt").read_text() == "original\n"


def test_allow_symlink_follows_a_relative_link_in_a_private_directory(tmp_path: Path) -> None:
    """The legitimate use: a link inject's user made, in and into directories only it can write,
    relative to its directory: the target gets the content (0600), the link stays, and a
    rollback restores the target."""
    (tmp_path / "conf").mkdir()
    (tmp_path / "secrets").mkdir()
    target = tmp_path / "secrets" / "app.conf"
    target.write_text("before\n")
    link = tmp_path / "conf" / "app.conf"
    link.symlink_to("../secrets/app.conf")
    commit = write_all([FileWrite(str(link), "after\n", allow_symlink=True)])
    assert link.is_symlink()
    assert target.read_text() == "after\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    commit.rollback()
    assert target.read_text() == "before\n"
    assert link.is_symlink()


def test_a_links_target_is_resolved_by_its_text_alone() -> None:
    """A relative link's text is joined to the (walked, link-free) directory and normalised."""
    from vault_inject.files.links import target_path

    assert target_path("/app/conf", "../secrets/a.pem") == "/app/secrets/a.pem"
    assert target_path("/app/conf", "/run/a.pem") == "/run/a.pem"
    assert target_path("/app/conf", "a.pem") == "/app/conf/a.pem"
