"""`secrets(path)` and `secret_write(path, **params)` against real OpenBao: a KV v2 listing
(sorted, polled: a key added re-renders and restarts the child; refused like `secret()`),
and writes with parameters to the SSH engine (a signed key `ssh-keygen` accepts, one write
per render, re-signed before it expires) and the TOTP engine."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.e2e.helpers_e2e import audited_server, error_line, write
from tests.e2e.supervise_helpers import SignalChild
from tests.support import Bao, inject_argv, inject_env, run_inject, secret_value, supervise, wait_for
from vault_inject.client.sshcert import valid_before

REPO = Path(__file__).resolve().parents[2]

EVERY_SERVICE = (
    "{% for name in secrets('PREFIX/services') %}"
    "{{ name }}={{ secret('PREFIX/services/' ~ name).port }}\n{% endfor %}"
)


def _services(bao: Bao, prefix: str, tmp_path: Path, *names: str) -> None:
    for name in names:
        bao.kv_put(f"{prefix}/services/{name}", port=f"80{len(name)}")
    write(tmp_path / "t.j2", EVERY_SERVICE.replace("PREFIX", prefix))


# --- secrets() -----------------------------------------------------------------------------


def test_secrets_renders_every_entry_in_sorted_order(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """A config built from every key under a KV v2 path, sorted; a folder is listed with its '/'."""
    _services(bao, prefix, tmp_path, "web", "api", "cache")
    result = run_inject("render", "-t", "t.j2:out.txt", env=inject_env(bao), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.txt").read_text() == "api=803\ncache=805\nweb=803\n"
    bao.kv_put(f"{prefix}/services/team/x", port="1")
    write(tmp_path / "k.j2", "{{ secrets('" + prefix + "/services') | join(',') }}")
    result = run_inject("render", "-t", "k.j2:keys.txt", env=inject_env(bao), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "keys.txt").read_text() == "api,cache,team/,web"


def test_the_example_template_builds_an_env_file_from_every_entry(
    bao: Bao, prefix: str, tmp_path: Path
) -> None:
    """templates/external-keys.env.j2 writes one sourceable line per key under the path, skipping folders."""
    values = {"openai": secret_value("sk"), "google-ai": secret_value("g")}
    for name, value in values.items():
        bao.kv_put(f"{prefix}/external/{name}", api_key=value)
    bao.kv_put(f"{prefix}/external/old/retired", api_key=secret_value())
    text = (REPO / "templates" / "external-keys.env.j2").read_text()
    write(tmp_path / "keys.j2", text.replace("secret/external", f"{prefix}/external"))
    result = run_inject("render", "-t", "keys.j2:keys.env", env=inject_env(bao), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = (tmp_path / "keys.env").read_text().splitlines()
    assert lines[1:] == [f"GOOGLE_AI_API_KEY={values['google-ai']}", f"OPENAI_API_KEY={values['openai']}"]
    sourced = subprocess.run(
        ["sh", "-c", ". ./keys.env && printf %s \"$OPENAI_API_KEY\""],
        cwd=tmp_path, capture_output=True, text=True, check=True, timeout=10,
    )  # fmt: skip
    assert sourced.stdout == values["openai"]


def test_a_key_added_while_running_re_renders_and_restarts_the_child(
    bao: Bao, prefix: str, tmp_path: Path
) -> None:
    """A new key under the listed path is a change: the file gains its entry and the child restarts; a removal too."""
    _services(bao, prefix, tmp_path, "api", "web")
    out = tmp_path / "out.txt"
    child = SignalChild.create(tmp_path)
    argv = inject_argv("--poll-interval", "300ms", "-t", "t.j2:out.txt", "--", *child.argv())
    with supervise(argv, env=inject_env(bao), cwd=tmp_path, stray=child.pids) as inject:
        child.wait_starts(1)
        assert out.read_text() == "api=803\nweb=803\n"
        bao.kv_put(f"{prefix}/services/db", port="5432")
        wait_for(lambda: out.read_text() == "api=803\ndb=5432\nweb=803\n", timeout_s=5, what="the new entry")
        child.wait_starts(2)
        inject.wait_log("1 key added")
        bao.api("DELETE", f"secret/metadata/{prefix.removeprefix('secret/')}/services/api")
        wait_for(lambda: out.read_text() == "db=5432\nweb=803\n", timeout_s=5, what="the entry removed")
        child.wait_starts(3)


def test_a_forbidden_list_is_the_same_one_line_policy_error_as_a_read(
    bao: Bao, prefix: str, tmp_path: Path
) -> None:
    """A token that may read but not list the path: secrets() exits 4 with the line secret() gives for a refused read."""
    bao.kv_put(f"{prefix}/services/api", port="1")
    bao.kv_put(f"{prefix}/other", port="1")
    rest = prefix.removeprefix("secret/")
    name = f"no-list-{uuid.uuid4().hex[:8]}"
    bao.policy(name, f'path "secret/data/{rest}/services/*" {{ capabilities = ["read"] }}')
    env = inject_env(bao, token=bao.token_with(name, "default"))
    lines = []
    for call in (f"secrets('{prefix}/services')", f"secret('{prefix}/other')"):
        write(tmp_path / "t.j2", "{{ " + call + " }}")
        result = run_inject("render", "-t", "t.j2:out.txt", env=env, cwd=tmp_path)
        assert result.returncode == 4, result.stderr
        lines.append(error_line(result))
    listed, read = lines
    assert (
        listed
        == f"inject: error: template 't.j2' line 1: permission denied reading '{prefix}/services' (token policies: default, {name})"
    )
    assert read == listed.replace(f"'{prefix}/services'", f"'{prefix}/other'")
    assert not (tmp_path / "out.txt").exists()


# --- secret_write(): SSH -------------------------------------------------------------------


def _ssh_mount(bao: Bao, ttl: str = "1h") -> str:
    """An SSH mount with a generated CA and a role `app` signing user certificates for `deploy`."""
    mount = f"ssh-{uuid.uuid4().hex[:8]}"
    bao.api("POST", f"sys/mounts/{mount}", json={"type": "ssh"})
    bao.api("POST", f"{mount}/config/ca", json={"generate_signing_key": True})
    role = {
        "key_type": "ca",
        "allow_user_certificates": True,
        "allowed_users": "deploy",
        "default_user": "deploy",
        "ttl": ttl,
        "max_ttl": "1h",
    }
    bao.api("POST", f"{mount}/roles/app", json=role)
    return mount


def _public_key(tmp_path: Path) -> str:
    """An ed25519 public key line: from ssh-keygen when there is one, else made by hand
    (the engine signs any well-formed key; no private half is needed to be signed)."""
    if shutil.which("ssh-keygen"):
        key = tmp_path / "id_ed25519"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=30
        )
        return (tmp_path / "id_ed25519.pub").read_text().strip()

    def field(data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + data

    return "ssh-ed25519 " + base64.b64encode(field(b"ssh-ed25519") + field(os.urandom(32))).decode()


def _certificate_facts(path: Path) -> dict[str, str]:
    """What `ssh-keygen -L` says of a certificate file (Type, Serial, Valid...); without ssh-keygen, its end."""
    if not shutil.which("ssh-keygen"):
        end = valid_before(path.read_text())
        assert end is not None, "not an OpenSSH certificate"
        return {"Valid": str(end)}
    listed = subprocess.run(
        ["ssh-keygen", "-L", "-f", str(path)], capture_output=True, text=True, timeout=30, check=False
    )
    assert listed.returncode == 0, listed.stderr
    facts = {}
    for line in listed.stdout.splitlines():
        name, colon, value = line.strip().partition(":")
        if colon and value.strip():
            facts[name] = value.strip()
    return facts


SIGN = "secret_write('MOUNT/sign/app', public_key=env('PUBLIC_KEY'), valid_principals='deploy')"


def test_secret_write_signs_an_ssh_key_once_per_render(tmp_path: Path) -> None:
    """Two templates and an env value use one SSH signing: one write in the audit log, one certificate ssh-keygen accepts."""
    with audited_server(tmp_path) as (server, audit_log):
        mount = _ssh_mount(server)
        sign = SIGN.replace("MOUNT", mount)
        write(tmp_path / "cert.j2", "{{ " + sign + ".signed_key | trim }}\n")
        write(tmp_path / "serial.j2", "{{ " + sign + ".serial_number }}")
        public_key = _public_key(tmp_path)
        env = inject_env(server, {"PUBLIC_KEY": public_key})
        result = run_inject(
            "-t", "cert.j2:id_ed25519-cert.pub", "-t", "serial.j2:serial.txt",
            "-e", "SERIAL={{ " + sign + ".serial_number }}", "--no-watch", "--",
            "sh", "-c", 'printf %s "$SERIAL" > env-serial.txt', env=env, cwd=tmp_path,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        facts = _certificate_facts(tmp_path / "id_ed25519-cert.pub")
        if "Type" in facts:
            assert facts["Type"].endswith("user certificate")
            assert int(facts["Serial"]) == int((tmp_path / "serial.txt").read_text(), 16)
        assert (tmp_path / "env-serial.txt").read_text() == (tmp_path / "serial.txt").read_text()
        signs = [
            entry
            for entry in map(json.loads, audit_log.read_text().splitlines())
            if entry.get("type") == "request" and entry["request"]["path"] == f"{mount}/sign/app"
        ]
        assert len(signs) == 1, "one write per render, however often it is referenced"


def test_an_ssh_certificate_is_signed_again_before_it_expires(bao: Bao, tmp_path: Path) -> None:
    """A 6s certificate is written anew at about 2/3 of its life: a new serial, and the child restarts once."""
    mount = _ssh_mount(bao, ttl="6s")
    write(tmp_path / "cert.j2", "{{ " + SIGN.replace("MOUNT", mount) + ".signed_key | trim }}\n")
    cert = tmp_path / "id-cert.pub"
    child = SignalChild.create(tmp_path)
    env = inject_env(bao, {"PUBLIC_KEY": _public_key(tmp_path)})
    argv = inject_argv("-t", "cert.j2:id-cert.pub", "--", *child.argv())
    with supervise(argv, env=env, cwd=tmp_path, stray=child.pids) as inject:
        child.wait_starts(1)
        first = cert.read_text()
        child.wait_starts(2, timeout_s=8)
        assert cert.read_text() != first
        assert valid_before(cert.read_text()) > valid_before(first)  # type: ignore[operator]
        assert inject.lines("new answer from") or inject.lines("restarting child")


# --- secret_write(): TOTP ------------------------------------------------------------------


@pytest.fixture(scope="module")
def totp_mount(bao: Bao) -> str:
    """A TOTP mount unique to this module."""
    mount = f"totp-{uuid.uuid4().hex[:8]}"
    bao.api("POST", f"sys/mounts/{mount}", json={"type": "totp"})
    return mount


def test_secret_write_creates_a_totp_key_and_validates_a_code(
    bao: Bao, totp_mount: str, tmp_path: Path
) -> None:
    """A write with parameters creates a TOTP key (its otpauth URL returned); a code read from it validates through a write."""
    write(
        tmp_path / "t.j2",
        f"{{{{ secret_write('{totp_mount}/keys/app', generate=true, issuer='inject', account_name='ops@example.com').url }}}}\n"
        f"{{{{ secret_write('{totp_mount}/code/app', code=secret('{totp_mount}/code/app').code).valid }}}}\n",
    )
    result = run_inject("render", "-t", "t.j2:out.txt", env=inject_env(bao), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    url, valid = (tmp_path / "out.txt").read_text().splitlines()
    assert url.startswith("otpauth://totp/inject:ops@example.com?")
    assert valid == "True"
    assert bao.api("GET", f"{totp_mount}/keys/app").json()["data"]["account_name"] == "ops@example.com"
