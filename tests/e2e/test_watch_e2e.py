"""The commands without a child: `inject watch` (the sidecar) keeps files fresh and runs
per-template commands; `inject plan` says what would change without values or writes."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.e2e.helpers_e2e import write
from tests.support import (
    Bao,
    inject_argv,
    inject_env,
    record_output,
    run_inject,
    secret_value,
    supervise,
    wait_for,
)


def _text(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def test_watch_keeps_file_fresh_runs_command_and_exits_0_on_term(
    bao: Bao, prefix: str, tmp_path: Path
) -> None:
    """`inject watch` runs the template's command after the first render and after each change, and exits 0 on SIGTERM."""
    path = f"{prefix}/app"
    first = secret_value()
    bao.kv_put(path, v=first)
    marker = tmp_path / "reloaded"
    write(tmp_path / "a.j2", f"v={{{{ secret('{path}').v }}}}\n")
    write(
        tmp_path / "inject.toml",
        '[watch]\npoll_interval = "300ms"\n\n'
        f'[[template]]\nsource = "a.j2"\ndestination = "shared/a.txt"\ncommand = "echo reload >> {marker}"\n',
    )
    out = tmp_path / "shared" / "a.txt"
    argv = inject_argv("watch", "-c", "inject.toml")
    with supervise(argv, env=inject_env(bao), cwd=tmp_path, ready="wrote ") as inject:
        assert out.read_text() == f"v={first}\n"
        # the first render runs the command too (the consumer learns the file exists)
        wait_for(lambda: _text(marker) == "reload\n", timeout_s=5, what="the first-render command")
        ran_before = 1
        second = secret_value()
        bao.kv_put(path, v=second)
        wait_for(lambda: _text(out) == f"v={second}\n", timeout_s=5, what="the file refreshed")
        wait_for(
            lambda: len((_text(marker) or "").splitlines()) == ran_before + 1,
            timeout_s=5,
            what="the template command",
        )
        assert inject.stop(signal.SIGTERM) == 0


def test_watch_writes_nothing_when_first_render_fails(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """`inject watch` with a missing secret path exits 4 and writes no file."""
    write(tmp_path / "a.j2", f"{{{{ secret('{prefix}/missing').v }}}}")
    result = run_inject("watch", "-t", "a.j2:out/a.txt", env=inject_env(bao), cwd=tmp_path, timeout_s=30)
    assert result.returncode == 4, result.stderr
    assert f"{prefix}/missing" in result.stderr
    assert not (tmp_path / "out").exists()


def test_plan_lists_destinations_and_env_names_without_values(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """`inject plan` marks destinations +/~/= and env names with path and version, never a value, writing nothing."""
    path = f"{prefix}/app"
    first, second = secret_value(), secret_value()
    bao.kv_put(path, password=first)
    write(tmp_path / "a.j2", f"{{{{ secret('{path}').password }}}}")
    write(tmp_path / "same.j2", "static\n")
    write(tmp_path / "out" / "same.txt", "static\n")
    args = ("-t", "a.j2:out/a.txt", "-t", "same.j2:out/same.txt", "-e", f"APP_PASSWORD=vault:{path}#password")

    def plan() -> list[str]:
        result = run_inject("plan", *args, env=inject_env(bao), cwd=tmp_path)
        record_output(result.stdout)
        assert result.returncode == 0, result.stderr
        for value in (first, second):
            assert value not in result.stdout
            assert value not in result.stderr
        return result.stdout.splitlines()

    lines = plan()
    a_txt, same_txt = tmp_path / "out" / "a.txt", tmp_path / "out" / "same.txt"
    assert f"+ {a_txt} (new file; reads {path} v1)" in lines
    assert any(line.startswith(f"= {same_txt} (unchanged") for line in lines), lines
    assert f"+ env APP_PASSWORD (reads {path} v1)" in lines
    assert not a_txt.exists()

    rendered = run_inject("render", *args, env=inject_env(bao), cwd=tmp_path)
    assert rendered.returncode == 0, rendered.stderr
    bao.kv_put(path, password=second)
    lines = plan()
    assert f"~ {a_txt} (changes; reads {path} v2)" in lines
    assert a_txt.read_text() == first, "plan wrote nothing"
