"""The child's stdout and stderr through inject, with secret values concealed
(``[child] mask_output``).

Two pipes live as long as inject's run: every child (a restarted one too) gets their write
ends as its fds 1 and 2, and one reader thread per pipe ``os.read``s whatever the child
wrote, passes it through a ``Concealer`` (the values the log redaction knows: every secret
value read and every token) and writes the result to inject's own fd 1 or 2. Order within
each stream is kept; between the two streams it is not (as with any two pipes).

The reader threads block every signal inject handles, so the kernel delivers them to the
main thread (which waits on the signal inbox): a signal arriving while a reader sits in
``read`` is not held until the main thread's next wake-up. Spawning, forwarding, stopping
and reaping the child are unchanged: the pipes are only its output.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import threading
from collections.abc import Callable, Sequence

from ..log import secret_values
from .concealer import Concealer

log = logging.getLogger(__name__)

READ_BYTES = 65_536
DRAIN_S = 2.0  # at exit, how long what the child left in the pipes may take to be written


class OutputRelay:
    """The pipes and their readers; ``child_fds`` are the child's stdout and stderr."""

    def __init__(
        self,
        values: Callable[[], Sequence[str]] = secret_values,
        targets: tuple[int, int] = (1, 2),
    ) -> None:
        self._values = values
        self._threads: list[threading.Thread] = []
        self._write_ends: list[int] = []
        for target in targets:
            read_end, write_end = os.pipe2(os.O_CLOEXEC)  # the child gets a dup2, inject's stay private
            self._write_ends.append(write_end)
            self._threads.append(
                threading.Thread(
                    target=self._relay, args=(read_end, target), name=f"inject-output-{target}", daemon=True
                )
            )
        self.child_fds = (self._write_ends[0], self._write_ends[1])

    def start(self) -> OutputRelay:
        """Start the readers (with every signal blocked in them, see the module's doc)."""
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        try:
            for thread in self._threads:
                thread.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        return self

    def close(self, timeout_s: float = DRAIN_S) -> None:
        """The child is gone: close inject's write ends and let the readers write what is
        left (the held bytes at the end of each stream), waiting at most ``timeout_s``."""
        for fd in self._write_ends:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._write_ends = []
        for thread in self._threads:
            if thread.ident is not None:
                thread.join(timeout_s)

    def _relay(self, read_end: int, target: int) -> None:
        values = self._values()
        concealer = Concealer(values)
        try:
            while True:
                try:
                    chunk = os.read(read_end, READ_BYTES)
                except InterruptedError:  # pragma: no cover - PEP 475 retries; kept for clarity
                    continue
                if not chunk:
                    _write_all(target, concealer.finish())
                    return
                now = self._values()
                if now is not values:  # the registry hands out a new tuple on each change
                    values = now
                    concealer.use(values)
                _write_all(target, concealer.feed(chunk))
        except OSError as exc:  # inject's own stdout or stderr is gone: the child sees a closed pipe
            log.debug("child output to fd %d stopped: %s", target, exc)
        finally:
            os.close(read_end)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:  # inject's stdout was left non-blocking: wait until it drains
            select.select([], [fd], [])
