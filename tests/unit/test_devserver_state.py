"""`inject dev` state left by a killed run: only this user's own, ownerless directories are removed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from vault_inject.cli import devserver


def _dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def _state_dir(parent: Path, name: str, owner: str | None) -> Path:
    path = parent / (devserver.STATE_PREFIX + name)
    path.mkdir(mode=0o700)
    (path / "token").write_text("dev-token\n")
    if owner is not None:
        (path / devserver.OWNER_FILE).write_text(owner)
    return path


def test_only_directories_whose_owner_is_gone_are_removed(tmp_path: Path) -> None:
    """Stale dirs go; a live owner's dir, an ownerless dir, symlinks and other names stay."""
    me = f"{os.getpid()} {devserver._start_ticks(os.getpid())}\n"
    stale = _state_dir(tmp_path, "stale", f"{_dead_pid()} 12345\n")
    reused = _state_dir(tmp_path, "reused", f"{os.getpid()} 1\n")  # our pid, another start time
    live = _state_dir(tmp_path, "live", me)
    ownerless = _state_dir(tmp_path, "ownerless", None)
    elsewhere = _state_dir(
        tmp_path / "x" if (tmp_path / "x").mkdir() is None else tmp_path, "target", "1 1\n"
    )
    link = tmp_path / (devserver.STATE_PREFIX + "link")
    link.symlink_to(elsewhere)
    linked_owner = _state_dir(tmp_path, "linked-owner", None)
    (linked_owner / devserver.OWNER_FILE).symlink_to(stale / devserver.OWNER_FILE)
    unrelated = tmp_path / "inject-other"
    unrelated.mkdir()
    (unrelated / devserver.OWNER_FILE).write_text(f"{_dead_pid()} 1\n")

    removed = devserver.remove_stale_state(str(tmp_path))

    assert sorted(removed) == sorted([str(stale), str(reused)])
    assert not stale.exists()
    assert not reused.exists()
    for kept in (live, ownerless, elsewhere, linked_owner, unrelated):
        assert kept.exists(), kept
    assert link.is_symlink()
