"""What every start-up cache's tests check of its entry (``regexcache``, ``dataclasscache``):
both load through ``cachedir.KeptEntry``, so both must refuse the same files."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


def only_a_private_entry_loads(entry: Path, loaded: Callable[[], dict[Any, Any]]) -> None:
    """An entry of another owner, or one its group may write, loads nothing (what it holds
    would run inside inject); the same entry back as inject's own and 0600 loads again.
    ``loaded`` installs the cache and gives what it loaded. Needs root, for the chown."""
    os.chown(entry, 4242, 4242)
    assert loaded() == {}
    os.chown(entry, os.geteuid(), os.getegid())
    entry.chmod(0o620)
    assert loaded() == {}
    entry.chmod(0o600)
    assert loaded() != {}
