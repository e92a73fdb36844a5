"""The HTTP transport against a real OpenBao behind the fault proxy: wall-clock deadlines on
trickled answers (body, or the status line itself), capped response bodies, and redirects
(followed on the same origin with the token, refused elsewhere without sending it)."""

from __future__ import annotations

import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.fault_proxy import FaultProxy, Listener
from tests.e2e.helpers_e2e import error_line, write
from tests.support import Bao, inject_env, run_inject, secret_value, wait_for
from vault_inject.client.vault import ServerSettings, VaultClient
from vault_inject.errors import SecretError, UnreachableError
from vault_inject.model import KvRead


@pytest.fixture
def listener() -> Iterator[Listener]:
    """Another loopback server (a different port): where a hostile redirect points."""
    far = Listener()
    yield far
    far.stop()


def _kv_url(path: str) -> str:
    """The URL path of a KV v2 read of ``path`` (``mount/rest`` as a person types it)."""
    mount, _, rest = path.partition("/")
    return f"/v1/{mount}/data/{rest}"


def _render(tmp_path: Path, env: dict[str, str], path: str, *args: str) -> tuple[int, str, float]:
    """``inject render`` of ``path``'s ``v`` into a.txt: exit code, error line, seconds taken."""
    write(tmp_path / "a.j2", f"{{{{ secret('{path}').v }}}}")
    started = time.monotonic()
    result = run_inject("render", *args, "-t", "a.j2:a.txt", env=env, cwd=tmp_path, timeout_s=40)
    elapsed = time.monotonic() - started
    return result.returncode, (error_line(result) if result.returncode else ""), elapsed


def _helpers_gone() -> bool:
    return not any(t.name == "inject-request" for t in threading.enumerate())


# --- trickled answers ----------------------------------------------------------------------


@pytest.mark.parametrize("phase", ["body", "status"])
def test_trickled_answer_ends_render_near_retry_timeout(
    bao: Bao, prefix: str, tmp_path: Path, proxy: FaultProxy, phase: str
) -> None:
    """A server trickling a byte every 0.5 s (after the headers, or in the status line) cannot
    hold `inject render --retry-timeout 3s`: exit 5 soon after 3 s, saying it did not answer."""
    proxy.trickle(phase=phase)
    env = inject_env(bao, {"VAULT_ADDR": proxy.address})
    code, line, elapsed = _render(tmp_path, env, f"{prefix}/app", "--retry-timeout", "3s")
    assert code == 5, line
    assert "did not answer" in line
    assert "within 3s" in line
    assert "timed out" in line
    assert elapsed < 7.0, f"{elapsed:.1f}s for a 3s retry timeout"
    assert not (tmp_path / "a.txt").exists()


@pytest.mark.parametrize("phase", ["body", "status"])
def test_read_with_a_budget_gives_up_on_a_trickle(
    bao: Bao, prefix: str, proxy: FaultProxy, phase: str
) -> None:
    """A client read with budget_s=2 against a trickling server raises UnreachableError within
    about 3 s, and the abandoned request's helper thread ends (its socket was shut down)."""
    path = f"{prefix}/app"
    bao.kv_put(path, v=secret_value())
    client = VaultClient(ServerSettings(address=proxy.address), bao.token, retry_timeout_s=60)
    try:
        proxy.trickle(phase=phase)
        _gives_up_within(lambda: client.read(path, budget_s=2), limit_s=3.0)
        wait_for(_helpers_gone, timeout_s=2, what="the abandoned request's thread to end")
    finally:
        client.close()


@pytest.mark.parametrize("phase", ["body", "status"])
def test_fanned_out_reads_give_up_on_a_trickle_in_place(
    bao: Bao, prefix: str, proxy: FaultProxy, phase: str
) -> None:
    """read_many of 4 paths runs each read in place on a fan-out worker (no helper thread),
    bounded by the watchdog: against a trickling server it gives up within about the 2 s
    budget (an outage), and every worker has ended (its socket was shut down)."""
    paths = [f"{prefix}/fan{i}" for i in range(4)]
    for path in paths:
        bao.kv_put(path, v=secret_value())
    client = VaultClient(ServerSettings(address=proxy.address), bao.token, retry_timeout_s=60)
    try:
        reads = [KvRead.of(path) for path in paths]
        assert len(client.read_many(reads)) == 4  # the mount is known from here on
        proxy.trickle(phase=phase)
        _gives_up_within(lambda: client.read_many(reads, budget_s=2), limit_s=3.5)
        assert _helpers_gone()  # nothing ran on a helper thread
        wait_for(_readers_gone, timeout_s=2, what="the fan-out workers to end")
    finally:
        client.close()


def _gives_up_within(read: Callable[[], object], *, limit_s: float) -> None:
    """``read`` (a 2 s budget, the server trickling) raises UnreachableError saying it timed
    out, in less than ``limit_s`` seconds."""
    started = time.monotonic()
    with pytest.raises(UnreachableError, match=r"did not answer .* within 2s: timed out"):
        read()
    elapsed = time.monotonic() - started
    assert elapsed < limit_s, f"{elapsed:.1f}s for a 2s budget"


def _readers_gone() -> bool:
    return not any(t.name.startswith("inject-read") for t in threading.enumerate())


# --- oversized answers ---------------------------------------------------------------------


def test_oversized_answer_is_a_clear_error_at_startup(
    bao: Bao, prefix: str, tmp_path: Path, proxy: FaultProxy
) -> None:
    """A 200 with a 20 MiB JSON secret is refused (exit 4) naming the path and the 16 MiB limit,
    never rendered; the body is not quoted."""
    path = f"{prefix}/app"
    bao.kv_put(path, v=secret_value())
    proxy.oversized(match=_kv_url(path))
    code, line, _ = _render(tmp_path, inject_env(bao, {"VAULT_ADDR": proxy.address}), path)
    assert code == 4, line
    assert f"'{path}'" in line
    assert "16 MiB" in line
    assert "xxxx" not in line
    assert not (tmp_path / "a.txt").exists()


def test_oversized_chunked_answer_is_never_read_whole(bao: Bao, prefix: str, proxy: FaultProxy) -> None:
    """A chunked 20 MiB answer (no length declared) fails once 16 MiB were read: a SecretError
    naming the path, and the client's peak memory stays below the answer's size."""
    path = f"{prefix}/app"
    bao.kv_put(path, v=secret_value())
    client = VaultClient(ServerSettings(address=proxy.address), bao.token, retry_timeout_s=5)
    try:
        client.read(path)  # mount lookup done: the measured read is the oversized one
        proxy.oversized(chunked=True, match=_kv_url(path))
        tracemalloc.start()
        try:
            with pytest.raises(SecretError, match=f"the answer to '{path}' is larger than 16 MiB"):
                client.read(path)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 20 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB while reading a 20 MiB answer"
    finally:
        client.close()


# --- redirects -----------------------------------------------------------------------------


def test_redirect_to_another_port_is_refused_and_the_token_stays(
    bao: Bao, prefix: str, tmp_path: Path, proxy: FaultProxy, listener: Listener
) -> None:
    """A 307 to another port (another origin) ends in exit 5 naming only the target's origin;
    the other server never receives a request, so never the token."""
    path = f"{prefix}/app"
    bao.kv_put(path, v=secret_value())
    marker = secret_value("query")
    target = f"http://127.0.0.1:{listener.port}"
    proxy.redirect(f"{target}/v1/elsewhere?data={marker}", match=_kv_url(path))
    code, line, _ = _render(tmp_path, inject_env(bao, {"VAULT_ADDR": proxy.address}), path)
    assert code == 5, line
    assert f"redirected '{path}' to {target}, another server" in line
    assert marker not in line
    assert "elsewhere" not in line
    assert listener.seen == []
    assert not (tmp_path / "a.txt").exists()


def test_a_netrc_password_for_the_server_is_never_sent(
    bao: Bao, prefix: str, tmp_path: Path, listener: Listener
) -> None:
    """requests would send a ~/.netrc password for the server's host as Basic auth; inject
    reads no netrc (a token is Vault's credential), so the server never sees one."""
    home = tmp_path / "home"
    home.mkdir()
    (home / ".netrc").write_text("machine 127.0.0.1 login someone password netrc-secret\n")
    (home / ".netrc").chmod(0o600)
    env = inject_env(bao, {"VAULT_ADDR": f"http://127.0.0.1:{listener.port}", "HOME": str(home)})
    _render(tmp_path, env, f"{prefix}/app", "--retry-timeout", "0")
    assert listener.seen  # inject did talk to it (and got answers it could not use)
    assert not any(seen.had_basic_auth for seen in listener.seen)


def test_same_origin_redirect_is_followed_with_the_token(
    bao: Bao, prefix: str, tmp_path: Path, proxy: FaultProxy
) -> None:
    """A 307 to another path on the same server is followed, token included (the server
    answers the moved read), and the secret is rendered."""
    value = secret_value()
    bao.kv_put(f"{prefix}/app", v=value)
    proxy.redirect(_kv_url(f"{prefix}/app"), match=_kv_url(f"{prefix}/moved"))
    env = inject_env(bao, {"VAULT_ADDR": proxy.address})
    code, line, _ = _render(tmp_path, env, f"{prefix}/moved")
    assert code == 0, line
    assert proxy.hits == 1
    assert (tmp_path / "a.txt").read_text() == value


def test_a_redirect_from_the_first_listed_node_fails_over_to_the_next(
    bao: Bao, prefix: str, tmp_path: Path, proxy: FaultProxy, listener: Listener
) -> None:
    """INJECT_ADDRESSES=bad,good where bad redirects every request to another server: start-up
    fails over to good and renders (exit 0); the redirect target never gets a request."""
    path = f"{prefix}/app"
    value = secret_value()
    bao.kv_put(path, v=value)
    proxy.redirect(f"http://127.0.0.1:{listener.port}/v1/elsewhere")
    addresses = f"{proxy.address},{bao.address}"
    env = inject_env(bao, {"VAULT_ADDR": proxy.address, "INJECT_ADDRESSES": addresses})
    code, line, _ = _render(tmp_path, env, path)
    assert code == 0, line
    assert (tmp_path / "a.txt").read_text() == value
    assert listener.seen == []


def test_a_deeply_nested_answer_at_start_up_is_a_server_error(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """A server answering JSON nested 100,000 deep (the parser recurses per level): exit 4 with
    one line naming what inject asked, not "internal error: RecursionError"."""
    depth = 100_000
    nested = Listener(body=b'{"a":' * depth + b"1" + b"}" * depth)
    try:
        env = inject_env(bao, {"VAULT_ADDR": f"http://127.0.0.1:{nested.port}"})
        code, line, _ = _render(tmp_path, env, f"{prefix}/app", "--retry-timeout", "2s")
    finally:
        nested.stop()
    assert code == 4, line
    assert "nested too deeply" in line
    assert "RecursionError" not in line
    assert "internal error" not in line
