"""Fixtures shared by the end-to-end tests (the session's server is in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.auth_helpers import unique
from tests.e2e.fault_proxy import FaultProxy
from tests.e2e.helpers_e2e import audited_server
from tests.support import Bao, secret_value


@pytest.fixture
def proxy(bao: Bao) -> Iterator[FaultProxy]:
    """A fault proxy in front of the session's server, passing through; stopped at the end.

    ``refuse()`` is an outage (nothing listens on its port), ``pass_through()`` the recovery."""
    fault = FaultProxy(bao.address, body_marker=secret_value("body"))
    fault.start()
    yield fault
    fault.stop()


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Bao, Path]]:
    """A dev server of the module's own whose file audit device records every request, and its log."""
    with audited_server(tmp_path_factory.mktemp("audit")) as found:
        yield found


@pytest.fixture(scope="module")
def approle_mount(bao: Bao) -> str:
    """An approle auth mount unique to the test module."""
    mount = unique("approle")
    bao.api("POST", f"sys/auth/{mount}", json={"type": "approle"})
    return mount
