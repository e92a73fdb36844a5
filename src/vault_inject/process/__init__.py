"""Processes and signals: the child (spawn, forward, stop, reap), its controller, the
signal inbox, the change actions, and the plain PID 1 path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._face import lazy_names

if TYPE_CHECKING:
    from .actions import Action
    from .child import Commands
    from .controller import ChildController
    from .signals import INBOX, STOP_SIGNALS, Signal

__all__ = [
    "INBOX",
    "STOP_SIGNALS",
    "Action",
    "ChildController",
    "Commands",
    "Signal",
]
__getattr__ = lazy_names(
    __name__,
    {
        "Action": "actions",
        "ChildController": "controller",
        "Commands": "child",
        "INBOX": "signals",
        "Signal": "signals",
        "STOP_SIGNALS": "signals",
    },
)
