"""The offline client of a plain PID 1 makes no VaultClient (and imports no hvac) until
something is read through it, and then makes it with the token it was given."""

from __future__ import annotations

from typing import Any

from vault_inject.cli.app import DeferredClient
from vault_inject.model import KvRead


class Made:
    """Stands in for a VaultClient; records how it was made and what it was asked."""

    def __init__(self, token: str, retry_timeout_s: float) -> None:
        self.token, self.retry_timeout_s = token, retry_timeout_s
        self.calls: list[tuple[str, Any]] = []

    def fetch(self, request: KvRead, *, budget_s: float | None = None) -> str:
        self.calls.append(("fetch", request.path))
        return f"secret at {request.path}"

    def close(self) -> None:
        self.calls.append(("close", None))


def maker(made: list[Made]) -> Any:
    """A make function for DeferredClient that appends what it makes to ``made``."""

    def make(token: str, timeout: float) -> Any:
        made.append(Made(token, timeout))
        return made[-1]

    return make


def test_binding_cloning_and_closing_make_no_client() -> None:
    """clone, set_token, close and taking bound fetch/read_many make nothing."""
    made: list[Made] = []
    client = DeferredClient(maker(made), retry_timeout_s=0)
    other = client.clone(retry_timeout_s=2.0)
    _ = (client.fetch, client.read_many, other.fetch)
    other.set_token("t2")
    client.close()
    other.close()
    assert made == []


def test_the_first_read_makes_the_client_with_the_latest_token_and_budget() -> None:
    """A read makes the real client once, with the token set so far and the clone's budget."""
    made: list[Made] = []
    clone = DeferredClient(maker(made), retry_timeout_s=0).clone(retry_timeout_s=2.0)
    clone.set_token("t2")
    assert clone.fetch(KvRead("secret/app")) == "secret at secret/app"
    assert clone.fetch(KvRead("secret/db")) == "secret at secret/db"
    assert [(m.token, m.retry_timeout_s) for m in made] == [("t2", 2.0)]
    clone.close()
    assert made[0].calls[-1] == ("close", None)
