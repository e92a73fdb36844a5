"""TLS to the server: a second real OpenBao started with ``-dev-tls`` (its own CA, written
to a temp dir as vault-ca.pem), reached over https with ``--ca-cert`` / ``VAULT_CACERT``,
refused with a clear one-line error without the CA, and reached with ``--tls-skip-verify``."""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.helpers_e2e import error_line, write
from tests.support import Bao, bao_server, inject_env, run_inject, secret_value

# Trust settings of the machine must not make an untrusted server look trusted, or hide one.
_TRUST_VARS = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR")


@pytest.fixture(scope="module")
def tls_bao() -> Iterator[tuple[Bao, Path]]:
    """A `bao server -dev-tls` on a free loopback port; yields the server and its CA file."""
    cert_dir = Path(tempfile.mkdtemp(prefix="inject-tls-"))
    try:
        with bao_server(cert_dir, tls=True) as server:
            yield server, cert_dir / "vault-ca.pem"
    finally:
        shutil.rmtree(cert_dir, ignore_errors=True)


def _env(server: Bao, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in inject_env(server).items() if k not in _TRUST_VARS}
    env.update(extra or {})
    return env


def _setup(server: Bao, tmp_path: Path) -> str:
    """A secret on the TLS server and a template for it; the secret's value."""
    value = secret_value()
    path = f"secret/tls-{secrets.token_hex(5)}"
    server.kv_put(path, v=value)
    write(tmp_path / "t.j2", f"{{{{ secret('{path}').v }}}}")
    return value


def test_ca_cert_option_renders_over_https(tls_bao: tuple[Bao, Path], tmp_path: Path) -> None:
    """`--ca-cert` with the server's CA verifies the https server and the render works."""
    server, ca_file = tls_bao
    value = _setup(server, tmp_path)
    result = run_inject(
        "render", "--ca-cert", str(ca_file), "-t", "t.j2:out.txt", env=_env(server), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.txt").read_text() == value


def test_vault_cacert_env_renders_over_https(tls_bao: tuple[Bao, Path], tmp_path: Path) -> None:
    """`VAULT_CACERT` works like `--ca-cert`."""
    server, ca_file = tls_bao
    value = _setup(server, tmp_path)
    env = _env(server, {"VAULT_CACERT": str(ca_file)})
    result = run_inject("render", "-t", "t.j2:out.txt", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.txt").read_text() == value


def test_without_the_ca_fails_with_one_tls_line(tls_bao: tuple[Bao, Path], tmp_path: Path) -> None:
    """Without the CA the server is not trusted: exit 5 at once, one line saying so (TLS, address, --ca-cert), nothing written."""
    server, _ = tls_bao
    _setup(server, tmp_path)
    started_s = time.monotonic()
    result = run_inject("render", "-t", "t.j2:out.txt", env=_env(server), cwd=tmp_path, timeout_s=20)
    assert result.returncode == 5
    assert time.monotonic() - started_s < 10, "an untrusted certificate is not retried for a minute"
    line = error_line(result)
    assert "TLS" in line
    assert server.address in line
    assert "not trusted" in line
    assert "--ca-cert" in line
    assert "refused" not in line
    assert not (tmp_path / "out.txt").exists()


def test_tls_skip_verify_renders_without_the_ca(tls_bao: tuple[Bao, Path], tmp_path: Path) -> None:
    """`--tls-skip-verify` reaches the https server without its CA, and stderr stays inject's own log lines (no raw urllib3 warnings)."""
    server, _ = tls_bao
    value = _setup(server, tmp_path)
    result = run_inject(
        "render", "--tls-skip-verify", "--log-format", "json", "-t", "t.j2:out.txt",
        env=_env(server), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.txt").read_text() == value
    lines = result.stderr.splitlines()
    assert lines
    assert all(json.loads(line)["logger"].startswith("vault_inject") for line in lines), result.stderr


def test_ca_cert_wins_over_requests_ca_bundle(tls_bao: tuple[Bao, Path], tmp_path: Path) -> None:
    """`--ca-cert` is used even when REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE name another CA (common in images)."""
    server, ca_file = tls_bao
    value = _setup(server, tmp_path)
    other_ca = tmp_path / "other-ca.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            str(tmp_path / "other-ca.key"),
            "-out",
            str(other_ca),
            "-subj",
            "/CN=unrelated CA",
            "-days",
            "1",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    env = _env(server, {"REQUESTS_CA_BUNDLE": str(other_ca), "CURL_CA_BUNDLE": str(other_ca)})
    result = run_inject("render", "--ca-cert", str(ca_file), "-t", "t.j2:out.txt", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.txt").read_text() == value
