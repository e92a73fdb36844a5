"""Namespaces: the same path means a different secret inside an OpenBao namespace."""

from __future__ import annotations

import uuid
from pathlib import Path

from tests.e2e.helpers_e2e import write
from tests.support import Bao, inject_env, run_inject, secret_value


def _namespace_with_secret(bao: Bao, value: str) -> str:
    name = f"ns-{uuid.uuid4().hex[:8]}"
    bao.api("POST", f"sys/namespaces/{name}")
    headers = {"X-Vault-Token": bao.token, "X-Vault-Namespace": name}
    for method, path, body in (
        ("POST", "sys/mounts/secret", {"type": "kv", "options": {"version": "2"}}),
        ("POST", "secret/data/app", {"data": {"k": value}}),
    ):
        response = bao.session.request(
            method, f"{bao.address}/v1/{path}", json=body, headers=headers, timeout=10
        )
        assert response.status_code < 400, response.text
    return name


def test_namespace_option_and_env_read_inside_the_namespace(bao: Bao, tmp_path: Path) -> None:
    """`--namespace NS` and VAULT_NAMESPACE both read `secret/app` inside NS, not at the root."""
    value = secret_value()
    namespace = _namespace_with_secret(bao, value)
    write(tmp_path / "a.j2", "{{ secret('secret/app').k }}")
    by_option = run_inject(
        "render", "--namespace", namespace, "-t", "a.j2:opt.txt", env=inject_env(bao), cwd=tmp_path
    )
    by_env = run_inject(
        "render", "-t", "a.j2:env.txt", env=inject_env(bao, {"VAULT_NAMESPACE": namespace}), cwd=tmp_path
    )
    assert by_option.returncode == 0, by_option.stderr
    assert by_env.returncode == 0, by_env.stderr
    assert (tmp_path / "opt.txt").read_text() == value
    assert (tmp_path / "env.txt").read_text() == value
