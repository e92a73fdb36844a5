"""Shared fixtures: one real OpenBao dev server per session, a unique KV prefix per test,
and a secrecy guard over everything inject printed in the session."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from tests.support import OUTPUTS, ROOT_TOKEN, Bao, _healthy, wait_for
from vault_inject.devserver import find_bao, free_port_pair


@pytest.fixture(scope="session")
def bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bao]:
    """One real `bao server -dev` for the whole session, stopped by pid at the end."""
    port = free_port_pair()
    home = tmp_path_factory.mktemp("bao-home")  # the dev server writes $HOME/.vault-token
    process = subprocess.Popen(
        [
            find_bao(),
            "server",
            "-dev",
            f"-dev-root-token-id={ROOT_TOKEN}",
            f"-dev-listen-address=127.0.0.1:{port}",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))},
            "HOME": str(home),
        },
    )
    OUTPUTS.forbidden.add(ROOT_TOKEN)
    server = Bao(address=f"http://127.0.0.1:{port}", token=ROOT_TOKEN, pid=process.pid)
    try:
        wait_for(lambda: _healthy(server), timeout_s=30, what="bao dev server")
        yield server
    finally:
        process.terminate()
        process.wait(timeout=15)


@pytest.fixture
def prefix(bao: Bao) -> str:
    """A unique KV path prefix so tests never see each other's secrets."""
    return f"secret/t-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session", autouse=True)
def _secrecy_guard() -> Iterator[None]:
    """After the whole session: no secret value or token appeared in anything inject printed."""
    yield
    leaks = sorted({v for v in OUTPUTS.forbidden for text in OUTPUTS.texts if v in text})
    assert not leaks, f"{len(leaks)} secret value(s) appeared in inject's output"
