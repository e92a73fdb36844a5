"""Each command path imports only what it needs (issue 13): a plain PID 1 loads no HTTP
client, template engine, TOML parser or CLI library; rendering once loads no file watcher,
process inspector, metrics library or supervisor loop. Checked on sys.modules of a real
``inject`` run in a fresh interpreter, never on timings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# Runs inject's console-script entry in this interpreter and prints sys.modules as it exits
# (inject ends with os._exit, so an atexit hook would never run).
PROBE = """
import gc, json, os, sys
from vault_inject.cli import entry

def report(code):
    seen = {"modules": sorted(sys.modules), "gc": gc.isenabled()}
    os.write(int(os.environ["PROBE_FD"]), json.dumps(seen).encode())
    os._exit(code)

entry.exit_without_teardown = report
sys.argv = ["inject", *sys.argv[1:]]
entry.main()
"""
HTTP = {"hvac", "requests", "urllib3"}
LOOP_ONLY = {
    "watchfiles",
    "psutil",
    "prometheus_client",
    "vault_inject.loop.supervisor",
    "vault_inject.loop.wiring",
}


def modules_after(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[int, set[str]]:
    """The exit code of ``inject ARGS`` and the top-level and vault_inject modules it loaded
    (plus ``gc:on`` when the cyclic garbage collector was on at exit)."""
    read, write = os.pipe()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_", "INJECT_"))}
    base = {k: v for k, v in base.items() if not v.startswith("vault:")}
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        cwd=cwd,
        env={**base, "HOME": str(cwd), "PROBE_FD": str(write), **(env or {})},
        pass_fds=(write,),
        capture_output=True,
        timeout=60,
        check=False,
    )
    os.close(write)
    with os.fdopen(read) as pipe:
        seen = json.loads(pipe.read() or '{"modules": [], "gc": false}')
    names = {n if n.startswith("vault_inject.") else n.split(".")[0] for n in seen["modules"]}
    return proc.returncode, names | ({"gc:on"} if seen["gc"] else set())


def test_plain_pid1_loads_no_http_client_templates_toml_or_click(tmp_path: Path) -> None:
    """`inject -- true` with nothing to render loads none of hvac, requests, urllib3, jinja2,
    tomllib, click, watchfiles, psutil, prometheus_client, nor the file writer."""
    code, loaded = modules_after(["--", "true"], tmp_path)
    assert code == 0
    heavy = HTTP | {"jinja2", "tomllib", "click", "watchfiles", "psutil", "prometheus_client"}
    assert loaded & heavy == set()
    assert "vault_inject.files.write" not in loaded  # nothing to write
    assert "vault_inject.process.alone" in loaded  # it did supervise the child, with nothing else
    assert (
        loaded & {"vault_inject.loop.supervisor", "vault_inject.loop.wiring", "vault_inject.render.engine"}
        == set()
    )
    assert "gc:on" in loaded  # off for start-up only: the loop runs with the garbage collector


def test_a_config_file_brings_the_refresh_loop_even_with_nothing_to_render(tmp_path: Path) -> None:
    """An edit to the config file could add a template: then `inject -- true` runs the full loop."""
    (tmp_path / "inject.toml").write_text("[child]\nkill_timeout = '5s'\n")
    code, loaded = modules_after(["--", "true"], tmp_path, {"INJECT_CONFIG": str(tmp_path / "inject.toml")})
    assert code == 0
    assert {"vault_inject.loop.supervisor", "vault_inject.loop.wiring"} <= loaded


def test_render_once_loads_no_watcher_psutil_metrics_or_loop(tmp_path: Path) -> None:
    """`inject render` (here against a closed port) loads jinja2 and hvac, but no watchfiles,
    psutil, prometheus_client, and not the supervisor loop."""
    (tmp_path / "t.tpl").write_text("{{ secret('secret/app').password }}\n")
    (tmp_path / "token").write_text("not-a-real-token\n")
    args = ["render", "-t", f"{tmp_path / 't.tpl'}:{tmp_path / 'out'}", "--address", "http://127.0.0.1:9"]
    code, loaded = modules_after(
        [*args, "--token-file", str(tmp_path / "token"), "--retry-timeout", "0"], tmp_path
    )
    assert code != 0  # nothing listens there
    assert {"jinja2", "hvac", "click"} <= loaded  # the path really compiled and tried to log in
    assert loaded & LOOP_ONLY == set()


def test_render_with_a_config_file_loads_no_click(tmp_path: Path) -> None:
    """`inject render -c FILE` (an init container) is parsed without click: nothing else
    on the command line (launch.plain_command); it still compiles and tries to log in."""
    (tmp_path / "t.tpl").write_text("{{ secret('secret/app').password }}\n")
    (tmp_path / "token").write_text("not-a-real-token\n")
    (tmp_path / "inject.toml").write_text(
        f'[vault]\naddress = "http://127.0.0.1:9"\nretry_timeout = "0s"\n'
        f'[auth]\ntoken_file = "{tmp_path / "token"}"\n'
        f'[[template]]\nsource = "{tmp_path / "t.tpl"}"\ndestination = "{tmp_path / "out"}"\n'
    )
    code, loaded = modules_after(["render", "-c", str(tmp_path / "inject.toml")], tmp_path)
    assert code != 0  # nothing listens there
    assert {"jinja2", "hvac"} <= loaded
    assert "click" not in loaded


def test_help_and_version_load_no_http_client_or_templates(tmp_path: Path) -> None:
    """`inject --version` parses with click only: no hvac, requests or jinja2."""
    code, loaded = modules_after(["--version"], tmp_path)
    assert code == 0
    assert loaded & (HTTP | {"jinja2", "watchfiles", "psutil"}) == set()


def test_env_references_alone_load_no_template_engine(tmp_path: Path) -> None:
    """`inject --no-watch -e NAME=vault:... -- true` (here against a closed port) loads hvac to
    read the reference, but not jinja2: there is no template to compile."""
    (tmp_path / "token").write_text("not-a-real-token\n")
    args = ["--no-watch", "-e", "DB=vault:secret/app#password", "--address", "http://127.0.0.1:9"]
    args += ["--token-file", str(tmp_path / "token"), "--retry-timeout", "0", "--", "true"]
    code, loaded = modules_after(["run", *args], tmp_path)
    assert code != 0  # nothing listens there
    assert "hvac" in loaded
    assert (
        loaded & ({"jinja2", "vault_inject.render.renderer", "vault_inject.render.sandbox"} | LOOP_ONLY)
        == set()
    )
