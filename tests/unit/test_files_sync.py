"""Every staged temp file is fsynced before any rename, though the fsyncs run together; a
failed fsync leaves every destination as it was and no temp file behind."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from vault_inject.errors import FileWriteError
from vault_inject.files import write as files
from vault_inject.files.write import FileWrite, write_all


def test_every_temp_file_is_synced_before_the_first_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """All regular-file fsyncs happen before the first os.replace of the commit."""
    events: list[str] = []
    lock = threading.Lock()
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        with lock:
            events.append("sync-file" if stat.S_ISREG(os.fstat(fd).st_mode) else "sync-dir")
        real_fsync(fd)

    def replace(*args: object, **kwargs: object) -> None:
        with lock:
            events.append("rename")
        real_replace(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    write_all([FileWrite(str(tmp_path / f"f{i}"), f"v{i}\n") for i in range(20)])
    assert events.count("sync-file") == 20
    assert events.index("rename") > max(i for i, e in enumerate(events) if e == "sync-file")
    assert [(tmp_path / f"f{i}").read_text() for i in range(20)] == [f"v{i}\n" for i in range(20)]


def test_a_failed_fsync_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When one temp file cannot be synced, no destination changes and no temp file is left."""
    (tmp_path / "f0").write_text("old\n")
    calls = {"n": 0}
    real_fsync = os.fsync

    def flaky(fd: int) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(5, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", flaky)
    with pytest.raises(FileWriteError, match="Input/output error"):
        write_all([FileWrite(str(tmp_path / f"f{i}"), f"new{i}\n") for i in range(5)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f0"]
    assert (tmp_path / "f0").read_text() == "old\n"
    assert files.SYNC_WORKERS > 1
