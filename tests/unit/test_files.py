"""Atomic, all-or-nothing file writes with safe modes. Real files in tmp_path."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from vault_inject.errors import FileWriteError
from vault_inject.files.write import TEMP_PREFIX, FileWrite, write_all


@pytest.fixture
def open_umask() -> Iterator[None]:
    """Run the test with umask 0o000 (the worst case), then restore the previous umask."""
    previous = os.umask(0o000)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    """The permission bits of ``path`` (not following symlinks)."""
    return stat.S_IMODE(os.lstat(path).st_mode)


def temp_files(root: Path) -> list[Path]:
    """Every leftover inject temp file under ``root``."""
    return list(root.rglob(f"{TEMP_PREFIX}*.tmp"))


def test_new_file_is_0600_even_with_open_umask(tmp_path: Path, open_umask: None) -> None:
    """A new file gets mode 0600 by default, whatever the umask."""
    dest = tmp_path / "app.env"
    write_all([FileWrite(str(dest), "A=1\n")])
    assert dest.read_text() == "A=1\n"
    assert mode(dest) == 0o600


def test_wanted_perms_are_applied(tmp_path: Path, open_umask: None) -> None:
    """A template's perms (0640) are applied exactly."""
    dest = tmp_path / "app.yml"
    write_all([FileWrite(str(dest), "x", perms=0o640)])
    assert mode(dest) == 0o640


def test_perms_are_fixed_on_an_existing_file(tmp_path: Path) -> None:
    """An existing destination with the wrong mode ends with the wanted mode."""
    dest = tmp_path / "app.yml"
    dest.write_text("old")
    dest.chmod(0o666)
    write_all([FileWrite(str(dest), "new", perms=0o640)])
    assert (dest.read_text(), mode(dest)) == ("new", 0o640)


def test_created_parent_dirs_are_0700(tmp_path: Path, open_umask: None) -> None:
    """Missing parent directories are created with mode 0700, whatever the umask."""
    dest = tmp_path / "a" / "b" / "c.conf"
    write_all([FileWrite(str(dest), "x")])
    assert dest.read_text() == "x"
    assert mode(tmp_path / "a") == 0o700
    assert mode(tmp_path / "a" / "b") == 0o700


def test_existing_parent_dir_mode_is_left_alone(tmp_path: Path) -> None:
    """An existing parent directory keeps its mode."""
    parent = tmp_path / "shared"
    parent.mkdir()
    parent.chmod(0o755)
    write_all([FileWrite(str(parent / "f"), "x")])
    assert mode(parent) == 0o755


def test_commit_lists_changed_files(tmp_path: Path) -> None:
    """write_all returns the destinations it changed, in order."""
    a, b = tmp_path / "a", tmp_path / "b"
    commit = write_all([FileWrite(str(a), "1"), FileWrite(str(b), "2")])
    assert commit.changed == [str(a), str(b)]


def test_unchanged_content_is_not_rewritten(tmp_path: Path) -> None:
    """A destination whose content is unchanged is not rewritten (same inode, same mtime)."""
    dest = tmp_path / "same.conf"
    write_all([FileWrite(str(dest), "same\n")])
    before = os.stat(dest)
    commit = write_all([FileWrite(str(dest), "same\n")])
    after = os.stat(dest)
    assert commit.changed == []
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_changed_content_replaces_the_file_atomically(tmp_path: Path) -> None:
    """Changed content is renamed over the destination (a new inode; readers never see a partial file)."""
    dest = tmp_path / "c.conf"
    write_all([FileWrite(str(dest), "v1")])
    inode = os.stat(dest).st_ino
    write_all([FileWrite(str(dest), "v2")])
    assert dest.read_text() == "v2"
    assert os.stat(dest).st_ino != inode
    assert temp_files(tmp_path) == []


def _second_dest_is_a_directory(tmp_path: Path) -> str:
    directory = tmp_path / "is-a-dir"
    directory.mkdir()
    return str(directory)


def _second_parent_is_a_file(tmp_path: Path) -> str:
    (tmp_path / "plainfile").write_text("i am a file")
    return str(tmp_path / "plainfile" / "child.conf")


def _second_parent_is_a_dangling_symlink(tmp_path: Path) -> str:
    (tmp_path / "ghost").symlink_to(tmp_path / "nowhere")
    return str(tmp_path / "ghost" / "child.conf")


@pytest.mark.parametrize(
    "make_bad_destination",
    [_second_dest_is_a_directory, _second_parent_is_a_file, _second_parent_is_a_dangling_symlink],
)
def test_all_or_nothing_when_a_later_write_fails(
    tmp_path: Path, make_bad_destination: Callable[[Path], str]
) -> None:
    """If the second write fails, the first destination keeps its old content and no temp file remains."""
    first = tmp_path / "first.conf"
    first.write_text("old")
    new_file = tmp_path / "new" / "created.conf"
    bad = make_bad_destination(tmp_path)
    with pytest.raises(FileWriteError) as info:
        write_all([FileWrite(str(first), "new"), FileWrite(str(new_file), "n"), FileWrite(bad, "x")])
    assert bad in str(info.value)
    assert first.read_text() == "old"
    assert not new_file.exists()
    assert temp_files(tmp_path) == []


def test_symlink_destination_is_refused(tmp_path: Path) -> None:
    """A symlink destination is refused with FileWriteError naming the path; the target is untouched."""
    target = tmp_path / "target.conf"
    target.write_text("original")
    link = tmp_path / "link.conf"
    link.symlink_to(target)
    with pytest.raises(FileWriteError) as info:
        write_all([FileWrite(str(link), "evil")])
    assert str(link) in str(info.value)
    assert "symlink" in str(info.value)
    assert target.read_text() == "original"
    assert link.is_symlink()


def test_dangling_symlink_destination_is_refused(tmp_path: Path) -> None:
    """A dangling symlink destination is refused too and nothing is created at its target."""
    link = tmp_path / "link.conf"
    link.symlink_to(tmp_path / "would-be-created")
    with pytest.raises(FileWriteError, match="symlink"):
        write_all([FileWrite(str(link), "x")])
    assert not (tmp_path / "would-be-created").exists()


def test_allow_symlink_writes_through_to_the_target(tmp_path: Path) -> None:
    """With allow_symlink the target gets the content and the link stays a link."""
    real_dir = tmp_path / "real"
    real_dir.mkdir()
    target = real_dir / "target.conf"
    target.write_text("old")
    link = tmp_path / "link.conf"
    link.symlink_to(target)
    write_all([FileWrite(str(link), "new", perms=0o640, allow_symlink=True)])
    assert link.is_symlink()
    assert target.read_text() == "new"
    assert mode(target) == 0o640
    assert temp_files(tmp_path) == []


def test_rollback_restores_previous_contents_and_removes_created_files(tmp_path: Path) -> None:
    """Commit.rollback puts replaced files back (content and mode) and deletes files it created."""
    existing = tmp_path / "existing.conf"
    existing.write_text("before")
    existing.chmod(0o640)
    created = tmp_path / "created.conf"
    commit = write_all([FileWrite(str(existing), "after"), FileWrite(str(created), "fresh")])
    assert (existing.read_text(), created.read_text()) == ("after", "fresh")
    commit.rollback()
    assert existing.read_text() == "before"
    assert mode(existing) == 0o640
    assert not created.exists()
    assert temp_files(tmp_path) == []


def test_rollback_of_a_no_op_commit_changes_nothing(tmp_path: Path) -> None:
    """Rolling back a write that changed nothing leaves the file as it is."""
    dest = tmp_path / "same"
    dest.write_text("same")
    commit = write_all([FileWrite(str(dest), "same")])
    commit.rollback()
    assert dest.read_text() == "same"
