"""Modules the command line imports but never runs: loaded only on first use.

``import hvac`` (any of it: ``hvac.adapters`` is what inject uses) runs hvac's package
``__init__``, which imports ``hvac.api``: the classes of every auth method and secrets
engine, ~60 modules and ~7 ms of every start. inject speaks the HTTP API through hvac's
adapter and never touches them. The command line (``entry``) puts a finder in front of
the import system that gives ``hvac.api`` a lazy loader (``importlib.util.LazyLoader``):
the module object exists, as hvac expects, and its code runs on the first attribute
used, if ever.

The library (``from vault_inject import Secrets``) never installs it: it changes imports
for the whole process, and before Python 3.12 a lazy module first used by two threads at
once can fail. In the command line nothing uses ``hvac.api`` at all.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

LAZY = frozenset({"hvac.api"})


class LazyFinder:
    """A meta path finder: the spec the path finder gives, with a lazy loader, for LAZY."""

    @classmethod
    def find_spec(
        cls, name: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        """None (the other finders decide) for anything not in LAZY."""
        if name not in LAZY:
            return None
        import importlib.machinery  # only when hvac is imported: not on the plain PID 1 path
        import importlib.util

        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        if spec is not None and spec.loader is not None:
            spec.loader = importlib.util.LazyLoader(spec.loader)
        return spec


def install() -> None:
    """Put the finder first (once)."""
    if LazyFinder not in sys.meta_path:
        sys.meta_path.insert(0, LazyFinder)
