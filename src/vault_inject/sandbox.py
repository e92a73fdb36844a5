"""The Jinja sandbox, with limits on what a hostile template can make.

Jinja's ImmutableSandboxedEnvironment stops attribute tricks (``__class__``,
``__subclasses__``, ``__globals__``) and mutation, and caps ``range``. It does not
stop a template from making enormous values: ``'a' * 10**10``, ``10 ** 10**8``,
``'%999999999d' % 1``, ``'x'.center(10**9)``. These checks refuse such operations
before they run (and intercepting ``*``, ``**`` and ``%`` also stops Jinja folding
them at compile time). A final cap on the rendered text catches slower growth.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_VALUE_CHARS = 1_000_000  # one string or sequence made by one operation
MAX_INT_BITS = 100_000  # about 30,000 decimal digits
MAX_OUTPUT_CHARS = 16 * 1024 * 1024  # one rendered template
_BIG_NUMBER = re.compile(r"\d{7,}")  # a width or precision of a million or more
_SIZED_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})
_SEQUENCES = (str, bytes, list, tuple)


class Sandbox(ImmutableSandboxedEnvironment):
    """ImmutableSandboxedEnvironment that also refuses operations producing huge values."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        """Check ``*``, ``**`` and ``%`` before running them."""
        if operator == "*":
            _check_product(left, right)
        elif operator == "**":
            _check_power(left, right)
        elif operator == "%" and isinstance(left, str):
            _check_format_spec(left, right)
        return super().call_binop(context, operator, left, right)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """``'...'.format`` / ``format_map``: refuse huge widths before Jinja's safe formatter runs."""
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        _check_format_spec(str(value.__self__), ())
        return wrapped

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        """Check str methods and filters that take a size before calling them."""
        _check_call(__obj, args, kwargs)
        return super().call(__context, __obj, *args, **kwargs)

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        for name in ("center", "indent", "wordwrap", "truncate"):
            self.filters[name] = _sized_filter(name, self.filters[name])
        self.filters["format"] = _format_filter(self.filters["format"])
        self.filters["replace"] = _replace_filter(self.filters["replace"])


def _sized_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    def checked(*args: Any, **kwargs: Any) -> Any:
        _check_sizes(name, args[1:], kwargs)
        return func(*args, **kwargs)

    return checked


def _format_filter(func: Callable[..., Any]) -> Callable[..., Any]:
    def checked(value: Any, *args: Any, **kwargs: Any) -> Any:
        _check_format_spec(str(value), args)
        return func(value, *args, **kwargs)

    return checked


def _replace_filter(func: Callable[..., Any]) -> Callable[..., Any]:
    def checked(eval_ctx: Any, s: Any, old: Any, new: Any, count: Any = None) -> Any:
        _check_replace(str(s), str(old), str(new))
        return func(eval_ctx, s, old, new, count)

    for attribute in ("jinja_pass_arg",):  # keep Jinja's "pass the eval context" marker
        if hasattr(func, attribute):
            setattr(checked, attribute, getattr(func, attribute))
    return checked


def _too_big(what: str) -> SecurityError:
    return SecurityError(f"{what} would be too large")


def _check_product(left: Any, right: Any) -> None:
    for seq, count in ((left, right), (right, left)):
        if isinstance(seq, _SEQUENCES) and isinstance(count, int) and len(seq) * count > MAX_VALUE_CHARS:
            raise _too_big("repetition")
    if (
        isinstance(left, int)
        and isinstance(right, int)
        and left.bit_length() + right.bit_length() > MAX_INT_BITS
    ):
        raise _too_big("product")


def _check_power(base: Any, exponent: Any) -> None:
    if not (isinstance(base, int) and isinstance(exponent, int)) or abs(base) <= 1 or exponent <= 0:
        return
    if exponent * math.log2(abs(base)) > MAX_INT_BITS:
        raise _too_big("power")


def _check_format_spec(template: str, args: Any) -> None:
    if _BIG_NUMBER.search(template):
        raise _too_big("formatted text")
    values = args if isinstance(args, tuple) else (args,)
    if "*" in template and any(isinstance(v, int) and abs(v) > MAX_VALUE_CHARS for v in values):
        raise _too_big("formatted text")


def _check_call(obj: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    name = getattr(obj, "__name__", "")
    owner = getattr(obj, "__self__", None)
    if not isinstance(owner, str):
        return
    if name in _SIZED_METHODS:
        _check_sizes(name, args, kwargs)
    elif name == "replace" and len(args) >= 2:
        _check_replace(owner, str(args[0]), str(args[1]))


def _check_replace(text: str, old: str, new: str) -> None:
    occurrences = text.count(old) if old else len(text) + 1
    if len(text) + occurrences * len(new) > MAX_VALUE_CHARS:
        raise _too_big("replacement")


def _check_sizes(what: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_VALUE_CHARS:
            raise _too_big(what)
