"""Temp files a killed writer left behind are swept; a live writer's are not."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from vault_inject.files import write as files


def _old_temp(directory: Path, name: str) -> Path:
    path = directory / name
    path.write_text("partial")
    past = time.time() - 60
    os.utime(path, (past, past))
    return path


def test_abandoned_temp_file_is_removed(tmp_path: Path) -> None:
    """An unlocked `.inject-*.tmp` older than STALE_TEMP_S is deleted by the sweep."""
    stale = _old_temp(tmp_path, ".inject-dead.tmp")
    assert files.sweep_stale_temps(str(tmp_path)) == 1
    assert not stale.exists()


def test_locked_temp_file_of_a_live_writer_stays(tmp_path: Path) -> None:
    """A temp file whose writer still holds its flock survives the sweep, however old."""
    live = _old_temp(tmp_path, ".inject-live.tmp")
    fd = os.open(live, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert files.sweep_stale_temps(str(tmp_path)) == 0
        assert live.exists()
    finally:
        os.close(fd)


def test_young_temp_file_and_other_files_stay(tmp_path: Path) -> None:
    """A just-created temp file (maybe not locked yet) and unrelated files are never removed."""
    young = tmp_path / ".inject-young.tmp"
    young.write_text("x")
    other = _old_temp(tmp_path, "app.yml")
    assert files.sweep_stale_temps(str(tmp_path)) == 0
    assert young.exists()
    assert other.exists()


def test_write_all_sweeps_the_destination_directory(tmp_path: Path) -> None:
    """Writing a file also clears what a crashed earlier inject left in that directory."""
    stale = _old_temp(tmp_path, ".inject-crashed.tmp")
    files.write_all([files.FileWrite(destination=str(tmp_path / "app.yml"), content="ok\n")])
    assert (tmp_path / "app.yml").read_text() == "ok\n"
    assert not stale.exists()
