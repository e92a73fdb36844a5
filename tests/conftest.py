"""Shared fixtures: one real OpenBao dev server per session, a unique KV prefix per test,
and a secrecy guard over everything inject printed in the session."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import OUTPUTS, ROOT_TOKEN, Bao, bao_server


@pytest.fixture(scope="session")
def bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bao]:
    """One real `bao server -dev` for the whole session, stopped at the end."""
    with bao_server(tmp_path_factory.mktemp("bao-home"), token=ROOT_TOKEN) as server:
        yield server


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


@pytest.fixture
def volume() -> Iterator[Path]:
    """A directory under /tmp that uid 65534 can reach: ``base`` (0755), removed at the end."""
    base = Path(tempfile.mkdtemp(prefix="inject-vol-", dir="/tmp"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base)
