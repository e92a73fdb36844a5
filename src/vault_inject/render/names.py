"""Which names a template writes literally, and how messages show a name.

A key, path, variable or attribute name that a template *computes* can be a secret value
turned into something no mask recognises (``s[pw|upper]``, ``secret(pw|lower)``,
``pw|b64encode``): the redaction of logs only knows values verbatim. So a message quotes a
name only when it is written literally in the template's source (a string or number
constant, or an attribute name: ``s['nokey']``, ``s.nokey``, ``secret('secret/app')``,
``{% set p = 'secret/app' %}``); any other name is said to be computed, and nothing of it
is shown. Pure: the literals come from the parse tree, once per template at compile time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

import jinja2
import jinja2.nodes
from jinja2.utils import missing, object_type_repr

from ..model import COMPUTED_PATH

COMPUTED = "(computed in the template)"

Names = frozenset[str | int]

_CURRENT: ContextVar[Names] = ContextVar("inject_template_names", default=frozenset())


def literal_names(tree: jinja2.nodes.Template) -> tuple[str | int, ...]:
    """Every string and integer constant and every attribute name in a template's source
    (sorted: what the compile cache stores)."""
    found: set[str | int] = set()
    for const in tree.find_all(jinja2.nodes.Const):
        found.update(_constants(const.value))
    for node in tree.find_all(jinja2.nodes.Getattr):
        found.add(node.attr)
    return tuple(sorted(found, key=lambda name: (isinstance(name, int), str(name))))


def _constants(value: Any) -> Iterator[str | int]:
    """The names in a constant; Jinja's compiler folds a list of constants into one."""
    if is_literal_type(value):
        yield value
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _constants(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _constants(key)
            yield from _constants(item)


def is_literal_type(value: Any) -> bool:
    """A constant that can name something: a string or an integer (not a bool)."""
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def are_names(value: Any) -> bool:
    """True for what ``literal_names`` returns (to check a compile cache entry)."""
    return isinstance(value, tuple) and all(is_literal_type(name) for name in value)


def is_literal(value: Any, names: Names) -> bool:
    """True when ``value`` is written literally in the template (a name it may show)."""
    return is_literal_type(value) and value in names


def shown(value: Any, names: Names) -> str:
    """``'value'`` quoted when the template writes it literally; else that it was computed."""
    return f"'{value}'" if is_literal(value, names) else COMPUTED


def shown_path(path: Any, names: Names) -> str:
    """A path as ``shown``, or ``(a path computed in the template)``."""
    return f"'{path}'" if is_literal(path, names) else COMPUTED_PATH


@contextlib.contextmanager
def rendering(names: Names) -> Iterator[None]:
    """While one template renders: its literal names, for the messages of undefined values."""
    token = _CURRENT.set(names)
    try:
        yield
    finally:
        _CURRENT.reset(token)


class NamedUndefined(jinja2.StrictUndefined):
    """StrictUndefined whose message names an attribute or key only when the template
    writes it literally: ``'dict object' has no attribute (computed in the template)``."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        name, obj = self._undefined_name, self._undefined_obj
        if obj is missing or name is None or is_literal(name, _CURRENT.get()):
            return str(super()._undefined_message)  # a variable name is always in the source
        what = repr(object_type_repr(obj))
        if self._undefined_hint:  # the sandbox's "access to attribute ... is unsafe"
            return f"access to an attribute {COMPUTED} of {what} is unsafe"
        return f"{what} has no attribute or key {COMPUTED}"
