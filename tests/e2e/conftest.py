"""Fixtures shared by the end-to-end tests (the session's server is in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.fault_proxy import FaultProxy
from tests.support import Bao, secret_value


@pytest.fixture
def proxy(bao: Bao) -> Iterator[FaultProxy]:
    """A fault proxy in front of the session's server, passing through; stopped at the end.

    ``refuse()`` is an outage (nothing listens on its port), ``pass_through()`` the recovery."""
    fault = FaultProxy(bao.address, body_marker=secret_value("body"))
    fault.start()
    yield fault
    fault.stop()
