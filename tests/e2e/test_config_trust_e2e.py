"""The config file and template sources as root (issue 24, finding 6): another user who can
write the config (its owner, a group/world write bit, or a directory on its way) could add a
template and have root write a file where they choose and run its ``command`` as uid 0. As
root, inject refuses such a file, at start (exit 2, nothing written) and at a hot reload (the
old config keeps running); ``--trust-config`` / ``INJECT_TRUST_CONFIG=1`` opts out.

The attacker is uid 65534 (``nobody``, via setpriv); the shared place is the ``volume``
fixture (a root-owned 0755 directory under the sticky /tmp); what the attacker wants root to
write lands in ``tmp_path`` (root only)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.e2e.helpers_e2e import AS_NOBODY, NOBODY, error_line, write
from tests.support import Bao, holds_for, inject_argv, inject_env, run_inject, secret_value, supervise

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="the rule is for inject as root; the attacker is another user"
)

START_TIMEOUT_S = 20  # a refused start exits at once; the unfixed `watch` would run on


def _setup(bao: Bao, prefix: str, place: Path, tmp_path: Path) -> tuple[Path, Path, str]:
    """A root-owned 0644 config and template in ``place`` rendering one secret into
    ``tmp_path/out/a.txt``; (config, output, value)."""
    value = secret_value()
    bao.kv_put(f"{prefix}/app", v=value)
    write(place / "a.j2", f"v={{{{ secret('{prefix}/app').v }}}}\n").chmod(0o644)
    out = tmp_path / "out" / "a.txt"
    config = write(
        place / "inject.toml",
        f'[watch]\npoll_interval = "300ms"\n\n[[template]]\nsource = "a.j2"\ndestination = "{out}"\n',
    )
    config.chmod(0o644)
    return config, out, value


def _evil(tmp_path: Path) -> tuple[str, Path, Path]:
    """The template the attacker appends: a file and a command where they choose (root only)."""
    evil, ran = tmp_path / "evil.txt", tmp_path / "ran-as"
    text = f'\n[[template]]\ncontents = "pwned"\ndestination = "{evil}"\ncommand = "id -u > {ran}"\n'
    return text, evil, ran


def _append_as_attacker(path: Path, text: str) -> None:
    subprocess.run(
        [*AS_NOBODY, "tee", "-a", str(path)],
        input=text,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )


def _attacked_config(
    bao: Bao, prefix: str, volume: Path, tmp_path: Path, how: str
) -> tuple[Path, Path, Path]:
    """A config another user can change (``how``), with their template appended; (config,
    evil destination, command marker). ``dir``: the directory holding it is theirs."""
    place = volume / "conf"
    place.mkdir(mode=0o755)
    config, _, _ = _setup(bao, prefix, place, tmp_path)
    text, evil, ran = _evil(tmp_path)
    if how == "owner":
        os.chown(config, NOBODY, NOBODY)
        _append_as_attacker(config, text)
    elif how == "mode":
        config.chmod(0o666)
        _append_as_attacker(config, text)
    else:  # the directory is theirs: they could replace the file any time; root's file as it is now
        os.chown(place, NOBODY, NOBODY)
        with config.open("a") as handle:
            handle.write(text)
    return config, evil, ran


@pytest.mark.parametrize("command", ["render", "watch"])
@pytest.mark.parametrize("how", ["owner", "mode", "dir"])
def test_a_config_another_user_can_write_is_refused_at_start(
    bao: Bao, prefix: str, volume: Path, tmp_path: Path, how: str, command: str
) -> None:
    """As root, `inject render|watch -c` a config owned by nobody, world-writable, or in a
    directory nobody owns (with nobody's template appended) exits 2 with one line naming
    it, writes nothing and runs no command."""
    config, evil, ran = _attacked_config(bao, prefix, volume, tmp_path, how)
    result = run_inject(
        command, "-c", str(config), env=inject_env(bao), cwd=tmp_path, timeout_s=START_TIMEOUT_S
    )
    assert result.returncode == 2, result.stderr
    line = error_line(result)
    assert str(config) in line
    assert {
        "owner": f"uid {NOBODY}",
        "mode": "world-writable",
        "dir": f"{config.parent} is owned by uid {NOBODY}",
    }[how] in line
    assert not evil.exists()
    assert not ran.exists()
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("how", ["chown", "chmod"])
def test_a_reload_of_a_config_that_became_writable_by_another_user_is_refused(
    bao: Bao, prefix: str, volume: Path, tmp_path: Path, how: str
) -> None:
    """`inject watch` as root: after the config is chowned to nobody (or made 0666) and nobody
    appends a template, the reload is refused with one line, the old output stays, and
    nobody's file and command never happen."""
    config, out, value = _setup(bao, prefix, volume, tmp_path)
    text, evil, ran = _evil(tmp_path)
    argv = inject_argv("watch", "-c", str(config))
    with supervise(argv, env=inject_env(bao), cwd=tmp_path, ready="wrote ") as inject:
        assert out.read_text() == f"v={value}\n"
        if how == "chown":
            os.chown(config, NOBODY, NOBODY)
        else:
            config.chmod(0o666)
        _append_as_attacker(config, text)
        [line] = inject.wait_log("keeping the previous templates", timeout_s=10)
        assert str(config) in line
        holds_for(
            lambda: not evil.exists() and not ran.exists(), duration_s=1.5, what="nobody's template ignored"
        )
        assert out.read_text() == f"v={value}\n"
        assert inject.poll() is None


@pytest.mark.parametrize("how", ["owner", "dir", "cli"])
def test_a_template_source_another_user_can_write_is_refused(
    bao: Bao, prefix: str, volume: Path, tmp_path: Path, how: str
) -> None:
    """A template source owned by nobody (from the config or `-t`), or in a directory nobody
    owns, is refused as root: exit 2 naming it, nothing written."""
    config, out, _ = _setup(bao, prefix, tmp_path, tmp_path)
    theirs = volume / "theirs"
    theirs.mkdir(mode=0o755)
    source = write(theirs / "t.j2", "{{ 'x' }}\n")
    source.chmod(0o644)
    os.chown(theirs if how == "dir" else source, NOBODY, NOBODY)
    if how == "cli":
        args: tuple[str, ...] = ("render", "-t", f"{source}:{tmp_path / 'out' / 'b.txt'}")
    else:
        with config.open("a") as handle:
            handle.write(
                f'\n[[template]]\nsource = "{source}"\ndestination = "{tmp_path / "out" / "b.txt"}"\n'
            )
        args = ("render", "-c", str(config))
    result = run_inject(*args, env=inject_env(bao), cwd=tmp_path, timeout_s=START_TIMEOUT_S)
    assert result.returncode == 2, result.stderr
    assert str(source) in error_line(result)
    assert not out.exists()
    assert not (tmp_path / "out" / "b.txt").exists()


def test_a_root_config_in_root_directories_renders(
    bao: Bao, prefix: str, volume: Path, tmp_path: Path
) -> None:
    """A root-owned 0644 config and template in a root-owned 0755 directory under the sticky
    /tmp render as before; so does one reached through root's symlinks (a Kubernetes
    ConfigMap's ``..data`` layout)."""
    config, out, value = _setup(bao, prefix, volume, tmp_path)
    result = run_inject("render", "-c", str(config), env=inject_env(bao), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert out.read_text() == f"v={value}\n"
    mount = volume / "mount"
    (mount / "..2024_01").mkdir(parents=True)
    for name in ("inject.toml", "a.j2"):
        os.rename(volume / name, mount / "..2024_01" / name)
        os.symlink(f"..data/{name}", mount / name)
    os.symlink("..2024_01", mount / "..data")
    out.unlink()
    result = run_inject("render", "-c", str(mount / "inject.toml"), env=inject_env(bao), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert out.read_text() == f"v={value}\n"


@pytest.mark.parametrize("opt_out", ["env", "flag"])
def test_the_opt_out_reads_a_config_another_user_owns(
    bao: Bao, prefix: str, volume: Path, tmp_path: Path, opt_out: str
) -> None:
    """`INJECT_TRUST_CONFIG=1` or `--trust-config` reads a config and template nobody owns
    (the operator's choice), and renders it."""
    config, out, value = _setup(bao, prefix, volume, tmp_path)
    for path in (config, volume / "a.j2"):
        os.chown(path, NOBODY, NOBODY)
    env = inject_env(bao, {"INJECT_TRUST_CONFIG": "1"} if opt_out == "env" else None)
    flag = ("--trust-config",) if opt_out == "flag" else ()
    result = run_inject("render", *flag, "-c", str(config), env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert out.read_text() == f"v={value}\n"
