"""The ``--listen`` endpoint's pure parts: the connection table (how many, how long, who is
pushed out), the request head parser and answers, and the metrics cache, with the time
passed in (``FakeClock``)."""

from __future__ import annotations

import pytest

from tests.unit.fakeclock import FakeClock
from vault_inject.observe.metrics import MetricsCache
from vault_inject.observe.slots import MAX_CONNECTIONS, Slots, connection_limit
from vault_inject.observe.wire import MAX_HEAD, Refused, Request, answer, read_head, refusal

# --- slots -----------------------------------------------------------------------------------


def test_a_full_table_pushes_out_the_oldest_connection_still_waiting_for_its_request() -> None:
    """With every slot taken, a new connection gets in and the oldest idle one is closed; one
    being answered is never pushed out."""
    slots: Slots[int] = Slots(limit=3, timeout_s=2.0)
    assert [slots.admit(fd, now=0.0) for fd in (10, 11, 12)] == [None, None, None]
    slots.answering(10)
    assert slots.admit(13, now=0.1) == 11
    assert slots.admit(14, now=0.2) == 12
    assert len(slots) == 3


def test_a_table_of_connections_all_being_answered_refuses_the_new_one() -> None:
    """When every open connection is being answered, the new one is the one closed."""
    slots: Slots[int] = Slots(limit=2, timeout_s=2.0)
    for fd in (10, 11):
        slots.admit(fd, now=0.0)
        slots.answering(fd)
    assert slots.admit(12, now=0.0) == 12
    assert len(slots) == 2


def test_a_thousand_idle_connections_never_hold_more_than_the_limit() -> None:
    """An attacker's flood of idle connections: the table never grows past the limit, and a
    probe that arrives last is in it."""
    slots: Slots[int] = Slots(limit=MAX_CONNECTIONS, timeout_s=2.0)
    for fd in range(1000):
        slots.admit(fd, now=fd / 1000)
        assert len(slots) <= MAX_CONNECTIONS
    assert slots.admit(5000, now=1.0) is not None
    assert 5000 not in slots.overdue(now=2.9)
    assert 5000 in slots.overdue(now=3.0)


def test_every_connection_has_a_deadline_from_its_accept() -> None:
    """A connection is overdue ``timeout_s`` after its accept, whether it trickles its request
    or reads its answer slowly; the next deadline is the oldest one's."""
    clock = FakeClock(100.0)
    slots: Slots[str] = Slots(limit=8, timeout_s=2.0)
    slots.admit("slow", clock())
    clock.sleep(1.5)
    slots.admit("late", clock())
    slots.answering("late")
    assert slots.next_deadline() == 102.0
    clock.sleep(0.5)
    assert slots.overdue(clock()) == ["slow"]
    slots.drop("slow")
    assert slots.next_deadline() == 103.5
    clock.sleep(1.5)
    assert slots.overdue(clock()) == ["late"]
    slots.drop("late")
    assert slots.next_deadline() is None


@pytest.mark.parametrize(("nofile", "limit"), [(1024, 32), (20000, 32), (256, 16), (64, 4), (8, 1)])
def test_the_connection_limit_leaves_most_descriptors_to_the_loop(nofile: int, limit: int) -> None:
    """At most a sixteenth of the descriptor limit (and 32) goes to connections; at least one."""
    assert connection_limit(nofile) == limit


# --- wire ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", Request("GET", "/healthz")),
        (b"HEAD /metrics?x=1 HTTP/1.0\r\n\r\n", Request("HEAD", "/metrics")),
        (b"GET /healthz HTTP/1.1\n\n", Request("GET", "/healthz")),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\n", None),
        (b"GET /heal", None),
        (b"", None),
    ],
    ids=["get", "head-query", "bare-lf", "half-sent", "half-line", "nothing"],
)
def test_request_heads(data: bytes, expected: Request | None) -> None:
    """A complete head gives method and path (query dropped); an incomplete one waits."""
    assert read_head(data) == expected


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"POST /healthz HTTP/1.1\r\n\r\n", 405),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),
        (b"GET http://x/ HTTP/1.1\r\n\r\n", 400),
        (b"GET /\xff HTTP/1.1\r\n\r\n", 400),
        (b"GET / SPDY/3\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\n" + b"X: " + b"a" * MAX_HEAD, 431),
        (b"GET /healthz HTTP/1.1\r\n" + b"X: " + b"a" * MAX_HEAD + b"\r\n\r\n", 431),
    ],
    ids=["post", "tls-hello", "absolute-uri", "not-ascii", "not-http", "endless-head", "huge-head"],
)
def test_bad_requests_are_refused_with_a_code_never_an_exception(data: bytes, code: int) -> None:
    """Whatever bytes arrive, the parser answers with a refusal code; nothing raises."""
    found = read_head(data)
    assert isinstance(found, Refused)
    assert found.code == code
    assert refusal(found).startswith(f"HTTP/1.1 {code} ".encode())


def test_answers_close_the_connection_and_name_no_python() -> None:
    """Every answer says Connection: close and Server: inject (no version); HEAD has no body."""
    full = answer(200, "application/json", b'{"status": "ok"}')
    head, _, body = full.partition(b"\r\n\r\n")
    assert body == b'{"status": "ok"}'
    assert b"Server: inject\r\n" in head
    assert b"python" not in full.lower()
    assert b"Connection: close" in head
    assert b"Content-Length: 16" in head
    assert answer(200, "application/json", b'{"status": "ok"}', head_only=True) == head + b"\r\n\r\n"


# --- metrics cache ---------------------------------------------------------------------------


def test_metrics_are_built_at_most_once_per_max_age() -> None:
    """A flood of scrapes within a second is answered from one build; the next second builds again."""
    clock = FakeClock(0.0)
    builds: list[float] = []

    def build() -> bytes:
        builds.append(clock())
        return f"built {len(builds)}".encode()

    cache = MetricsCache(build, clock=clock, max_age_s=1.0)
    bodies = set()
    for _ in range(1000):
        bodies.add(cache.body())
        clock.sleep(0.0005)
    assert bodies == {b"built 1"}
    clock.sleep(0.6)
    assert cache.body() == b"built 2"
    assert builds == [0.0, pytest.approx(1.1)]
