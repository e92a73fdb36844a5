"""TLS with client certificates: a server listener that requires one (mutual TLS)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.helpers_e2e import error_line, make_certificates, write
from tests.support import Bao, bao_server, inject_env, run_inject, secret_value
from vault_inject.cli.devserver import free_port_pair

ROOT = "mtls-root-" + secret_value("tok")


@pytest.fixture(scope="module")
def mtls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Bao, Path]]:
    """A dev server with an extra listener that requires a client certificate signed by our CA."""
    directory = tmp_path_factory.mktemp("mtls")
    make_certificates(directory)
    tls_port = free_port_pair()
    write(
        directory / "listener.hcl",
        f'listener "tcp" {{\n  address = "127.0.0.1:{tls_port}"\n  cluster_address = "127.0.0.1:{tls_port + 1}"\n'
        f'  tls_cert_file = "{directory}/server.pem"\n  tls_key_file = "{directory}/server.key"\n'
        f'  tls_client_ca_file = "{directory}/ca.pem"\n  tls_require_and_verify_client_cert = true\n}}\n',
    )
    with bao_server(directory, f"-config={directory}/listener.hcl", token=ROOT) as plain:
        yield Bao(address=f"https://127.0.0.1:{tls_port}", token=ROOT, pid=plain.pid), directory


def test_client_certificate_is_presented(mtls_server: tuple[Bao, Path], tmp_path: Path) -> None:
    """`--client-cert`/`--client-key` (with `--ca-cert`) reach a listener that requires mutual TLS."""
    server, certs = mtls_server
    value = secret_value()
    response = server.session.post(
        f"{server.address}/v1/secret/data/app",
        json={"data": {"k": value}},
        headers={"X-Vault-Token": ROOT},
        cert=(str(certs / "client.pem"), str(certs / "client.key")),
        verify=str(certs / "ca.pem"),
        timeout=10,
    )
    assert response.status_code < 400, response.text
    write(tmp_path / "a.j2", "{{ secret('secret/app').k }}")
    env = inject_env(server, token=ROOT)
    result = run_inject(
        "render", "--ca-cert", str(certs / "ca.pem"), "--client-cert", str(certs / "client.pem"),
        "--client-key", str(certs / "client.key"), "-t", "a.j2:out.txt",
        env=env, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.txt").read_text() == value


def test_missing_client_certificate_is_a_clear_tls_error(
    mtls_server: tuple[Bao, Path], tmp_path: Path
) -> None:
    """Without a client certificate, inject exits 5 with one line saying the server wants one."""
    server, certs = mtls_server
    write(tmp_path / "a.j2", "{{ secret('secret/app').k }}")
    result = run_inject(
        "render", "--ca-cert", str(certs / "ca.pem"), "--retry-timeout", "2s", "-t", "a.j2:out.txt",
        env=inject_env(server, token=ROOT), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 5
    assert "client certificate" in error_line(result)
    assert not (tmp_path / "out.txt").exists()
