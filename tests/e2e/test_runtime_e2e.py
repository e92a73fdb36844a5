"""The ``Secrets`` library against the real OpenBao: cached gets kept current by the
background poll, change callbacks, errors that name the path, thread safety, the
request count (an audited server), and no value in any log record."""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.fault_proxy import FaultProxy
from tests.e2e.helpers_e2e import audited_server, reader_token
from tests.e2e.test_pki_transit_e2e import pki_mount
from tests.support import Bao, forbid, record_output, run_inject, secret_value, wait_for
from vault_inject import AuthError, InjectError, PermissionDenied, SecretNotFound, Secrets, UsageError

__all__ = ["pki_mount"]  # the module fixture, imported so pytest finds it here

POLL_S = 0.5
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def clean_env() -> dict[str, str]:
    """This environment without any server, token or inject setting."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_", "INJECT_"))}


def env_for(bao: Bao, token: str | None = None) -> dict[str, str]:
    """The settings a service would have: address and token, no ~/.vault-token fallback."""
    return {"VAULT_ADDR": bao.address, "VAULT_TOKEN": token or bao.token, "HOME": "/nonexistent-home"}


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every vault_inject record at debug level; added to the session's secrecy guard."""
    caplog.set_level(logging.DEBUG, logger="vault_inject")
    yield caplog
    record_output(caplog.text)


def test_get_returns_data_and_one_key(bao: Bao, prefix: str, logs: pytest.LogCaptureFixture) -> None:
    """get(path) is the latest data as a dict (a copy), get(path, key) one value, version= an old one."""
    first, second = secret_value(), secret_value()
    bao.kv_put(f"{prefix}/api", jwt_secret=first)
    bao.kv_put(f"{prefix}/api", jwt_secret=second, extra="x")
    with Secrets(environ=env_for(bao)) as secrets:
        assert secrets.get(f"{prefix}/api") == {"jwt_secret": second, "extra": "x"}
        assert secrets.get(f"{prefix}/api", "jwt_secret") == second
        assert secrets.get(f"{prefix}/api", "jwt_secret", version=1) == first
        secrets.get(f"{prefix}/api")["jwt_secret"] = "changed by the app"
        assert secrets.get(f"{prefix}/api", "jwt_secret") == second, "callers get copies"


def test_rotation_is_seen_within_the_poll_interval(
    bao: Bao, prefix: str, logs: pytest.LogCaptureFixture
) -> None:
    """A new KV version written on the server is what get() returns after one poll interval."""
    bao.kv_put(f"{prefix}/db", password=secret_value())
    with Secrets(environ=env_for(bao), poll_interval=POLL_S) as secrets:
        secrets.get(f"{prefix}/db")
        rotated = secret_value()
        bao.kv_put(f"{prefix}/db", password=rotated)
        wait_for(
            lambda: secrets.get(f"{prefix}/db", "password") == rotated,
            timeout_s=POLL_S * 2 + 2,  # the interval, plus a loaded machine's scheduling slack
            what="the rotated value",
        )


def test_on_change_is_called_once_per_new_version(
    bao: Bao, prefix: str, logs: pytest.LogCaptureFixture
) -> None:
    """Each new version calls the callback exactly once with its data; the baseline does not."""
    path = f"{prefix}/svc"
    bao.kv_put(path, key=secret_value())
    seen: list[dict[str, Any]] = []
    with Secrets(environ=env_for(bao), poll_interval=POLL_S) as secrets:
        secrets.on_change(path, seen.append)
        for expected_calls in (1, 2):
            value = secret_value()
            bao.kv_put(path, key=value)
            wait_for(lambda n=expected_calls: len(seen) >= n, timeout_s=5, what=f"callback {expected_calls}")
            assert seen[-1] == {"key": value}
        wait_for(lambda: secrets.get(path, "key") == value, timeout_s=2, what="cache")
        polls_before = logs.text.count(f"read {path}")
        wait_for(
            lambda: logs.text.count(f"read {path}") >= polls_before + 2, timeout_s=5, what="two more polls"
        )
    assert len(seen) == 2


def test_a_raising_callback_is_logged_and_polling_goes_on(
    bao: Bao, prefix: str, logs: pytest.LogCaptureFixture
) -> None:
    """A callback that raises is logged by type (no message) and later versions are still seen."""
    path = f"{prefix}/cb"
    bao.kv_put(path, key=secret_value())
    leaked = secret_value()

    def broken(data: dict[str, Any]) -> None:
        raise ValueError(leaked)

    with Secrets(environ=env_for(bao), poll_interval=POLL_S) as secrets:
        secrets.on_change(path, broken)
        bao.kv_put(path, key=secret_value())
        wait_for(lambda: "raised ValueError" in logs.text, timeout_s=5, what="the callback error in the log")
        last = secret_value()
        bao.kv_put(path, key=last)
        wait_for(lambda: secrets.get(path, "key") == last, timeout_s=5, what="the next version")
    assert leaked not in logs.text


def test_errors_name_the_path_and_never_a_value(
    bao: Bao, prefix: str, logs: pytest.LogCaptureFixture
) -> None:
    """Missing path, key and version, a forbidden path and a KV path given to lease() raise our
    own errors naming the path (and key); no value is in any message."""
    value = secret_value()
    bao.kv_put(f"{prefix}/ok", key=value)
    with Secrets(environ=env_for(bao, reader_token(bao, f"{prefix}/ok"))) as secrets:
        failures = [
            (SecretNotFound, lambda: secrets.get(f"{prefix}/ok", "nope"), "'nope'"),
            (SecretNotFound, lambda: secrets.get(f"{prefix}/ok", version=7), "version 7"),
            (PermissionDenied, lambda: secrets.get(f"{prefix}/other"), f"{prefix}/other"),
            (UsageError, lambda: secrets.lease(f"{prefix}/ok"), "Secrets.get"),
        ]
        for kind, call, detail in failures:
            with pytest.raises(kind) as info:
                call()
            message = str(info.value)
            assert prefix in message
            assert detail in message
            assert value not in message
    with Secrets(environ=env_for(bao)) as secrets, pytest.raises(SecretNotFound, match=f"{prefix}/missing"):
        secrets.get(f"{prefix}/missing")


def test_a_bad_token_is_an_auth_error(bao: Bao) -> None:
    """A token the server rejects fails at Secrets() with AuthError (an InjectError), token not quoted."""
    bad = secret_value("hvs")
    with pytest.raises(AuthError) as info:
        Secrets(environ=env_for(bao, bad))
    assert isinstance(info.value, InjectError)
    assert bad not in str(info.value)


def test_closed_secrets_refuse_and_stop_their_thread(bao: Bao, prefix: str) -> None:
    """After close() the background thread is gone and get() raises UsageError."""
    bao.kv_put(f"{prefix}/c", key=secret_value())
    secrets = Secrets(environ=env_for(bao), poll_interval=POLL_S)
    secrets.get(f"{prefix}/c")
    secrets.close()
    secrets.close()  # twice is fine
    assert secrets.closed
    assert not [t for t in threading.enumerate() if t.name == "vault-inject-refresh" and t.is_alive()]
    with pytest.raises(UsageError, match="closed"):
        secrets.get(f"{prefix}/c")


def test_settings_come_from_a_config_file_and_keywords(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """config= reads inject.toml ([vault] address, [watch] poll_interval); token= and
    poll_interval= override it, as CLI options do."""
    bao.kv_put(f"{prefix}/f", key="v1v1")
    config = tmp_path / "inject.toml"
    config.write_text(f'[vault]\naddress = "{bao.address}"\n[watch]\npoll_interval = "7s"\n')
    environ = {"HOME": "/nonexistent-home"}
    with Secrets(str(config), token=bao.token, environ=environ) as secrets:
        assert secrets.poll_interval_s == 7
        assert secrets.get(f"{prefix}/f", "key") == "v1v1"
    with Secrets(str(config), token=bao.token, poll_interval="250ms", environ=environ) as secrets:
        assert secrets.poll_interval_s == 0.25


def test_the_library_installs_no_log_handlers(bao: Bao, prefix: str) -> None:
    """Making and using a Secrets adds no handler to the vault_inject logger (the app owns logging)."""
    root = logging.getLogger("vault_inject")
    before = list(root.handlers)
    bao.kv_put(f"{prefix}/h", key=secret_value())
    with Secrets(environ=env_for(bao)) as secrets:
        secrets.get(f"{prefix}/h")
    assert root.handlers == before


def test_concurrent_gets_are_consistent_while_rotating(
    bao: Bao, prefix: str, logs: pytest.LogCaptureFixture
) -> None:
    """Many threads calling get() during rotations only ever see whole, written versions."""
    path = f"{prefix}/many"
    written = [{"a": secret_value(), "b": secret_value()}]
    bao.kv_put(path, **written[0])
    errors: list[BaseException] = []
    seen: list[dict[str, Any]] = []
    stop = threading.Event()
    with Secrets(environ=env_for(bao), poll_interval=0.2) as secrets:

        def reader() -> None:
            try:
                while not stop.is_set():
                    seen.append(secrets.get(path))
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=reader) for _ in range(8)]
        for thread in threads:
            thread.start()
        for _ in range(3):
            written.append({"a": secret_value(), "b": secret_value()})
            bao.kv_put(path, **written[-1])
            wait_for(lambda: secrets.get(path) == written[-1], timeout_s=5, what="the new version")
        stop.set()
        for thread in threads:
            thread.join(10)
    assert errors == []
    assert {json.dumps(d, sort_keys=True) for d in seen} <= {json.dumps(d, sort_keys=True) for d in written}


def _reads_of(audit_log: Path, api_path: str) -> int:
    """How many reads of ``api_path`` the server's audit log recorded (writes not counted)."""
    count = 0
    for line in audit_log.read_text().splitlines():
        entry = json.loads(line)
        request = entry.get("request", {})
        if entry.get("type") == "request" and request.get("path") == api_path:
            count += request.get("operation") == "read"
    return count


def test_gets_after_the_first_make_no_request(tmp_path: Path) -> None:
    """Concurrent first gets of a path make one read, a thousand later gets none (audit log count)."""
    with audited_server(tmp_path) as (server, audit_log):
        server.kv_put("secret/app/one", key=secret_value())
        with Secrets(environ=env_for(server), poll_interval="1h") as secrets:
            threads = [threading.Thread(target=secrets.get, args=("secret/app/one",)) for _ in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(10)
            assert _reads_of(audit_log, "secret/data/app/one") == 1
            for _ in range(1000):
                secrets.get("secret/app/one", "key")
            assert _reads_of(audit_log, "secret/data/app/one") == 1


def test_the_poll_makes_one_request_per_path_per_interval(tmp_path: Path) -> None:
    """Two watched paths are each read about once per interval, however often get() is called."""
    with audited_server(tmp_path) as (server, audit_log):
        for name in ("a", "b"):
            server.kv_put(f"secret/p/{name}", key=secret_value())
        with Secrets(environ=env_for(server), poll_interval=0.5) as secrets:
            secrets.get("secret/p/a")
            secrets.get("secret/p/b")
            wait_for(lambda: _reads_of(audit_log, "secret/data/p/a") >= 5, timeout_s=10, what="four polls")
            for _ in range(500):
                secrets.get("secret/p/a")
                secrets.get("secret/p/b")
            reads_a = _reads_of(audit_log, "secret/data/p/a")
            reads_b = _reads_of(audit_log, "secret/data/p/b")
    assert reads_a <= 8  # ~4 intervals (jittered up to 10% early) cannot hold more
    assert abs(reads_a - reads_b) <= 1


def test_the_runtime_example_runs_under_inject_dev() -> None:
    """`inject dev --secrets examples/dev-secrets.toml -- python3 examples/runtime_app.py` exits 0,
    having read the seed's secrets (fingerprints only) and skipped the absent database engine."""
    dev_secrets = (EXAMPLES / "dev-secrets.toml").read_text()
    values = {line.split(" = ", 1)[1].strip('"') for line in dev_secrets.splitlines() if " = " in line}
    result = run_inject(
        "dev", "--secrets", str(EXAMPLES / "dev-secrets.toml"), "--", sys.executable,
        str(EXAMPLES / "runtime_app.py"),
        env=clean_env(), cwd=EXAMPLES.parent,
    )  # fmt: skip
    record_output(result.stdout)
    assert result.returncode == 0, result.stderr
    assert "postgres: ['password', 'username'] password len=" in result.stdout
    assert "dynamic credentials skipped: " in result.stdout
    assert result.stdout.rstrip().endswith("closed: leases revoked")
    assert not [v for v in values if v in result.stdout + result.stderr]


def test_a_certificate_lease_is_reissued_before_it_expires(
    bao: Bao, pki_mount: str, logs: pytest.LogCaptureFixture
) -> None:
    """lease('pki/issue/web', common_name=..., ttl='6s') POSTs the parameters, gives the
    certificate with its expiry, and a new certificate reaches on_change before it ends."""
    started = time.time()
    with Secrets(environ=env_for(bao)) as secrets:
        cert = secrets.lease(f"{pki_mount}/issue/web", common_name="app.localhost", ttl="6s")
        first = cert.data
        forbid(first["private_key"])
        assert first["certificate"].startswith("-----BEGIN CERTIFICATE-----")
        assert started + 4 < cert.expires_at <= time.time() + 7
        renewed: list[dict[str, Any]] = []
        cert.on_change(renewed.append)
        wait_for(lambda: renewed, timeout_s=8, what="a re-issued certificate")
        forbid(renewed[0]["private_key"])
        assert renewed[0]["serial_number"] != first["serial_number"]
        assert time.time() < started + 6 + 1, "re-issued before the first one ended"
        assert cert.data["serial_number"] == renewed[0]["serial_number"]


def test_a_token_that_cannot_be_renewed_is_replaced_from_its_file(
    bao: Bao, prefix: str, tmp_path: Path, logs: pytest.LogCaptureFixture
) -> None:
    """With INJECT_TOKEN_FILE and a non-renewable 3s token, the library reads the file again
    before the token ends (as inject does), and later first reads use the new token."""
    bao.kv_put(f"{prefix}/after", key="later-value")
    short = forbid(
        bao.api("POST", "auth/token/create", json={"ttl": "3s", "renewable": False}).json()["auth"][
            "client_token"
        ]
    )
    token_file = tmp_path / "token"
    token_file.write_text(short + "\n")
    environ = {"VAULT_ADDR": bao.address, "INJECT_TOKEN_FILE": str(token_file), "HOME": "/nonexistent-home"}
    with Secrets(environ=environ) as secrets:
        token_file.write_text(forbid(bao.token_with("root", ttl="1h")) + "\n")
        wait_for(lambda: "logged in again" in logs.text, timeout_s=6, what="a new token from the file")
        wait_for(
            lambda: (
                bao.session.get(
                    f"{bao.address}/v1/auth/token/lookup-self", headers={"X-Vault-Token": short}, timeout=5
                ).status_code
                == 403
            ),
            timeout_s=6,
            what="the first token to expire",
        )
        assert secrets.get(f"{prefix}/after", "key") == "later-value"


def test_kv_v1_secrets_are_read_and_their_changes_seen(bao: Bao, logs: pytest.LogCaptureFixture) -> None:
    """On a KV v1 mount (no versions) get() reads the data and a changed value is told apart by content."""
    mount = f"kv1-{uuid.uuid4().hex[:8]}"
    bao.api("POST", f"sys/mounts/{mount}", json={"type": "kv", "options": {"version": "1"}})
    first, second = secret_value(), secret_value()
    bao.api("POST", f"{mount}/app", json={"key": first})
    seen: list[dict[str, Any]] = []
    with Secrets(environ=env_for(bao), poll_interval=POLL_S) as secrets:
        assert secrets.get(f"{mount}/app") == {"key": first}
        secrets.on_change(f"{mount}/app", seen.append)
        bao.api("POST", f"{mount}/app", json={"key": second})
        wait_for(lambda: secrets.get(f"{mount}/app", "key") == second, timeout_s=5, what="the new value")
        polls = logs.text.count(f"read {mount}/app")
        wait_for(
            lambda: logs.text.count(f"read {mount}/app") >= polls + 2, timeout_s=5, what="two more polls"
        )
    assert seen == [{"key": second}]


def test_an_outage_serves_the_cached_version_and_recovers(
    bao: Bao, prefix: str, logs: pytest.LogCaptureFixture
) -> None:
    """While the server refuses connections get() keeps answering from the cache and the failed
    polls are logged; once it is back, a rotation made meanwhile shows up."""
    path = f"{prefix}/outage"
    before = secret_value()
    bao.kv_put(path, key=before)
    proxy = FaultProxy(bao.address, body_marker=secret_value("body"))
    proxy.start()
    try:
        environ = {**env_for(bao), "VAULT_ADDR": proxy.address}
        with Secrets(environ=environ, poll_interval=POLL_S) as secrets:
            assert secrets.get(path, "key") == before
            proxy.refuse()
            wait_for(lambda: f"could not poll {path}" in logs.text, timeout_s=15, what="a failed poll")
            assert secrets.get(path, "key") == before
            after = secret_value()
            bao.kv_put(path, key=after)
            proxy.pass_through()
            wait_for(
                lambda: secrets.get(path, "key") == after, timeout_s=15, what="the rotation after the outage"
            )
    finally:
        proxy.stop()
