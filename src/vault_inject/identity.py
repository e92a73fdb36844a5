"""Who the child runs as: a value of its own, apart from ``model``, because the plain PID 1
path (``inject -- CMD`` with nothing to render) needs it and none of the server values. Pure."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Identity:
    """Who the child runs as (``--user``); -1 means unchanged."""

    uid: int = -1
    gid: int = -1
    name: str = ""
    home: str = ""
    groups: tuple[int, ...] = ()  # supplementary groups, looked up before any fork
