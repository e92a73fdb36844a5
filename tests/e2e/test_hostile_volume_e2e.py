"""Destinations on a volume another user can write (issue 11): the attacker is uid 65534
(`nobody`, via setpriv), inject is root, the server is the real OpenBao.

The shared volume is a fresh directory under /tmp (reachable by the attacker); where the
attacker wants the secret to land is a root-only directory it cannot read."""

from __future__ import annotations

import os
import stat
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.helpers_e2e import AS_NOBODY, NOBODY, error_line, write
from tests.support import (
    Bao,
    inject_argv,
    inject_env,
    run_inject,
    secret_value,
    supervise,
    wait_for,
)

HANG_TIMEOUT_S = 20

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the attacker is another user: needs root")


def as_attacker(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` as uid/gid 65534 with no supplementary groups."""
    return subprocess.run([*AS_NOBODY, *argv], capture_output=True, text=True, timeout=30, check=check)


def shared_dir(base: Path, mode: int) -> Path:
    """``base/vol`` with exactly ``mode`` (e.g. 0o1777 like /tmp, 0o777 like an emptyDir)."""
    vol = base / "vol"
    vol.mkdir()
    vol.chmod(mode)
    return vol


def template(bao: Bao, prefix: str, work: Path) -> str:
    """``work/t.j2`` rendering one new secret; returns the value."""
    value = secret_value()
    bao.kv_put(f"{prefix}/app", v=value)
    write(work / "t.j2", f"v={{{{ secret('{prefix}/app').v }}}}\n")
    return value


def files_holding(root: Path, needle: str) -> list[str]:
    """Regular files under ``root`` (symlinks not followed) whose text contains ``needle``."""
    return [str(p) for p in root.rglob("*") if p.is_file() and not p.is_symlink() and needle in p.read_text()]


# --- parent directories (the destination symlink race: tests/unit/test_files_hostile.py) ---


def test_parent_directory_swapped_for_a_symlink_is_refused(
    bao: Bao, prefix: str, tmp_path: Path, volume: Path
) -> None:
    """After another user replaces a directory on the path with a symlink to a root-only
    directory, the next render exits 6 naming a directory and writes nothing there."""
    vol = shared_dir(volume, 0o777)
    (vol / "app").mkdir(mode=0o777)
    (vol / "app").chmod(0o777)
    (tmp_path / "root-only").mkdir()
    as_attacker("mv", str(vol / "app"), str(vol / "was-app"))
    as_attacker("ln", "-s", str(tmp_path / "root-only"), str(vol / "app"))
    value = template(bao, prefix, tmp_path)
    result = run_inject("render", "-t", f"t.j2:{vol / 'app' / 'conf'}", env=inject_env(bao), cwd=tmp_path)
    assert result.returncode == 6, result.stderr
    assert str(vol) in error_line(result)
    assert os.listdir(tmp_path / "root-only") == []
    assert files_holding(tmp_path, value) == []


def test_world_writable_directory_without_sticky_bit_is_refused(
    bao: Bao, prefix: str, tmp_path: Path, volume: Path
) -> None:
    """A destination directory anyone may write (0777, no sticky bit) is refused with exit 6
    and a line naming it and the option that allows it; nothing is written."""
    vol = shared_dir(volume, 0o777)
    template(bao, prefix, tmp_path)
    result = run_inject("render", "-t", f"t.j2:{vol / 'app.conf'}", env=inject_env(bao), cwd=tmp_path)
    assert result.returncode == 6, result.stderr
    line = error_line(result)
    assert str(vol) in line
    assert "allow_shared_dir" in line
    assert os.listdir(vol) == []


def test_allow_shared_dir_writes_into_a_world_writable_directory(
    bao: Bao, prefix: str, tmp_path: Path, volume: Path
) -> None:
    """`allow_shared_dir = true` on the template lets a render write into a 0777 directory."""
    vol = shared_dir(volume, 0o777)
    value = template(bao, prefix, tmp_path)
    write(
        tmp_path / "inject.toml",
        f'[[template]]\nsource = "t.j2"\ndestination = "{vol / "app.conf"}"\nallow_shared_dir = true\n',
    )
    result = run_inject("render", env=inject_env(bao), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (vol / "app.conf").read_text() == f"v={value}\n"


def test_sticky_directory_like_tmp_keeps_working(bao: Bao, prefix: str, tmp_path: Path, volume: Path) -> None:
    """A 1777 directory (like /tmp) is fine: the file and a created subdirectory are written."""
    vol = shared_dir(volume, 0o1777)
    value = template(bao, prefix, tmp_path)
    result = run_inject(
        "render", "-t", f"t.j2:{vol / 'a.conf'}", "-t", f"t.j2:{vol / 'sub' / 'b.conf'}",
        env=inject_env(bao), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (vol / "a.conf").read_text() == f"v={value}\n"
    assert (vol / "sub" / "b.conf").read_text() == f"v={value}\n"


@pytest.mark.parametrize("kind", ["directory", "file"])
def test_entry_precreated_by_another_user_in_a_sticky_directory_is_refused(
    bao: Bao, prefix: str, tmp_path: Path, volume: Path, kind: str
) -> None:
    """In a 1777 directory, a directory or file another user created at the destination's path
    is refused with exit 6 naming it; nothing is written into or over it."""
    vol = shared_dir(volume, 0o1777)
    planted = vol / "app"
    if kind == "directory":
        as_attacker("mkdir", "-m", "0777", str(planted))
        destination = planted / "conf"
    else:
        as_attacker("sh", "-c", f"umask 0; echo planted > {planted}")
        destination = planted
    value = template(bao, prefix, tmp_path)
    result = run_inject("render", "-t", f"t.j2:{destination}", env=inject_env(bao), cwd=tmp_path)
    assert result.returncode == 6, result.stderr
    line = error_line(result)
    assert str(planted) in line
    assert str(NOBODY) in line
    assert files_holding(volume, value) == []


# --- allow_symlink: the last component only (issue 24) ---------------------------------


def test_allow_symlink_never_follows_a_parent_another_user_planted(
    bao: Bao, prefix: str, tmp_path: Path, volume: Path
) -> None:
    """Destination shared/sub/out.txt with `allow_symlink = true` and shared 0777; another user
    runs `ln -s victimdir shared/sub`. inject exits 6 with one line naming the shared
    directory, and the root-owned victimdir/out.txt keeps its content: the secret is nowhere."""
    vol = shared_dir(volume, 0o777)
    victim = tmp_path / "victimdir"
    victim.mkdir(mode=0o700)
    write(victim / "out.txt", "original\n")
    value = template(bao, prefix, tmp_path)
    write(
        tmp_path / "inject.toml",
        f'[[template]]\nsource = "t.j2"\ndestination = "{vol / "sub" / "out.txt"}"\nallow_symlink = true\n',
    )
    as_attacker("ln", "-s", str(victim), str(vol / "sub"))
    result = run_inject("render", env=inject_env(bao), cwd=tmp_path)
    assert result.returncode == 6, result.stderr
    assert str(vol) in error_line(result)
    assert (victim / "out.txt").read_text() == "original\n"
    assert (victim / "out.txt").stat().st_uid == 0
    assert files_holding(tmp_path, value) == []


def test_allow_symlink_follows_roots_link_in_a_private_directory(
    bao: Bao, prefix: str, tmp_path: Path, volume: Path
) -> None:
    """The legitimate use keeps working: a link root made in a directory only root can write,
    pointing into another such directory, is followed; the link stays a link."""
    conf = shared_dir(volume, 0o755)
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (conf / "app.conf").symlink_to(real / "app.conf")
    value = template(bao, prefix, tmp_path)
    write(
        tmp_path / "inject.toml",
        f'[[template]]\nsource = "t.j2"\ndestination = "{conf / "app.conf"}"\nallow_symlink = true\n',
    )
    result = run_inject("render", env=inject_env(bao), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (real / "app.conf").read_text() == f"v={value}\n"
    assert (conf / "app.conf").is_symlink()


# --- what is at the destination ---------------------------------------------------------


def _fifo_at_destination(bao: Bao, prefix: str, tmp_path: Path, volume: Path) -> Path:
    """A shared directory with a FIFO named app.conf, and t.j2 with a secret; the directory."""
    vol = shared_dir(volume, 0o755)
    os.mkfifo(vol / "app.conf")
    template(bao, prefix, tmp_path)
    return vol


def test_fifo_at_the_destination_is_an_error_not_a_hang(
    bao: Bao, prefix: str, tmp_path: Path, volume: Path
) -> None:
    """A FIFO at the destination makes `inject render` exit 6 naming it, promptly."""
    vol = _fifo_at_destination(bao, prefix, tmp_path, volume)
    result = run_inject(
        "render",
        "-t",
        f"t.j2:{vol / 'app.conf'}",
        env=inject_env(bao),
        cwd=tmp_path,
        timeout_s=HANG_TIMEOUT_S,
    )
    assert result.returncode == 6
    line = error_line(result)
    assert str(vol / "app.conf") in line
    assert "FIFO" in line
    assert stat.S_ISFIFO(os.lstat(vol / "app.conf").st_mode)


def test_fifo_appearing_while_running_does_not_block_the_loop(
    bao: Bao, prefix: str, tmp_path: Path, volume: Path
) -> None:
    """Under `inject -- app`, a FIFO swapped in at the destination is logged (naming it) and
    inject still stops promptly on SIGTERM, passing it to the child."""
    vol = shared_dir(volume, 0o755)
    destination = vol / "app.conf"
    template(bao, prefix, tmp_path)
    argv = inject_argv("--poll-interval", "100ms", "-t", f"t.j2:{destination}", "--", "sleep", "600")
    with supervise(argv, env=inject_env(bao), cwd=tmp_path, ready=None) as process:
        wait_for(destination.is_file, timeout_s=15, what="the first render")
        destination.unlink()
        os.mkfifo(destination)
        template(bao, prefix, tmp_path)  # a new version: the next poll writes
        assert not _reader_opens(destination, within_s=2.0), "inject is blocked reading the FIFO"
        process.send_signal(15)
        code, _, stderr = process.finish(timeout_s=HANG_TIMEOUT_S)
    assert code == 143, stderr
    assert "FIFO" in stderr
    assert str(destination) in stderr


def _reader_opens(fifo: Path, *, within_s: float) -> bool:
    """True if some process opens ``fifo`` for reading within ``within_s`` (polled, bounded)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # ENXIO while nobody reads
            return True
        except OSError:
            time.sleep(0.05)
    return False


def test_huge_file_at_the_destination_is_not_read(
    bao: Bao, prefix: str, tmp_path: Path, volume: Path
) -> None:
    """A 4 GiB (sparse) file at the destination is never read into memory: under a 1 GiB address
    space limit inject exits 6 with one line naming it, instead of running out of memory."""
    vol = shared_dir(volume, 0o755)
    huge = vol / "app.conf"
    with huge.open("wb") as handle:
        handle.truncate(4 << 30)
    template(bao, prefix, tmp_path)
    result = run_inject(
        "render", "-t", f"t.j2:{huge}", env=inject_env(bao), cwd=tmp_path, timeout_s=HANG_TIMEOUT_S,
        wrapper=["prlimit", f"--as={1 << 30}"],
    )  # fmt: skip
    assert result.returncode == 6, result.stderr
    assert str(huge) in error_line(result)
    assert huge.stat().st_size == 4 << 30


def test_plan_with_a_fifo_at_the_destination_does_not_hang(
    bao: Bao, prefix: str, tmp_path: Path, volume: Path
) -> None:
    """`inject plan` with a FIFO at a destination answers promptly (exit 0) instead of blocking."""
    vol = _fifo_at_destination(bao, prefix, tmp_path, volume)
    result = run_inject(
        "plan", "-t", f"t.j2:{vol / 'app.conf'}", env=inject_env(bao), cwd=tmp_path, timeout_s=HANG_TIMEOUT_S
    )
    assert result.returncode == 0, result.stderr
    assert str(vol / "app.conf") in result.stdout


# --- owners -------------------------------------------------------------------------------


def test_directories_created_for_user_are_traversable_by_it(
    bao: Bao, prefix: str, tmp_path: Path, volume: Path
) -> None:
    """With `--user nobody`, the directories inject creates are owned by nobody (0700), so the
    app, as nobody, can read its own file."""
    vol = shared_dir(volume, 0o755)
    destination = vol / "a" / "b" / "app.conf"
    value = template(bao, prefix, tmp_path)
    result = run_inject(
        "render", "--user", "nobody", "-t", f"t.j2:{destination}", env=inject_env(bao), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    for directory in (vol / "a", vol / "a" / "b"):
        info = directory.stat()
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (NOBODY, 0o700)
    assert destination.stat().st_uid == NOBODY
    assert as_attacker("cat", str(destination)).stdout == f"v={value}\n"


def test_rollback_after_a_failed_check_restores_owner_and_mode(
    bao: Bao, prefix: str, tmp_path: Path, volume: Path
) -> None:
    """When the check command rejects a new version, the file the app owned comes back with its
    content, owner (uid 65534) and mode, not as a file owned by inject."""
    vol = shared_dir(volume, 0o755)
    destination = vol / "app.conf"
    good = secret_value("good")
    bao.kv_put(f"{prefix}/app", v=good)
    write(tmp_path / "t.j2", f"v={{{{ secret('{prefix}/app').v }}}}\n")
    destination.write_text(f"v={good}\n")
    os.chown(destination, NOBODY, NOBODY)
    destination.chmod(0o640)
    write(
        tmp_path / "inject.toml",
        f'[child]\ncheck = "grep -q good {destination}"\n\n'
        f'[[template]]\nsource = "t.j2"\ndestination = "{destination}"\nperms = "0640"\n',
    )
    argv = inject_argv("--poll-interval", "100ms", "--", "sleep", "600")
    with supervise(argv, env=inject_env(bao), cwd=tmp_path) as running:
        bao.kv_put(f"{prefix}/app", v=secret_value("bad"))
        running.wait_log("restoring the previous files", timeout_s=10)  # logged, then restored
        wait_for(lambda: destination.read_text() == f"v={good}\n", timeout_s=5, what="the old file back")
        info = destination.stat()
        assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (NOBODY, NOBODY, 0o640)
