"""The command line: the console script, click's commands, the plain-argv fast path,
the composition root (``app``) and ``inject dev`` with its embedded server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._face import lazy_names

if TYPE_CHECKING:
    from .entry import main

__all__ = [
    "main",
]
__getattr__ = lazy_names(
    __name__,
    {
        "main": "entry",
    },
)
