"""The Jinja sandbox, with limits on what a hostile template can make and how long it runs.

Jinja's ImmutableSandboxedEnvironment stops attribute tricks (``__class__``,
``__subclasses__``, ``__globals__``) and mutation, and caps ``range``. It does not
stop a template from making enormous values or running for minutes. Three layers do:

1. **Size and work checks before the call.** Every operation is measured from its inputs
   (never by making them text) and refused with "... would be too large" when its result
   would pass ``MAX_VALUE_CHARS`` (one value) or ``MAX_OUTPUT_CHARS`` (captured or printed
   text), or with "... would take too long" when its work (items x item size) would pass
   ``MAX_CALL_WORK``: the operators ``*``, ``**``, ``%``, ``+``, ``~`` and the comparisons
   (here), every built-in method a template can reach (``methods.py``: an allow-list with a
   rule per method) and every filter (``filtercosts.py``: a check per filter, required),
   ``str.format`` (the checked formatter sees every field's final spec); ``{% set %}``
   blocks, macro bodies and ``{{ value }}`` output are measured too. No single call can
   then hold the interpreter for long (a signal to the child waits for it) or run far past
   the budget. Intercepting ``*``, ``**``, ``%`` and ``+`` also stops Jinja folding them at
   compile time.
2. **A budget per render** (``limits.render_budget``): CPU time of the rendering thread
   (``render_timeout``, default 10 s) and memory (``MAX_RENDER_MEMORY_BYTES`` above the
   resident size when the render started). It is checked cooperatively, about a
   microsecond per check, at every loop iteration (each ``for`` iterable is wrapped by
   a compile-time rewrite of the template), call, attribute or item access, operator and
   filter. Pure Python checks keep a normal render as fast as before (no helper
   process to start) and are enough because every unbounded amount of work in a
   template is a loop, a recursion (each level is a call) or a filter chain, all of
   which pass through these hooks; a single C-level step is bounded by layer 1.
3. **A final cap on the rendered text** (``MAX_OUTPUT_CHARS``, in render.py).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from jinja2 import nodes
from jinja2.runtime import Context
from jinja2.sandbox import (
    ImmutableSandboxedEnvironment,
    SandboxedEscapeFormatter,
    SandboxedFormatter,
)
from jinja2.visitor import NodeTransformer
from markupsafe import Markup

from .filtercosts import FILTER_CHECKS, Checker, check_format_spec, check_percent, check_test
from .limits import (
    MAX_INT_BITS,
    MAX_OUTPUT_CHARS,
    MAX_VALUE_CHARS,
    check_chars,
    check_work,
    text_size,
    tick,
    too_big,
    work_of,
)
from .methods import checked_method_args

_SPEC_NUMBER = re.compile(r"\d+")
_SEQUENCES = (str, bytes, list, tuple)
_ITER_FILTER = "inject_guarded_iter"  # added around every for-loop iterable at compile time
_CONCAT_FILTER = "inject_checked_concat"  # replaces every `~` at compile time
_COMPARED_FILTER = "inject_compared"  # added around every operand of a comparison at compile time


def _bounded_concat(parts: Iterable[str]) -> str:
    """Every captured block (`{% set x %}`, `{% filter %}`, macro bodies) is joined here."""
    collected, size = [], 0
    for part in parts:
        size += len(part)
        if size > MAX_OUTPUT_CHARS:
            raise too_big("captured block")
        collected.append(part)
    check_chars("captured block", size, limit=MAX_OUTPUT_CHARS)
    return "".join(collected)


# --- the environment --------------------------------------------------------------------


class Sandbox(ImmutableSandboxedEnvironment):
    """ImmutableSandboxedEnvironment that also refuses huge values and runs under a budget.

    ``filters`` adds filters of the caller's own; like Jinja's, each needs an entry in
    ``filtercosts.FILTER_CHECKS`` (a filter without one is a programming error)."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self, *, filters: Mapping[str, Callable[..., Any]] | None = None, **options: Any) -> None:
        options.setdefault("finalize", _checked_output)
        super().__init__(**options)
        self.filters.update(filters or {})
        self.filters[_CONCAT_FILTER] = _checked_concat
        self.filters[_COMPARED_FILTER] = _compared
        unchecked = sorted(set(self.filters) - set(FILTER_CHECKS))
        if unchecked:
            raise TypeError(f"filters without a cost check: {', '.join(unchecked)}")
        self.filters = {
            name: _ticking(_checked(FILTER_CHECKS[name], func)) for name, func in self.filters.items()
        }
        self.filters[_ITER_FILTER] = _GuardedIter
        # Jinja calls a test named in the template directly, not through call_test.
        self.tests = {name: _checked_test(name, func) for name, func in self.tests.items()}  # type: ignore[arg-type]

    concat = staticmethod(_bounded_concat)

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        """Parse, then route every for-loop iterable, ``~`` and comparison through the checks."""
        tree = super()._parse(source, name, filename)
        result = _Guard().visit(tree)
        assert isinstance(result, nodes.Template)  # noqa: S101 (the visitor returns the root it got)
        return result

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        """Check ``*``, ``**``, ``%`` and ``+`` before running them."""
        tick()
        if operator == "*":
            _check_product(left, right)
        elif operator == "**":
            _check_power(left, right)
        elif operator == "%" and isinstance(left, str):
            check_percent(left, right)
        elif operator == "+":
            _check_sum(left, right)
        return super().call_binop(context, operator, left, right)

    def call_test(
        self,
        name: str,
        value: Any,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        context: Context | None = None,
        eval_ctx: Any = None,
    ) -> Any:
        """``select('test')``...: a budget check (the test itself measures its operands)."""
        tick()
        return super().call_test(name, value, args, kwargs, context, eval_ctx)

    def getattr(self, obj: Any, attribute: str) -> Any:
        """Attribute access, with a budget check."""
        tick()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        """Item access, with a budget check."""
        tick()
        return super().getitem(obj, argument)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """``'...'.format`` / ``format_map`` through a formatter that measures every field."""
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        template: str = value.__self__
        check_format_spec(str(template), ())
        formatter: SandboxedFormatter = (
            _CheckedEscapeFormatter(self, escape=template.escape)
            if isinstance(template, Markup)
            else _CheckedFormatter(self)
        )
        return _format_method(template, value.__name__ == "format_map", formatter)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        """Check a built-in method's result size and work before calling it, and the budget."""
        tick()
        args = checked_method_args(__obj, args, kwargs)
        return super().call(__context, __obj, *args, **kwargs)


def _format_method(template: str, is_format_map: bool, formatter: SandboxedFormatter) -> Callable[..., str]:
    def formatted(*args: Any, **kwargs: Any) -> str:
        if is_format_map:
            if kwargs or len(args) != 1:
                raise TypeError("format_map() takes exactly one argument")
            return type(template)(formatter.vformat(template, (), args[0]))
        return type(template)(formatter.vformat(template, args, kwargs))

    return formatted


class _MeasuringFormatter:
    """Counts the characters every replacement field adds, refusing huge totals or widths.

    ``format_field`` sees the final spec, after ``{0:>{1}}`` / ``{:>{w}}`` were filled in."""

    _chars = 0

    def vformat(self, format_string: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
        self._chars = len(format_string)
        return super().vformat(format_string, args, kwargs)  # type: ignore[misc, no-any-return]

    def convert_field(self, value: Any, conversion: str | None) -> Any:
        if conversion in ("r", "a"):  # repr() is made before format_field sees the result
            check_chars("formatted text", 4 * text_size(value, limit=MAX_VALUE_CHARS))
        return super().convert_field(value, conversion)  # type: ignore[misc]

    def format_field(self, value: Any, format_spec: str) -> Any:
        numbers = [int(n) for n in _SPEC_NUMBER.findall(format_spec)] or [0]
        if max(numbers) > MAX_VALUE_CHARS:
            raise too_big("formatted text")
        self._chars += max(text_size(value, limit=MAX_VALUE_CHARS), *numbers)
        check_chars("formatted text", self._chars)
        return super().format_field(value, format_spec)  # type: ignore[misc]


class _CheckedFormatter(_MeasuringFormatter, SandboxedFormatter):
    pass


class _CheckedEscapeFormatter(_MeasuringFormatter, SandboxedEscapeFormatter):
    pass


class _Guard(NodeTransformer):
    """Compile-time rewrite: ``for x in it`` -> ``for x in it|guarded``; ``a ~ b`` -> checked
    concat; ``a in b`` -> ``a|compared in b|compared`` (every comparison operator)."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, _ITER_FILTER, [], [], None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        items = nodes.List(list(node.nodes), lineno=node.lineno)
        return nodes.Filter(items, _CONCAT_FILTER, [], [], None, None, lineno=node.lineno)

    def visit_Compare(self, node: nodes.Compare) -> nodes.Node:
        self.generic_visit(node)
        node.expr = _compared_node(node.expr)
        for operand in node.ops:
            operand.expr = _compared_node(operand.expr)
        return node


def _compared_node(expr: nodes.Expr) -> nodes.Expr:
    return nodes.Filter(expr, _COMPARED_FILTER, [], [], None, None, lineno=expr.lineno)


def _compared(value: Any) -> Any:
    """An operand of ``==``, ``<``, ``in``...: comparing containers walks every item, so a
    container is measured first (a string compares in one pass of its length)."""
    if not isinstance(value, str | bytes | int | float | type(None)):
        check_work("comparison", work_of(value))
    return value


class _GuardedIter:
    """A for-loop iterable that checks the budget at every item (keeps ``len`` for ``loop.length``)."""

    def __init__(self, iterable: Iterable[Any]) -> None:
        self._iterable = iterable
        self._iterator = iter(iterable)

    def __iter__(self) -> _GuardedIter:
        return self

    def __next__(self) -> Any:
        tick()
        return next(self._iterator)

    def __len__(self) -> int:
        return len(self._iterable)  # type: ignore[arg-type]  # TypeError for generators, as Jinja expects


def _checked_concat(items: list[Any]) -> str:
    check_chars("concatenation", sum(text_size(item, limit=MAX_VALUE_CHARS) for item in items))
    return "".join(map(str, items))


def _checked_output(value: Any) -> Any:
    """``finalize``: measure what ``{{ value }}`` would print before ``str()`` makes it."""
    if not isinstance(value, str):
        check_chars("output", text_size(value), limit=MAX_OUTPUT_CHARS)
    return value


# --- filters ------------------------------------------------------------------------------


def _checked(checker: Checker, func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` run only after ``checker(args, kwargs)`` accepted its arguments (the filtered
    value first: a context or environment Jinja passes ahead of it is left out), with the
    arguments the check returns (a generator made a list)."""
    skip = 1 if hasattr(func, "jinja_pass_arg") else 0

    def checked(*args: Any, **kwargs: Any) -> Any:
        args = (*args[:skip], *checker(args[skip:], kwargs))
        return func(*args, **kwargs)

    return _same_marker(func, checked)


def _checked_test(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """A test run after ``check_test`` accepted its operands, and a budget check."""

    skip = 1 if hasattr(func, "jinja_pass_arg") else 0

    def checked(*args: Any, **kwargs: Any) -> Any:
        tick()
        check_test(name, (*args[skip:], *kwargs.values()))
        return func(*args, **kwargs)

    return _same_marker(func, checked)


def _ticking(func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` followed by a budget check (a filter chain is work too)."""
    if isinstance(func, type):  # our guarded iterable: its items tick
        return func

    def ticking(*args: Any, **kwargs: Any) -> Any:
        result = func(*args, **kwargs)
        tick()  # after: what the filter just made counts against the memory budget at once
        return result

    return _same_marker(func, ticking)


def _same_marker(func: Callable[..., Any], wrapper: Callable[..., Any]) -> Callable[..., Any]:
    # Jinja reads `jinja_pass_arg` to pass the context/eval context/environment first.
    if hasattr(func, "jinja_pass_arg"):
        wrapper.jinja_pass_arg = func.jinja_pass_arg  # type: ignore[attr-defined]
    wrapper.__wrapped__ = func  # type: ignore[attr-defined]  # its signature, for inspect
    return wrapper


# --- checks -------------------------------------------------------------------------------


def _check_product(left: Any, right: Any) -> None:
    for seq, count in ((left, right), (right, left)):
        if isinstance(seq, _SEQUENCES) and isinstance(count, int) and len(seq) * count > MAX_VALUE_CHARS:
            raise too_big("repetition")
    if (
        isinstance(left, int)
        and isinstance(right, int)
        and left.bit_length() + right.bit_length() > MAX_INT_BITS
    ):
        raise too_big("product")


def _check_sum(left: Any, right: Any) -> None:
    if isinstance(left, _SEQUENCES) and isinstance(right, _SEQUENCES):
        check_chars("concatenation", len(left) + len(right))


def _check_power(base: Any, exponent: Any) -> None:
    if not (isinstance(base, int) and isinstance(exponent, int)) or abs(base) <= 1 or exponent <= 0:
        return
    if exponent * math.log2(abs(base)) > MAX_INT_BITS:
        raise too_big("power")
