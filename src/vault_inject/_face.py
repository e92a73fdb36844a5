"""How a package shows its public names without importing them: ``lazy_names``.

Each package's ``__init__`` names what other packages may use and from which of its
modules; a name is imported on first use (PEP 562 module ``__getattr__``), so importing a
package runs none of its modules, and so loads no Jinja, HTTP stack or CLI library.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_names(package: str, where: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: NAME is imported from its module
    (``where[NAME]``, relative to the package) on first use, then kept on the package."""

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
