"""The library: ``Secrets`` for Python services that fetch secrets themselves, its
cache, background refresher and token keeper.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._face import lazy_names

if TYPE_CHECKING:
    from .cache import Lease
    from .library import Secrets

__all__ = [
    "Lease",
    "Secrets",
]
__getattr__ = lazy_names(
    __name__,
    {
        "Lease": "cache",
        "Secrets": "library",
    },
)
