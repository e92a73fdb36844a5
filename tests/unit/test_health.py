"""The health verdict, the loop's counters, listen addresses, lease expiries and the metrics
built from a snapshot: pure, with the time passed in."""

from __future__ import annotations

from dataclasses import replace

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.unit.fakeclock import FakeClock
from tests.unit.loop_fakes import Server
from vault_inject.client import leases
from vault_inject.client.vault import Login
from vault_inject.config.settings import CliOptions, build_config, parse_listen, split_listen
from vault_inject.errors import PermissionDenied, SecretNotFound, UnreachableError, UsageError
from vault_inject.loop.lifecycle import Lifecycle
from vault_inject.loop.sources import PollDone
from vault_inject.loop.stats import Stats
from vault_inject.model import KvRead, PkiIssue, Secret
from vault_inject.observe.health import Board, Expiry, Snapshot, earliest_expiry_s, verdict
from vault_inject.observe.metrics import SnapshotCollector

HEALTHY = Snapshot(rendered=True, supervising=True, child_pid=7, poll_interval_s=10.0, last_poll_ok_at=0.0)


def test_a_rendered_running_fresh_inject_is_healthy() -> None:
    """First render done, child running, no outage, no failing output: healthy."""
    assert verdict(HEALTHY, now=5.0) == ""
    assert verdict(Snapshot(rendered=True, supervising=False), now=5.0) == ""


@pytest.mark.parametrize(
    ("snapshot", "reason"),
    [
        (Snapshot(), "first render pending"),
        (Snapshot(rendered=True, supervising=True, child_pid=0), "child not running"),
        (Snapshot(rendered=True, supervising=True, child_pid=7, stopping=True), "stopping"),
        (Snapshot(rendered=True, failing=("/app/a.yml",)), "last render failed for /app/a.yml"),
        (
            Snapshot(rendered=True, stale_since=1_700_000_600.0, stale_saved_at=1_700_000_000.0),
            "stale: serving last-known-good values from the state since 2023-11-14T22:23:20Z"
            " (saved 2023-11-14T22:13:20Z)",
        ),
    ],
    ids=["pending", "no-child", "stopping", "failing", "stale"],
)
def test_unhealthy_states_say_why(snapshot: Snapshot, reason: str) -> None:
    """Each unhealthy state has its own reason."""
    assert verdict(snapshot, now=5.0).startswith(reason)


def test_an_outage_is_unhealthy_only_past_one_poll_interval() -> None:
    """An outage of up to one poll interval is tolerated; beyond it the reason gives its length."""
    down = replace(HEALTHY, outage_since=100.0)
    assert verdict(down, now=110.0) == ""
    assert verdict(down, now=112.4) == "server unreachable for 12s"


def test_a_lease_near_its_end_without_renewal_is_unhealthy() -> None:
    """A lease past 95% of its TTL (renewals happen by 90%) is unhealthy; the margin is at most 60 s."""
    lease = Expiry("lease", "database/creds/ro", expires_at=1000.0, ttl_s=100.0)
    token = Expiry("token", "inject's token", expires_at=10_000.0, ttl_s=7200.0)
    snap = replace(HEALTHY, expiries=(lease, token))
    assert verdict(snap, now=994.0) == ""
    assert verdict(snap, now=996.0) == "lease database/creds/ro expires in 4s without renewal"
    only_token = replace(HEALTHY, expiries=(token,))
    assert verdict(only_token, now=9_939.0) == ""
    assert verdict(only_token, now=9_950.0) == "token inject's token expires in 50s without renewal"


def test_earliest_expiry_per_kind() -> None:
    """Seconds to the earliest expiry of each kind."""
    snap = Snapshot(
        expiries=(
            Expiry("lease", "a", 50.0, 100.0),
            Expiry("lease", "b", 30.0, 100.0),
            Expiry("certificate", "pki/issue/web", 80.0, 100.0),
        )
    )
    assert earliest_expiry_s(snap, now=10.0) == {"lease": 20.0, "certificate": 70.0}


def test_lease_plans_carry_their_expiry_through_renewal_and_postponing() -> None:
    """A plan knows when its lease ends: TTL after the read, the grant after a renewal, unchanged
    when only moved; a certificate's is its notAfter on the monotonic clock."""
    plan = leases.after_read(now=100.0, lease_id="L", ttl_s=60, renewable=True)
    assert plan is not None
    assert plan.expires_at == 160.0
    renewed = leases.after_renewal(plan, now=140.0, granted_ttl_s=60, renewable=True)
    assert renewed.expires_at == 200.0
    assert renewed.at_time(150.0).expires_at == 200.0
    cert = leases.for_certificate(now=100.0, wall_now=5_000.0, issued_at=4_900.0, expires_at=5_300.0)
    assert cert.expires_at == 400.0


def test_stats_count_reads_by_outcome_and_track_the_outage() -> None:
    """Reads are counted ok/denied/not_found/unreachable; the outage starts at the first failed
    poll and ends at the next good one."""
    clock = FakeClock(0.0)
    stats = Stats(clock=clock)
    good = Secret(path="secret/a", data={})
    stats.read(
        PollDone(
            fresh={KvRead("secret/a"): good},
            failed={KvRead("secret/b"): PermissionDenied("x"), KvRead("secret/c"): SecretNotFound("y")},
        )
    )
    clock.now = 5.0
    outage = PollDone(outage=UnreachableError("down"))
    stats.read(outage)
    stats.polled(outage)
    clock.now = 9.0
    stats.polled(outage)
    assert stats.outage_since == 5.0
    assert dict(stats.requests) == {"ok": 1, "denied": 1, "not_found": 1, "unreachable": 1}
    clock.now = 12.0
    stats.polled(PollDone())
    assert (stats.outage_since, stats.last_poll_ok_at) == (None, 12.0)


def test_stats_remember_failing_outputs_until_they_render_again() -> None:
    """An output that failed stays failing until a later re-render of it succeeds."""
    stats = Stats(clock=FakeClock(0.0))
    stats.applied(status="written", failed=["/a"], rendered=["/b"])
    assert (stats.failing, stats.render_failures, stats.renders) == ({"/a"}, 1, 2)
    stats.applied(status="written", failed=[], rendered=["/a"])
    assert stats.failing == set()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9102", ("127.0.0.1", 9102)),
        ("[::1]:9102", ("::1", 9102)),
        ("0.0.0.0:9102", ("0.0.0.0", 9102)),  # noqa: S104 (every interface, written out)
        ("[::]:9102", ("::", 9102)),
        (":9102", ("127.0.0.1", 9102)),
        ("9102", ("127.0.0.1", 9102)),
    ],
)
def test_listen_addresses(text: str, expected: tuple[str, int]) -> None:
    """HOST:PORT and [IPv6]:PORT are taken as written; a port alone (9102, :9102) is loopback,
    so every interface is only ever listened on when the address says so."""
    assert split_listen(text) == expected


@pytest.mark.parametrize(
    "text", ["localhost", "127.0.0.1:0", "127.0.0.1:70000", "a b:1", "h:x", "127.0.0.1:", ""]
)
def test_bad_listen_addresses_show_the_expected_form(text: str) -> None:
    """Anything but HOST:PORT or PORT with a port in 1..65535 is a usage error that shows the form."""
    with pytest.raises(UsageError, match="is not HOST:PORT"):
        parse_listen(text, "option --listen")


def test_a_failed_write_is_unhealthy_until_a_write_of_it_succeeds() -> None:
    """A write that failed keeps /healthz failing through retries that fail again and through
    other outputs' successes; only an attempt that includes it and writes (or finds nothing to
    write) clears it."""
    stats = Stats(clock=FakeClock(0.0))

    def reason() -> str:
        return verdict(stats.snapshot(None, 10.0, ()), now=0.0)

    stats.applied(status="write_failed", failed=[], rendered=["/a"], outputs=["/a"])
    assert reason() == "last write failed for /a (files left as they were; retrying)"
    stats.applied(status="write_failed", failed=[], rendered=["/a"], outputs=["/a"])
    stats.applied(status="written", failed=[], rendered=["/b"], outputs=["/b"])
    assert reason().startswith("last write failed for /a")
    stats.applied(status="written", failed=[], rendered=["/a"], outputs=["/a"])
    assert reason() == ""
    stats.applied(status="write_failed", failed=[], rendered=["/a"], outputs=["/a"])
    stats.applied(status="unchanged", failed=[], rendered=["/a"], outputs=["/a"])
    assert reason() == ""


def test_metrics_come_from_the_snapshot_with_fixed_labels_only() -> None:
    """The collector turns a snapshot into counters and gauges; labels are outcomes, kinds and
    signal names, never paths."""
    snap = replace(
        HEALTHY,
        renders=3,
        restarts=1,
        signals={"SIGHUP": 2},
        requests={"ok": 5, "unreachable": 1},
        outage_since=20.0,
        expiries=(Expiry("lease", "database/creds/ro", 90.0, 100.0),),
    )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(Board(snap), clock=lambda: 30.0, usage=lambda pid: (2048.0, 1.5)))
    text = generate_latest(registry).decode()
    found = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert found[("inject_renders_total", ())] == 3
    assert found[("inject_child_restarts_total", ())] == 1
    assert found[("inject_child_signals_total", (("signal", "SIGHUP"),))] == 2
    assert found[("inject_server_requests_total", (("outcome", "ok"),))] == 5
    assert found[("inject_outage_seconds", ())] == 10
    assert found[("inject_expiry_seconds", (("kind", "lease"),))] == 60
    assert found[("inject_child_resident_memory_bytes", ())] == 2048
    assert found[("inject_child_cpu_seconds_total", ())] == 1.5
    assert found[("inject_healthy", ())] == 1
    assert "database/creds" not in text


def test_lifecycle_reports_lease_certificate_and_token_expiries() -> None:
    """The lifecycle says when each lease, certificate (by role path) and its token end."""
    clock = FakeClock(0.0)
    clock.now = 100.0
    life = Lifecycle(
        Server(),  # type: ignore[arg-type]
        authenticator=None,
        grant=Login(token="t", ttl_s=3600, renewable=True),
        on_new_token=lambda token: None,
        clock=clock,
        wall_clock=lambda: 5_000.0,
    )
    lease = Secret(path="database/creds/ro", data={}, lease_id="L1", lease_duration_s=60, renewable=True)
    cert = Secret(path="pki/issue/web", data={}, issued_at=4_900.0, expires_at=5_300.0)
    life.track({KvRead("database/creds/ro"): lease, PkiIssue("pki/issue/web", (("cn", "a"),)): cert})
    assert sorted(life.expiries(), key=lambda e: e.kind) == [
        Expiry("certificate", "pki/issue/web", 400.0, 400.0),
        Expiry("lease", "database/creds/ro", 160.0, 60.0),
        Expiry("token", "inject's token", 3700.0, 3600.0),
    ]


def test_observe_listen_from_file_environment_and_command_line() -> None:
    """[observe] listen, INJECT_LISTEN and --listen set the address, in that rising order; off by default."""

    def listen(data: dict[str, object], environ: dict[str, str], cli: dict[str, str]) -> str:
        config = build_config(CliOptions(values=cli), environ, data, config_path="inject.toml", cwd="/srv")
        return config.listen

    file_data: dict[str, object] = {"observe": {"listen": "127.0.0.1:9102"}}
    assert listen({}, {}, {}) == ""
    assert listen(file_data, {}, {}) == "127.0.0.1:9102"
    assert listen(file_data, {"INJECT_LISTEN": ":9200"}, {}) == ":9200"
    assert listen(file_data, {"INJECT_LISTEN": ":9200"}, {"listen": "[::1]:9300"}) == "[::1]:9300"
    with pytest.raises(UsageError, match=r"unknown key 'observe\.port'"):
        listen({"observe": {"port": 9102}}, {}, {})
    assert listen({"observe": {"listen": "9102"}}, {}, {}) == "9102"  # a port alone: loopback
    with pytest.raises(UsageError, match=r"\[observe\] listen: 'localhost' is not HOST:PORT"):
        listen({"observe": {"listen": "localhost"}}, {}, {})
