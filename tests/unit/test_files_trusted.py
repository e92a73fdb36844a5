"""files.trusted: as root, inject's config file and template sources are opened only when no
other user could have written them or any directory on their way (issue 24, finding 6).

The walk itself (symlinks, ``..``, loops) runs as any user; the owner checks need root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vault_inject.errors import UsageError
from vault_inject.files import read_text, trusted

NOBODY = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown to another user)")


def _file(path: Path, text: str = "x = 1\n", mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def _read(path: Path | str) -> str:
    fd = trusted.open_trusted(str(path))
    with open(fd, encoding="utf-8") as handle:
        return handle.read()


def test_a_private_file_is_read(volume: Path) -> None:
    """A 0644 file of inject's user in a 0755 directory of its own is read."""
    assert _read(_file(volume / "inject.toml")) == "x = 1\n"


def test_relative_absolute_and_dotdot_symlinks_are_followed_and_checked(volume: Path) -> None:
    """A ConfigMap-style ``..data`` layout, an absolute link and a ``..`` in a link target all
    reach the same file; the walk follows them like the kernel does."""
    _file(volume / "..2024" / "inject.toml", "y = 2\n")
    (volume / "..data").symlink_to("..2024")
    (volume / "inject.toml").symlink_to("..data/inject.toml")
    (volume / "sub").mkdir()
    (volume / "sub" / "up.toml").symlink_to("../..data/../inject.toml")
    (volume / "abs.toml").symlink_to(volume / "sub" / "up.toml")
    for name in ("inject.toml", "sub/up.toml", "abs.toml", "sub/../inject.toml"):
        assert _read(f"{volume}/{name}") == "y = 2\n"


def test_a_symlink_loop_is_an_error_not_a_hang(volume: Path) -> None:
    """Two links pointing at each other end in ELOOP."""
    (volume / "a").symlink_to("b")
    (volume / "b").symlink_to("a")
    with pytest.raises(OSError, match="symbolic links"):
        _read(volume / "a")


def test_missing_files_and_directories_are_oserrors(volume: Path) -> None:
    """A missing file, a file used as a directory and a directory are OSErrors (read_text's "not found", ...)."""
    _file(volume / "f")
    for path, kind in [
        (volume / "missing", FileNotFoundError),
        (volume / "f" / "x", NotADirectoryError),
        (volume, IsADirectoryError),
    ]:
        with pytest.raises(kind):
            _read(path)


def test_a_fifo_is_refused_without_blocking(volume: Path) -> None:
    """A FIFO is not a regular file: refused, never opened."""
    os.mkfifo(volume / "inject.toml")
    with pytest.raises(trusted.Untrusted, match="a FIFO"):
        _read(volume / "inject.toml")


@needs_root
@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        (lambda p: os.chown(p / "inject.toml", NOBODY, NOBODY), f"it is owned by uid {NOBODY}"),
        (lambda p: (p / "inject.toml").chmod(0o646), "it is world-writable"),
        (
            lambda p: os.chown(p / "inject.toml", 0, NOBODY) or (p / "inject.toml").chmod(0o664),
            f"group {NOBODY}",
        ),
        (lambda p: os.chown(p, NOBODY, NOBODY), "is owned by uid"),
        (lambda p: p.chmod(0o777), "is world-writable"),
        (lambda p: os.chown(p, 0, NOBODY) or p.chmod(0o775), f"writable by group {NOBODY}"),
    ],
    ids=["file-owner", "file-mode", "file-group", "dir-owner", "dir-mode", "dir-group"],
)
def test_another_writer_of_the_file_or_its_directory_is_refused(
    volume: Path, setup: object, reason: str
) -> None:
    """A file or a directory another user or group may write is refused, naming why."""
    conf = volume / "conf"
    _file(conf / "inject.toml")
    setup(conf)  # type: ignore[operator]
    with pytest.raises(trusted.Untrusted, match=reason):
        _read(conf / "inject.toml")


@needs_root
def test_in_a_sticky_directory_only_roots_entries_and_single_links_are_trusted(volume: Path) -> None:
    """In a 1777 directory, root's file is read; a directory of another user on the way, a
    symlink of theirs, or a hard link to root's file (one they could have made) is refused."""
    sticky = volume / "tmp"
    sticky.mkdir()
    sticky.chmod(0o1777)
    assert _read(_file(sticky / "inject.toml")) == "x = 1\n"
    theirs = sticky / "theirs"
    _file(theirs / "inject.toml")
    os.chown(theirs, NOBODY, NOBODY)
    with pytest.raises(
        trusted.Untrusted, match=f"{theirs} belongs to uid {NOBODY} in a directory other users"
    ):
        _read(theirs / "inject.toml")
    (sticky / "link.toml").symlink_to(sticky / "inject.toml")
    os.chown(sticky / "link.toml", NOBODY, NOBODY, follow_symlinks=False)
    with pytest.raises(trusted.Untrusted, match="the symlink"):
        _read(sticky / "link.toml")
    os.link(sticky / "inject.toml", sticky / "hard.toml")
    with pytest.raises(trusted.Untrusted, match="2 hard links"):
        _read(sticky / "hard.toml")


@needs_root
def test_read_text_refuses_only_when_asked_and_names_the_file(volume: Path) -> None:
    """read_text(refuse_untrusted=True) as root: a UsageError naming the file, why and the
    opt-out; without it the same file is read as before."""
    conf = _file(volume / "inject.toml")
    os.chown(conf, NOBODY, NOBODY)
    with pytest.raises(UsageError) as info:
        read_text(str(conf), "config file", refuse_untrusted=True)
    message = str(info.value)
    assert message.startswith(f"config file {conf}: it is owned by uid {NOBODY}")
    assert "--trust-config" in message
    assert "INJECT_TRUST_CONFIG=1" in message
    assert "\n" not in message
    assert read_text(str(conf), "config file") == "x = 1\n"
