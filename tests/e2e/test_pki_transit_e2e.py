"""Template functions over real OpenBao engines: `pki_cert` (one issue shared by every
template, re-issued before expiry with certificate and key changing together),
`transit_decrypt`, and `secret_previous` for rolling KV v2 key rotation."""

from __future__ import annotations

import base64
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.e2e.helpers_e2e import error_line, write
from tests.e2e.supervise_helpers import SignalChild
from tests.support import Bao, forbid, inject_argv, inject_env, run_inject, secret_value, supervise, wait_for

# --- PKI -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki_mount(bao: Bao) -> str:
    """A pki mount (unique to this module) with a root CA and a role `web` for *.localhost."""
    mount = f"pki-{uuid.uuid4().hex[:8]}"
    bao.api("POST", f"sys/mounts/{mount}", json={"type": "pki", "config": {"max_lease_ttl": "8760h"}})
    bao.api(
        "POST", f"{mount}/root/generate/internal", json={"common_name": "inject e2e root", "ttl": "8760h"}
    )
    bao.api(
        "POST",
        f"{mount}/roles/web",
        json={"allowed_domains": ["localhost"], "allow_subdomains": True, "max_ttl": "1h", "key_type": "ec"},
    )
    return mount


def _openssl(*args: str, stdin: str) -> str:
    return subprocess.run(
        ["openssl", *args], input=stdin, capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()


def _cert_facts(cert_pem: str, key_pem: str) -> tuple[str, bool]:
    """(serial, whether the key's public half is the certificate's)."""
    serial = _openssl("x509", "-noout", "-serial", stdin=cert_pem)
    cert_pub = _openssl("x509", "-noout", "-pubkey", stdin=cert_pem)
    key_pub = _openssl("pkey", "-pubout", stdin=forbid(key_pem))
    return serial, cert_pub == key_pub


CERT_TEMPLATE = (
    "{% set c = pki_cert('ROLE', common_name='app.localhost', ttl='6s') %}"
    "{{ c.certificate }}\n{{ c.issuing_ca }}\n"
)
KEY_TEMPLATE = "{% set c = pki_cert('ROLE', common_name='app.localhost', ttl='6s') %}{{ c.private_key }}\n"


def test_pki_cert_and_key_from_one_issue_reissued_together_before_expiry(
    bao: Bao, pki_mount: str, tmp_path: Path
) -> None:
    """Cert and key templates share one issue (`mount/issue/role` and `mount/role` alike); a 6s cert is re-issued before expiry, both files change together and the child restarts once."""
    write(tmp_path / "cert.j2", CERT_TEMPLATE.replace("ROLE", f"{pki_mount}/issue/web"))
    write(tmp_path / "key.j2", KEY_TEMPLATE.replace("ROLE", f"{pki_mount}/web"))
    cert, key = tmp_path / "tls" / "cert.pem", tmp_path / "tls" / "key.pem"
    child = SignalChild.create(tmp_path)
    argv = inject_argv("-t", "cert.j2:tls/cert.pem", "-t", "key.j2:tls/key.pem", "--", *child.argv())
    started_s = time.monotonic()  # the first certificate is issued after this: it expires after +6s
    with supervise(argv, env=inject_env(bao), cwd=tmp_path, stray=child.pids) as inject:
        child.wait_starts(1)
        serial, matches = _cert_facts(cert.read_text(), key.read_text())
        assert matches, "the key must belong to the certificate"
        assert "CN=app.localhost" in _openssl("x509", "-noout", "-subject", stdin=cert.read_text()).replace(
            " ", ""
        )

        child.wait_starts(2, timeout_s=6)
        assert time.monotonic() - started_s < 6, "re-issued only after the old certificate expired"
        new_serial, new_matches = _cert_facts(cert.read_text(), key.read_text())
        assert new_serial != serial
        assert new_matches, "after re-issue the key must still belong to the certificate"
        assert len(inject.lines("restarting child")) == 1, "one restart for the pair, not one per file"
        end = _openssl("x509", "-noout", "-checkend", "0", stdin=cert.read_text())
        assert "will not expire" in end


def test_pki_cert_renders_ca_chain_and_expiration(bao: Bao, pki_mount: str, tmp_path: Path) -> None:
    """`pki_cert` exposes the issuing CA (which verifies the certificate) and the expiration time."""
    write(
        tmp_path / "t.j2",
        f"{{% set c = pki_cert('{pki_mount}/issue/web', common_name='api.localhost', ttl='1m') %}}"
        "{{ c.certificate }}\n---\n{{ c.issuing_ca }}\n---\n{{ c.expiration }}\n",
    )
    result = run_inject("render", "-t", "t.j2:out.txt", env=inject_env(bao), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    leaf, ca, expiration = (tmp_path / "out.txt").read_text().split("\n---\n")
    write(tmp_path / "leaf.pem", leaf + "\n")
    write(tmp_path / "ca.pem", ca + "\n")
    verified = subprocess.run(
        ["openssl", "verify", "-CAfile", str(tmp_path / "ca.pem"), str(tmp_path / "leaf.pem")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert int(expiration.strip()) > 0


# --- transit --------------------------------------------------------------------------------


def _encrypt(bao: Bao, mount: str, key: str, plaintext: str) -> str:
    body = {"plaintext": base64.b64encode(plaintext.encode()).decode()}
    return str(bao.api("POST", f"{mount}/encrypt/{key}", json=body).json()["data"]["ciphertext"])


@pytest.fixture(scope="module")
def transit_mount(bao: Bao) -> str:
    """A transit mount unique to this module."""
    mount = f"transit-{uuid.uuid4().hex[:8]}"
    bao.api("POST", f"sys/mounts/{mount}", json={"type": "transit"})
    return mount


def test_transit_decrypt_renders_plaintext(bao: Bao, transit_mount: str, tmp_path: Path) -> None:
    """`transit_decrypt('mount/key', ciphertext)` renders the plaintext the API encrypted."""
    key = f"k{uuid.uuid4().hex[:8]}"
    bao.api("POST", f"{transit_mount}/keys/{key}")
    plaintext = secret_value("plain")
    ciphertext = _encrypt(bao, transit_mount, key, plaintext)
    write(tmp_path / "t.j2", f"token={{{{ transit_decrypt('{transit_mount}/{key}', '{ciphertext}') }}}}\n")
    result = run_inject("render", "-t", "t.j2:out.txt", env=inject_env(bao), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.txt").read_text() == f"token={plaintext}\n"


def test_transit_decrypt_bare_key_uses_transit_mount(bao: Bao, tmp_path: Path) -> None:
    """A bare key name (`transit_decrypt('mykey', ...)`) decrypts with the `transit/` mount."""
    mounts = bao.api("GET", "sys/mounts").json()["data"]
    if "transit/" not in mounts:
        bao.api("POST", "sys/mounts/transit", json={"type": "transit"})
    key = f"mykey-{uuid.uuid4().hex[:8]}"
    bao.api("POST", f"transit/keys/{key}")
    plaintext = secret_value("plain")
    ciphertext = _encrypt(bao, "transit", key, plaintext)
    write(tmp_path / "t.j2", f"{{{{ transit_decrypt('{key}', '{ciphertext}') }}}}")
    result = run_inject("render", "-t", "t.j2:out.txt", env=inject_env(bao), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.txt").read_text() == plaintext


def test_transit_decrypt_with_wrong_key_fails_naming_the_key(
    bao: Bao, transit_mount: str, tmp_path: Path
) -> None:
    """Ciphertext from another key exits 4 with one line naming the template and the key path; nothing written."""
    right, wrong = f"k{uuid.uuid4().hex[:8]}", f"k{uuid.uuid4().hex[:8]}"
    for key in (right, wrong):
        bao.api("POST", f"{transit_mount}/keys/{key}")
    ciphertext = _encrypt(bao, transit_mount, right, secret_value("plain"))
    write(tmp_path / "t.j2", f"{{{{ transit_decrypt('{transit_mount}/{wrong}', '{ciphertext}') }}}}")
    result = run_inject("render", "-t", "t.j2:out.txt", env=inject_env(bao), cwd=tmp_path)
    assert result.returncode == 4
    line = error_line(result)
    assert "t.j2" in line
    assert f"{transit_mount}/decrypt/{wrong}" in line
    assert not (tmp_path / "out.txt").exists()


# --- secret_previous (rolling rotation) -----------------------------------------------------

ROLLING_TEMPLATE = (
    "current={{ secret('PATH').jwt_secret }}\n"
    "{% if secret_previous('PATH') %}previous={{ secret_previous('PATH').jwt_secret }}"
    "{% else %}previous=none{% endif %}\n"
)


def test_secret_previous_renders_current_and_previous_version(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """With two KV v2 versions, `secret_previous(path)` is the older one beside the current one."""
    path = f"{prefix}/api-brain"
    old, new = secret_value("jwt"), secret_value("jwt")
    bao.kv_put(path, jwt_secret=old)
    bao.kv_put(path, jwt_secret=new)
    assert _render_rolling(bao, path, tmp_path) == f"current={new}\nprevious={old}\n"


def _render_rolling(bao: Bao, path: str, tmp_path: Path) -> str:
    """``inject render`` of the rolling-key template for ``path``; what it wrote."""
    write(tmp_path / "t.j2", ROLLING_TEMPLATE.replace("PATH", path))
    result = run_inject("render", "-t", "t.j2:out.txt", env=inject_env(bao), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return (tmp_path / "out.txt").read_text()


def test_secret_previous_is_none_with_one_version(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """With only one version, `secret_previous(path)` is None, so `{% if %}` takes the else branch."""
    path = f"{prefix}/api-brain"
    only = secret_value("jwt")
    bao.kv_put(path, jwt_secret=only)
    assert _render_rolling(bao, path, tmp_path) == f"current={only}\nprevious=none\n"


def test_secret_previous_follows_a_rotation_while_running(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """A rotation while inject runs moves the old current key to `previous` in the same re-render."""
    path = f"{prefix}/api-brain"
    first, second, third = (secret_value("jwt") for _ in range(3))
    bao.kv_put(path, jwt_secret=first)
    bao.kv_put(path, jwt_secret=second)
    write(tmp_path / "t.j2", ROLLING_TEMPLATE.replace("PATH", path))
    out = tmp_path / "out.txt"
    argv = inject_argv("watch", "--poll-interval", "300ms", "-t", "t.j2:out.txt")
    with supervise(argv, env=inject_env(bao), cwd=tmp_path, ready=None):
        wait_for(lambda: out.exists(), timeout_s=5, what="the first render")
        assert out.read_text() == f"current={second}\nprevious={first}\n"
        bao.kv_put(path, jwt_secret=third)
        wait_for(
            lambda: out.read_text() == f"current={third}\nprevious={second}\n",
            timeout_s=5,
            what="the rotated pair",
        )
