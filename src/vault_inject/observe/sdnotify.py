"""systemd's notify protocol (sd_notify(3)), pure: where to send (``NOTIFY_SOCKET``), how
often to pet the watchdog (half of ``WATCHDOG_USEC``, when ``WATCHDOG_PID`` is unset or is
inject's pid), and the datagrams (``READY=1``, ``RELOADING=1`` with ``MONOTONIC_USEC``,
``STOPPING=1``, ``WATCHDOG=1``, ``STATUS=``). The one socket send is ``notifysocket``.

The watchdog beat is sent from the supervisor's loop turn, not from a thread of its own:
a loop that is stuck stops sending, and systemd restarts the service.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

WATCHDOG_FRACTION = 0.5  # sd_watchdog_enabled(3): send at half the interval


@dataclass(frozen=True)
class NotifyTarget:
    """Where the datagrams go and how often the watchdog wants one (None: no watchdog)."""

    address: str | bytes  # a path, or b"\\0name" for an abstract socket
    watchdog_s: float | None = None


def socket_address(value: str) -> str | bytes | None:
    """The AF_UNIX address of a ``NOTIFY_SOCKET`` value: a path, or ``@name`` for the
    abstract namespace (``\\0name``); None for what inject cannot send to (``vsock:``)."""
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return b"\0" + value[1:].encode()
    return None


def watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """Seconds between two ``WATCHDOG=1``: half of ``WATCHDOG_USEC``; None without a
    watchdog, with a malformed value, or when ``WATCHDOG_PID`` names another process."""
    usec = environ.get("WATCHDOG_USEC", "")
    owner = environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) <= 0:
        return None
    if owner and owner != str(pid):
        return None
    return int(usec) / 1_000_000 * WATCHDOG_FRACTION


def notify_target(environ: Mapping[str, str], pid: int) -> NotifyTarget | None:
    """The target systemd gave inject (``environ`` holds inject's environment), or None."""
    address = socket_address(environ.get("NOTIFY_SOCKET", ""))
    if address is None:
        return None
    return NotifyTarget(address, watchdog_interval(environ, pid))


def message(*fields: tuple[str, str]) -> bytes:
    """One datagram: ``KEY=value`` lines (a value is one line: newlines become spaces)."""
    return "\n".join(f"{key}={' '.join(value.splitlines())}" for key, value in fields).encode()


def _status(status: str) -> tuple[tuple[str, str], ...]:
    return (("STATUS", status),) if status else ()


class Notifier:
    """What inject tells systemd, sent through ``send`` (one datagram per call).

    ``stopping`` is said once; ``beat(now)`` sends ``WATCHDOG=1`` when one is due
    (``next_at`` says when, in the caller's clock). ``monotonic_us`` is CLOCK_MONOTONIC in
    microseconds, which systemd (253+) wants with ``RELOADING=1``.
    """

    def __init__(
        self,
        target: NotifyTarget,
        send: Callable[[bytes], None],
        monotonic_us: Callable[[], int],
    ) -> None:
        self.target = target
        self._send = send
        self._monotonic_us = monotonic_us
        self._last_beat: float | None = None
        self._stopping = False

    def ready(self, status: str = "") -> None:
        """Started (first render done, child started) or a reload is over."""
        if not self._stopping:
            self._send(message(("READY", "1"), *_status(status)))

    def reloading(self, status: str = "") -> None:
        """A re-render begins; ``ready`` ends it."""
        if not self._stopping:
            now_us = str(self._monotonic_us())
            self._send(message(("RELOADING", "1"), ("MONOTONIC_USEC", now_us), *_status(status)))

    def stopping(self, status: str = "") -> None:
        """inject is shutting down (once)."""
        if not self._stopping:
            self._stopping = True
            self._send(message(("STOPPING", "1"), *_status(status)))

    def next_at(self) -> float | None:
        """When the next ``WATCHDOG=1`` is due (None without a watchdog)."""
        interval = self.target.watchdog_s
        if interval is None:
            return None
        return 0.0 if self._last_beat is None else self._last_beat + interval  # 0.0: due now

    def beat(self, now: float) -> None:
        """Send ``WATCHDOG=1`` if it is due at ``now`` (the first one at once)."""
        interval = self.target.watchdog_s
        if interval is None:
            return
        if self._last_beat is None or now >= self._last_beat + interval:
            self._last_beat = now
            self._send(b"WATCHDOG=1")
