"""The only writer of destinations: safe directory-fd walks, temp files, atomic
writes with rollback; and reading inject's own input files.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._face import lazy_names

if TYPE_CHECKING:
    from .read import read_text
    from .write import Commit, FileWrite

__all__ = [
    "Commit",
    "FileWrite",
    "read_text",
]
__getattr__ = lazy_names(
    __name__,
    {
        "Commit": "write",
        "FileWrite": "write",
        "read_text": "read",
    },
)
