"""What an operator can see while inject runs: the health verdict (pure) and the
``--listen`` endpoint serving /healthz and /metrics (its request parsing and connection
bounds pure too: ``wire``, ``slots``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._face import lazy_names

if TYPE_CHECKING:
    from .health import Board, Expiry, Snapshot
    from .server import ObserveServer

__all__ = [
    "Board",
    "Expiry",
    "ObserveServer",
    "Snapshot",
]
__getattr__ = lazy_names(
    __name__,
    {
        "Board": "health",
        "Expiry": "health",
        "ObserveServer": "server",
        "Snapshot": "health",
    },
)
