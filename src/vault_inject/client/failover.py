"""Which address of an HA cluster to talk to (``INJECT_ADDRESSES``, ``--address`` given more
than once, ``[vault] addresses``). Pure decisions; thread-safe, as a client and its clones
(poller, renewer) share one.

* Start with the first address.
* Sticky: the current address stays current until a request to it fails in a way that says
  "another node may answer" (the adapter decides which: connection refused or reset,
  timed out, 5xx, 429/473 standby, 503 sealed); then the next address in the list (wrapping
  around) becomes current and stays so. A healthy first address is not taken back once
  another is current, so inject never flaps between nodes.
* One failover is made (and logged) once: a request that failed on an address that is no
  longer current does not move the cursor again; it simply tries the current one. While
  no address answers at all, the moves round the list are logged at debug only: one
  warning line for the failover, then the outage is the caller's to report.
* A redirect from the current address to another address in the list (a standby naming the
  active node) makes that one current: it is a hint, from a configured node, to a
  configured node, so the token goes nowhere it was not meant to.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

log = logging.getLogger(__name__)


class Failover:
    """The address list and which one is current."""

    def __init__(self, addresses: Sequence[str]) -> None:
        if not addresses:
            raise ValueError("an address list needs at least one address")
        self.addresses = tuple(addresses)
        self._current = 0
        self._quiet = False  # moved, and the new current has not answered yet
        self._lock = threading.Lock()

    @property
    def current(self) -> int:
        """The index of the address to use now."""
        with self._lock:
            return self._current

    def address(self, index: int) -> str:
        """The address at ``index``."""
        return self.addresses[index]

    def failed(self, index: int, reason: str) -> int:
        """A request to address ``index`` failed for ``reason``: when it is still current, the
        next address becomes current (logged once). The index now current."""
        with self._lock:
            if index == self._current and len(self.addresses) > 1:
                self._move(index, (index + 1) % len(self.addresses), reason)
            return self._current

    def answered(self, index: int) -> None:
        """Address ``index`` answered: a later failover from it is news again."""
        if self._quiet:
            with self._lock:
                if index == self._current:
                    self._quiet = False

    def redirected(self, index: int, target: int) -> None:
        """Address ``index`` redirected to address ``target`` of the list: use that one."""
        with self._lock:
            if index == self._current and target != index:
                self._move(index, target, "it redirected there")

    def _move(self, old: int, new: int, reason: str) -> None:
        # one line per failover, naming both addresses (never a token: none is in them)
        level = logging.DEBUG if self._quiet else logging.WARNING
        self._current, self._quiet = new, True
        log.log(level, "failing over from %s to %s: %s", self.addresses[old], self.addresses[new], reason)
