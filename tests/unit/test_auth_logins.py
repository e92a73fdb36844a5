"""The Authenticator's decisions for the cert and userpass logins and a response-wrapped
AppRole secret_id, against a recording client (the ``auth.Client`` protocol; the real
server is in tests/e2e/test_auth_logins_e2e.py)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from vault_inject.client.auth import Authenticator, wrapping_token
from vault_inject.client.vault import Login
from vault_inject.config import Config
from vault_inject.errors import AuthError, UnreachableError, UsageError
from vault_inject.model import TokenInfo


class Recording:
    """Records logins and unwraps; ``unwrap`` answers ``answer`` or raises ``error``."""

    def __init__(self, answer: Mapping[str, Any] | None = None, error: Exception | None = None) -> None:
        self.answer = answer if answer is not None else {"secret_id": "sid-1"}
        self.error = error
        self.logins: list[tuple[str, str, dict[str, str], str]] = []
        self.unwrapped: list[str] = []

    def set_token(self, token: str) -> None:
        """Unused by these methods."""

    def lookup_self(self) -> TokenInfo:
        """Unused by these methods."""
        return TokenInfo()

    def login(self, method: str, mount: str, credentials: Mapping[str, str], *, what: str) -> Login:
        """Record the login."""
        self.logins.append((method, mount, dict(credentials), what))
        return Login(token="t", ttl_s=60, renewable=True)

    def unwrap(self, wrapping_token: str, *, what: str) -> Mapping[str, Any]:
        """Record the unwrap; answer or fail."""
        self.unwrapped.append(wrapping_token)
        if self.error is not None:
            raise self.error
        return self.answer


def _wrapped(tmp_path: Path, **extra: Any) -> Config:
    (tmp_path / "role_id").write_text("rid\n")
    (tmp_path / "wrapped").write_text("wrapping-token\n")
    return Config(
        auth_method="approle",
        role_id_file=str(tmp_path / "role_id"),
        secret_id_wrapped_file=str(tmp_path / "wrapped"),
        **extra,
    )


def test_wrapped_secret_id_is_unwrapped_once_and_kept_for_relogins(tmp_path: Path) -> None:
    """The wrapping token is unwrapped at the first login only; its file is removed; later logins reuse the secret_id."""
    client = Recording()
    authenticator = Authenticator(_wrapped(tmp_path), {})
    authenticator.login(client)
    authenticator.login(client)
    assert client.unwrapped == ["wrapping-token"]
    assert [c["secret_id"] for _, _, c, _ in client.logins] == ["sid-1", "sid-1"]
    assert not (tmp_path / "wrapped").exists()
    assert authenticator.owns_token
    assert authenticator.can_relogin


def test_refused_wrapping_token_says_already_unwrapped_and_removes_the_file(tmp_path: Path) -> None:
    """A wrapping token the server refuses: AuthError naming the file, saying it was already unwrapped (interception); file removed; no login."""
    client = Recording(error=AuthError("refused"))
    with pytest.raises(AuthError, match="already unwrapped") as caught:
        Authenticator(_wrapped(tmp_path), {}).login(client)
    assert str(tmp_path / "wrapped") in str(caught.value)
    assert "intercepted" in str(caught.value)
    assert not (tmp_path / "wrapped").exists()
    assert client.logins == []


def test_unreachable_server_keeps_the_wrapped_file(tmp_path: Path) -> None:
    """No answer from the server: the error passes through and the wrapped file stays for the next start."""
    client = Recording(error=UnreachableError("down"))
    with pytest.raises(UnreachableError):
        Authenticator(_wrapped(tmp_path), {}).login(client)
    assert (tmp_path / "wrapped").exists()


def test_a_wrapped_response_without_secret_id_is_refused(tmp_path: Path) -> None:
    """A wrapping token that wraps something other than a secret_id: AuthError, no login."""
    client = Recording(answer={"token": "x"})
    with pytest.raises(AuthError, match="does not wrap an AppRole secret_id"):
        Authenticator(_wrapped(tmp_path), {}).login(client)
    assert client.logins == []


def test_secret_id_file_and_wrapped_file_together_is_a_usage_error(tmp_path: Path) -> None:
    """Both secret_id sources configured: UsageError before anything is unwrapped."""
    client = Recording()
    config = _wrapped(tmp_path, secret_id_file=str(tmp_path / "secret_id"))
    with pytest.raises(UsageError, match="secret_id_wrapped_file"):
        Authenticator(config, {}).login(client)
    assert client.unwrapped == []
    assert (tmp_path / "wrapped").exists()


def test_userpass_rereads_the_password_at_every_login(tmp_path: Path) -> None:
    """userpass logs in at the default mount with the password file's current content each time."""
    password = tmp_path / "password"
    password.write_text("one\n")
    client = Recording()
    authenticator = Authenticator(
        Config(auth_method="userpass", username="app", password_file=str(password)), {}
    )
    authenticator.login(client)
    password.write_text("two\n")
    authenticator.login(client)
    assert [(m, mount, c["password"]) for m, mount, c, _ in client.logins] == [
        ("userpass", "userpass", "one"),
        ("userpass", "userpass", "two"),
    ]
    assert client.logins[0][3] == "userpass login as 'app'"
    assert authenticator.watched_file == ""
    assert authenticator.owns_token


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"password_file": "p"}, "needs \\[auth\\] username"),
        ({"username": "app"}, "needs \\[auth\\] password_file"),
    ],
)
def test_userpass_settings_missing_are_usage_errors(settings: dict[str, str], message: str) -> None:
    """userpass without a username or a password file: UsageError naming the setting."""
    with pytest.raises(UsageError, match=message):
        Authenticator(Config(auth_method="userpass", **settings), {}).login(Recording())


def _cert_files(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "c.pem").write_text("cert\n")
    (tmp_path / "c.key").write_text("key\n")
    return {"client_cert": str(tmp_path / "c.pem"), "client_key": str(tmp_path / "c.key")}


@pytest.mark.parametrize(("role", "payload"), [("web", {"role": "web"}), ("", {})])
def test_cert_login_names_the_role_only_when_given(
    tmp_path: Path, role: str, payload: dict[str, str]
) -> None:
    """cert logs in at the default mount; the payload names the cert role only when one is configured."""
    client = Recording()
    config = Config(auth_method="cert", address="https://vault:8200", role=role, **_cert_files(tmp_path))
    Authenticator(config, {}).login(client)
    assert client.logins[0][:3] == ("cert", "cert", payload)


def test_cert_login_needs_a_client_certificate_and_https(tmp_path: Path) -> None:
    """cert without a client certificate and key, or with an http:// address: UsageError saying which."""
    with pytest.raises(UsageError, match="--client-cert and --client-key"):
        Authenticator(Config(auth_method="cert", address="https://vault:8200"), {}).login(Recording())
    plain = Config(auth_method="cert", address="http://vault:8200", **_cert_files(tmp_path))
    with pytest.raises(UsageError, match="needs https"):
        Authenticator(plain, {}).login(Recording())


def test_cert_login_with_an_unreadable_key_names_the_file(tmp_path: Path) -> None:
    """A client key that is not there: AuthError naming the file (before any request)."""
    files = _cert_files(tmp_path)
    (tmp_path / "c.key").unlink()
    client = Recording()
    with pytest.raises(AuthError, match=re.escape(f"client key {tmp_path / 'c.key'}: not found")):
        Authenticator(Config(auth_method="cert", address="https://vault:8200", **files), {}).login(client)
    assert client.logins == []


@pytest.mark.parametrize(
    "text",
    [
        "hvs.TOKEN",
        '{"token": "hvs.TOKEN", "ttl": 300, "creation_path": "auth/approle/role/r/secret-id"}',
        '{"request_id": "", "data": null, "wrap_info": {"token": " hvs.TOKEN ", "ttl": 300}}',
    ],
)
def test_wrapping_token_alone_or_in_wrap_json(text: str) -> None:
    """The wrapped file holds the token alone, Agent's wrap_info JSON, or the whole `-format=json` answer."""
    assert wrapping_token(text, "/run/wrapped") == "hvs.TOKEN"


@pytest.mark.parametrize("text", ["{not json", '{"wrap_info": {}}', '{"token": 5}'])
def test_json_without_a_wrapping_token_names_the_file_not_the_content(text: str) -> None:
    """JSON that holds no wrap_info token: AuthError naming the file, never quoting the content."""
    with pytest.raises(AuthError, match="/run/wrapped: JSON without a wrap_info token") as caught:
        wrapping_token(text, "/run/wrapped")
    assert text not in str(caught.value)
