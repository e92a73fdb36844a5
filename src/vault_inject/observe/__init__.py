"""What an operator can see while inject runs: the health verdict (pure) and the
``--listen`` endpoint serving /healthz and /metrics (its request parsing and connection
bounds pure too: ``wire``, ``slots``); systemd's notify protocol (``sdnotify``, pure) and
its datagram (``notifysocket``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._face import lazy_names

if TYPE_CHECKING:
    from .health import Board, Expiry, Snapshot
    from .notifysocket import notifier_from
    from .sdnotify import Notifier
    from .server import ObserveServer

__all__ = [
    "Board",
    "Expiry",
    "Notifier",
    "ObserveServer",
    "Snapshot",
    "notifier_from",
]
__getattr__ = lazy_names(
    __name__,
    {
        "Board": "health",
        "Expiry": "health",
        "Notifier": "sdnotify",
        "notifier_from": "notifysocket",
        "ObserveServer": "server",
        "Snapshot": "health",
    },
)
