"""Rendered files on a real filesystem: modes whatever the umask, no needless rewrites,
symlinks refused, and all-or-nothing renders that never start the child."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from tests.e2e.helpers_e2e import error_line, temp_files, write
from tests.support import Bao, inject_env, run_inject, secret_value


def _secret_template(bao: Bao, prefix: str, tmp_path: Path, name: str = "t.j2") -> str:
    password = secret_value()
    bao.kv_put(f"{prefix}/app", password=password)
    write(tmp_path / name, f"password={{{{ secret('{prefix}/app').password }}}}\n")
    return password


def test_mode_0600_with_a_permissive_umask(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """Under `umask 000` the file is still 0600 and a created parent directory 0700."""
    password = _secret_template(bao, prefix, tmp_path)
    umask_000 = ["sh", "-c", 'umask 000; exec "$@"', "sh"]
    result = run_inject(
        "render", "-t", "t.j2:new-dir/out.txt", env=inject_env(bao), cwd=tmp_path, wrapper=umask_000
    )
    assert result.returncode == 0, result.stderr
    out = tmp_path / "new-dir" / "out.txt"
    assert out.read_text() == f"password={password}\n"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert stat.S_IMODE(out.parent.stat().st_mode) == 0o700


def test_perms_from_config_are_applied(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """`perms = "0640"` on a [[template]] gives the file exactly that mode."""
    _secret_template(bao, prefix, tmp_path)
    write(
        tmp_path / "inject.toml",
        '[[template]]\nsource = "t.j2"\ndestination = "out.txt"\nperms = "0640"\n',
    )
    result = run_inject("render", env=inject_env(bao), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE((tmp_path / "out.txt").stat().st_mode) == 0o640


def test_unchanged_file_is_not_rewritten(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """A second render with the same content keeps the same inode and modification time."""
    _secret_template(bao, prefix, tmp_path)
    first = run_inject("render", "-t", "t.j2:out.txt", env=inject_env(bao), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    before = (tmp_path / "out.txt").stat()
    second = run_inject("render", "-t", "t.j2:out.txt", env=inject_env(bao), cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    after = (tmp_path / "out.txt").stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_changed_content_replaces_the_file(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """A new secret version is written by rename (new inode) with the new content."""
    _secret_template(bao, prefix, tmp_path)
    first = run_inject("render", "-t", "t.j2:out.txt", env=inject_env(bao), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    before = (tmp_path / "out.txt").stat()
    rotated = secret_value("rotated")
    bao.kv_put(f"{prefix}/app", password=rotated)
    second = run_inject("render", "-t", "t.j2:out.txt", env=inject_env(bao), cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert (tmp_path / "out.txt").read_text() == f"password={rotated}\n"
    assert (tmp_path / "out.txt").stat().st_ino != before.st_ino
    assert temp_files(tmp_path) == []


def test_symlink_destination_is_refused(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """A destination that is a symlink fails with exit 6 and the link target is untouched."""
    _secret_template(bao, prefix, tmp_path)
    target = write(tmp_path / "elsewhere" / "important.conf", "original\n")
    (tmp_path / "out.txt").symlink_to(target)
    result = run_inject("render", "-t", "t.j2:out.txt", env=inject_env(bao), cwd=tmp_path)
    assert result.returncode == 6
    line = error_line(result)
    assert "out.txt" in line
    assert "symlink" in line
    assert target.read_text() == "original\n"
    assert (tmp_path / "out.txt").is_symlink()


def test_failed_render_writes_nothing_and_starts_nothing(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """When the second template fails (missing key), exit 3: no file, no temp file, no child."""
    _secret_template(bao, prefix, tmp_path, "first.j2")
    write(tmp_path / "second.j2", f"x={{{{ secret('{prefix}/app').no_such_key }}}}\n")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    existing = write(out_dir / "second.txt", "old\n")
    marker = tmp_path / "child-ran"
    result = run_inject(
        "-t", "first.j2:out/first.txt", "-t", "second.j2:out/second.txt", "--", "touch", str(marker),
        env=inject_env(bao), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 3
    line = error_line(result)
    assert "second.j2" in line
    assert "no_such_key" in line
    assert not (out_dir / "first.txt").exists()
    assert existing.read_text() == "old\n"
    assert temp_files(out_dir) == []
    assert not marker.exists()
    assert sorted(os.listdir(out_dir)) == ["second.txt"]


def test_unwritable_second_file_leaves_the_first_unwritten(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """When the second destination cannot be written safely (symlink), the first is not written."""
    _secret_template(bao, prefix, tmp_path)
    target = write(tmp_path / "target.txt", "original\n")
    (tmp_path / "b.txt").symlink_to(target)
    result = run_inject("render", "-t", "t.j2:a.txt", "-t", "t.j2:b.txt", env=inject_env(bao), cwd=tmp_path)
    assert result.returncode == 6
    assert "b.txt" in error_line(result)
    assert not (tmp_path / "a.txt").exists()
    assert target.read_text() == "original\n"
    assert temp_files(tmp_path) == []
