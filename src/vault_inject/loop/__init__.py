"""The long-running loop: one queue of events, the supervisor that decides, and the
workers that poll, renew, re-render and write.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._face import lazy_names

if TYPE_CHECKING:
    from .sources import FileWatcher
    from .stale import StartedStale

__all__ = [
    "FileWatcher",
    "StartedStale",
]
__getattr__ = lazy_names(
    __name__,
    {
        "FileWatcher": "sources",
        "StartedStale": "stale",
    },
)
