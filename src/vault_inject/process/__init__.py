"""Processes and signals: the child (spawn, forward, stop, reap), its controller, the
signal inbox, the change actions, the plain PID 1 path, and the child's output relayed
with secret values concealed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._face import lazy_names

if TYPE_CHECKING:
    from .actions import Action
    from .child import Commands
    from .controller import ChildController
    from .relay import OutputRelay
    from .signals import INBOX, STOP_SIGNALS, Signal

__all__ = [
    "INBOX",
    "STOP_SIGNALS",
    "Action",
    "ChildController",
    "Commands",
    "OutputRelay",
    "Signal",
]
__getattr__ = lazy_names(
    __name__,
    {
        "Action": "actions",
        "ChildController": "controller",
        "Commands": "child",
        "INBOX": "signals",
        "OutputRelay": "relay",
        "Signal": "signals",
        "STOP_SIGNALS": "signals",
    },
)
