"""The Jinja sandbox, with limits on what a hostile template can make and how long it runs.

Jinja's ImmutableSandboxedEnvironment stops attribute tricks (``__class__``,
``__subclasses__``, ``__globals__``) and mutation, and caps ``range``. It does not
stop a template from making enormous values or running for minutes. Three layers do:

1. **Size checks before the work.** Every operation that can make a value much larger
   than its inputs is measured first and refused with "... would be too large" when the
   result would pass ``MAX_VALUE_CHARS`` (one value) or ``MAX_OUTPUT_CHARS`` (captured
   or printed text): ``*``, ``**``, ``%``, ``+``, ``~``, ``str.format`` (widths given as
   arguments included: the checked formatter sees every field's final spec),
   ``center``/``ljust``/``replace``/``join``/``translate`` methods, and the filters
   ``center``, ``indent``, ``wordwrap``, ``truncate``, ``format``, ``replace``, ``join``,
   ``batch``, ``slice``, ``sum``, ``urlencode``, ``string``, ``pprint``, ``tojson``;
   ``{% set %}`` blocks, macro bodies and ``{{ value }}`` output are measured too.
   Intercepting ``*``, ``**``, ``%`` and ``+`` also stops Jinja folding them at compile time.
2. **A budget per render** (:func:`render_budget`): CPU time of the rendering thread
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

import contextlib
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from jinja2 import nodes
from jinja2.exceptions import SecurityError
from jinja2.filters import make_attrgetter
from jinja2.runtime import Context
from jinja2.sandbox import (
    MAX_RANGE,
    ImmutableSandboxedEnvironment,
    SandboxedEscapeFormatter,
    SandboxedFormatter,
)
from jinja2.visitor import NodeTransformer
from markupsafe import Markup

MAX_VALUE_CHARS = 1_000_000  # one string or sequence made by one operation
MAX_INT_BITS = 100_000  # about 30,000 decimal digits
MAX_OUTPUT_CHARS = 16 * 1024 * 1024  # one rendered template, or one captured block
MAX_ITEMS = MAX_RANGE  # lists made by count (batch, slice): as many as range() may make
MAX_RENDER_MEMORY_BYTES = 64 * 1024 * 1024  # growth of inject's resident size during one render
DEFAULT_RENDER_TIMEOUT_S = 10.0
# Between two looks at the clocks at most this many ticks pass: each step between ticks is
# bounded by the size checks (a few MB at most), so memory overshoots the budget by little.
CHECK_EVERY_TICKS = 4
_BIG_NUMBER = re.compile(r"\d{7,}")  # a width or precision of a million or more
_SPEC_NUMBER = re.compile(r"\d+")
_PERCENT_WIDTHS = re.compile(r"%[-+ #0]*(\d*)(?:\.(\d*))?")  # printf-style width and precision
_SIZED_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})
_SEQUENCES = (str, bytes, list, tuple)
_ITER_FILTER = "inject_guarded_iter"  # added around every for-loop iterable at compile time
_CONCAT_FILTER = "inject_checked_concat"  # replaces every `~` at compile time
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


class BudgetExceeded(Exception):
    """A render used more CPU time or memory than its budget (the message says which)."""


# --- the per-render budget --------------------------------------------------------------


@dataclass
class Budget:
    """CPU deadline and memory ceiling of the render running in this context."""

    timeout_s: float
    cpu_deadline_s: float  # in time.thread_time() terms
    memory_bytes: int
    memory_ceiling_bytes: int
    statm_fd: int | None
    ticks: int = 0

    def check(self, *, extra_bytes: int = 0) -> None:
        """Raise BudgetExceeded past the deadline, or when ``extra_bytes`` more would pass the ceiling.

        Plain ticks look at the clocks every CHECK_EVERY_TICKS (a tick costs a counter then);
        a tick announcing an allocation always looks."""
        self.ticks += 1
        if not extra_bytes and self.ticks % CHECK_EVERY_TICKS:
            return
        if time.thread_time() > self.cpu_deadline_s:
            raise BudgetExceeded(
                f"rendering used more than {self.timeout_s:g}s of CPU time "
                "(raise [watch] render_timeout / INJECT_RENDER_TIMEOUT if this template needs it)"
            )
        if self.statm_fd is None:
            return
        if _resident_bytes(self.statm_fd) + extra_bytes > self.memory_ceiling_bytes:
            raise BudgetExceeded(f"rendering would use more than {self.memory_bytes // 2**20} MiB of memory")


_current: ContextVar[Budget | None] = ContextVar("vault_inject_render_budget", default=None)


@contextlib.contextmanager
def render_budget(*, timeout_s: float, memory_bytes: int = MAX_RENDER_MEMORY_BYTES) -> Iterator[None]:
    """Run the body under a CPU-time and memory budget; nested uses keep the outer budget."""
    if _current.get() is not None:
        yield
        return
    statm_fd = _open_statm()
    start = _resident_bytes(statm_fd) if statm_fd is not None else 0
    budget = Budget(
        timeout_s=timeout_s,
        cpu_deadline_s=time.thread_time() + timeout_s,
        memory_bytes=memory_bytes,
        memory_ceiling_bytes=start + memory_bytes,
        statm_fd=statm_fd,
    )
    token = _current.set(budget)
    try:
        yield
    finally:
        _current.reset(token)
        if statm_fd is not None:
            os.close(statm_fd)


def tick(*, extra_bytes: int = 0) -> None:
    """Check the current render's budget (nothing outside a render)."""
    budget = _current.get()
    if budget is not None:
        budget.check(extra_bytes=extra_bytes)


def _open_statm() -> int | None:
    try:
        return os.open("/proc/self/statm", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:  # not Linux, or no /proc: the size checks and the CPU budget remain
        return None


def _resident_bytes(statm_fd: int) -> int:
    return int(os.pread(statm_fd, 128, 0).split()[1]) * _PAGE_BYTES


# --- measuring values without making them ---------------------------------------------


def text_size(value: Any, *, limit: int = MAX_OUTPUT_CHARS) -> int:
    """About ``len(str(value))`` (an upper bound for containers), computed without building
    the text; stops counting once past ``limit``."""
    if isinstance(value, str):
        return len(value)
    return _measure(value, limit=limit)[0]


def _measure(value: Any, *, limit: int) -> tuple[int, int, int]:
    """``(chars, nodes, depth)`` of ``value`` as text; stops once ``chars`` passes ``limit``."""
    chars, count, deepest = 0, 0, 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack and chars <= limit:
        item, depth = stack.pop()
        count += 1
        deepest = max(deepest, depth)
        if not count % 4096:  # a value shared many times over (a DAG) can be a long walk
            tick()
        if isinstance(item, str):  # the common case first: most values are strings
            chars += len(item) + 4  # quotes, separator and space in a container's text
        elif isinstance(item, dict | Mapping):
            chars += 26
            stack.extend((part, depth + 1) for pair in item.items() for part in pair)
        elif isinstance(item, list | tuple | set | frozenset):
            chars += 26
            stack.extend((part, depth + 1) for part in item)
        else:
            chars += _scalar_size(item) + 4
    return chars - 4, count, deepest


def _scalar_size(value: Any) -> int:
    if isinstance(value, bytes):
        return len(value) if value.isascii() else 4 * len(value)
    if isinstance(value, bool) or value is None:
        return 5
    if isinstance(value, int):
        return value.bit_length() * 30103 // 100000 + 2
    if isinstance(value, range):
        return len(value) * (len(str(max(abs(value.start), abs(value.stop)))) + 2)
    return 24  # floats, small reprs


def _too_big(what: str) -> SecurityError:
    return SecurityError(f"{what} would be too large")


def check_chars(what: str, chars: int, *, limit: int = MAX_VALUE_CHARS) -> None:
    """Refuse a result of ``chars`` characters past ``limit`` or past the render's memory budget."""
    if chars > limit:
        raise _too_big(what)
    tick(extra_bytes=chars)


def check_json(value: Any, indent: Any) -> None:
    """Refuse ``tojson(indent=...)`` whose indented text would be too large."""
    chars, count, depth = _measure(value, limit=MAX_OUTPUT_CHARS)
    width = indent if isinstance(indent, int) and not isinstance(indent, bool) else 0
    width = len(indent) if isinstance(indent, str) else width
    check_chars("JSON text", chars + count * (1 + width * depth), limit=MAX_OUTPUT_CHARS)


def _bounded_concat(parts: Iterable[str]) -> str:
    """Every captured block (`{% set x %}`, `{% filter %}`, macro bodies) is joined here."""
    collected, size = [], 0
    for part in parts:
        size += len(part)
        if size > MAX_OUTPUT_CHARS:
            raise _too_big("captured block")
        collected.append(part)
    check_chars("captured block", size, limit=MAX_OUTPUT_CHARS)
    return "".join(collected)


# --- the environment --------------------------------------------------------------------


class Sandbox(ImmutableSandboxedEnvironment):
    """ImmutableSandboxedEnvironment that also refuses huge values and runs under a budget."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self, **options: Any) -> None:
        options.setdefault("finalize", _checked_output)
        super().__init__(**options)
        for name in ("center", "wordwrap", "truncate"):
            self.filters[name] = _checked(_sizes_checker(name), self.filters[name])
        for name, checker in _FILTER_CHECKS.items():
            self.filters[name] = _checked(checker, self.filters[name])
        self.filters["join"] = _join_filter(self.filters["join"])
        self.filters["sum"] = _sum_filter(self.filters["sum"])
        self.filters[_ITER_FILTER] = _GuardedIter
        self.filters[_CONCAT_FILTER] = _checked_concat
        self.filters = {name: _ticking(func) for name, func in self.filters.items()}

    concat = staticmethod(_bounded_concat)

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        """Parse, then route every for-loop iterable and every ``~`` through the checks."""
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
            _check_percent(left, right)
        elif operator == "+":
            _check_sum(left, right)
        return super().call_binop(context, operator, left, right)

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
        _check_format_spec(str(template), ())
        formatter: SandboxedFormatter = (
            _CheckedEscapeFormatter(self, escape=template.escape)
            if isinstance(template, Markup)
            else _CheckedFormatter(self)
        )
        return _format_method(template, value.__name__ == "format_map", formatter)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        """Check str methods that take a size before calling them, and the budget."""
        tick()
        args = _checked_call_args(__obj, args, kwargs)
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
            raise _too_big("formatted text")
        self._chars += max(text_size(value, limit=MAX_VALUE_CHARS), *numbers)
        check_chars("formatted text", self._chars)
        return super().format_field(value, format_spec)  # type: ignore[misc]


class _CheckedFormatter(_MeasuringFormatter, SandboxedFormatter):
    pass


class _CheckedEscapeFormatter(_MeasuringFormatter, SandboxedEscapeFormatter):
    pass


class _Guard(NodeTransformer):
    """Compile-time rewrite: ``for x in it`` -> ``for x in it|guarded``; ``a ~ b`` -> checked concat."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, _ITER_FILTER, [], [], None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        items = nodes.List(list(node.nodes), lineno=node.lineno)
        return nodes.Filter(items, _CONCAT_FILTER, [], [], None, None, lineno=node.lineno)


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

Checker = Callable[[tuple[Any, ...], Mapping[str, Any]], None]


def _checked(checker: Checker, func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` run only after ``checker(args, kwargs)`` accepted its arguments (the filtered
    value first: a context or environment Jinja passes ahead of it is left out)."""
    skip = 1 if hasattr(func, "jinja_pass_arg") else 0

    def checked(*args: Any, **kwargs: Any) -> Any:
        checker(args[skip:], kwargs)
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
    return wrapper


def _sizes_checker(what: str) -> Checker:
    def check(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
        _check_sizes(what, args[1:], kwargs)

    return check


def _check_indent(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    text = str(args[0])
    width = args[1] if len(args) > 1 else kwargs.get("width", 4)
    _check_sizes("indent", (width,), {})
    per_line = len(width) if isinstance(width, str) else int(width) if isinstance(width, int) else 0
    check_chars("indented text", len(text) + (text.count("\n") + 2) * per_line)


def _check_format_filter(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    _check_percent(str(args[0]), kwargs or tuple(args[1:]))


def _check_replace_filter(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    given = [*args[:3], *(kwargs[k] for k in ("old", "new") if k in kwargs)]
    if len(given) >= 3:
        _check_replace(str(given[0]), str(given[1]), str(given[2]))


def _check_count(what: str) -> Checker:
    """``batch(n)`` / ``slice(n)``: at most MAX_ITEMS lists."""

    def check(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
        count = args[1] if len(args) > 1 else kwargs.get("linecount", kwargs.get("slices", 0))
        if isinstance(count, int) and count > MAX_ITEMS:
            raise _too_big(what)

    return check


def _check_urlencode(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    value = args[0]
    per_char = 3 if isinstance(value, str) and value.isascii() else 12  # %XX per UTF-8 byte
    check_chars("URL-encoded text", per_char * text_size(value, limit=MAX_VALUE_CHARS))


def _check_as_text(what: str, factor: int) -> Checker:
    def check(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
        check_chars(what, factor * text_size(args[0], limit=MAX_OUTPUT_CHARS))

    return check


def _check_wordwrap(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    # wordwrap is (s, width=79, break_long_words=True, wrapstring=None, ...)
    text = str(args[0])
    width = args[1] if len(args) > 1 else kwargs.get("width", 79)
    wrap = args[3] if len(args) > 3 else kwargs.get("wrapstring")
    if isinstance(width, int) and isinstance(wrap, str):
        lines = 2 * len(text) // max(width, 1) + text.count("\n") + 1  # a line holds over width/2
        check_chars("wrapped text", len(text) + lines * len(wrap))


_FILTER_CHECKS: dict[str, Checker] = {
    "wordwrap": _check_wordwrap,
    "escape": _check_as_text("escaped text", 6),  # "&" -> "&amp;" (forceescape can chain)
    "e": _check_as_text("escaped text", 6),
    "forceescape": _check_as_text("escaped text", 6),
    "xmlattr": _check_as_text("attributes", 6),
    "urlize": _check_as_text("linked text", 12),
    "indent": _check_indent,
    "format": _check_format_filter,
    "replace": _check_replace_filter,
    "batch": _check_count("batch"),
    "slice": _check_count("slice"),
    "urlencode": _check_urlencode,
    "string": _check_as_text("text", 1),
    "pprint": _check_as_text("pretty-printed text", 2),
}


def _join_filter(func: Callable[..., Any]) -> Callable[..., Any]:
    """``join``: measure the items (made into a list first) and separators before joining."""

    def checked(eval_ctx: Any, value: Iterable[Any], d: str = "", attribute: Any = None) -> Any:
        items = list(value)
        if attribute is not None:
            items = list(map(make_attrgetter(eval_ctx.environment, attribute), items))
        _check_join(str(d), items)
        return func(eval_ctx, items, d)

    return _same_marker(func, checked)


def _sum_filter(func: Callable[..., Any]) -> Callable[..., Any]:
    """``sum`` of lists or tuples concatenates them: measure first."""

    def checked(environment: Any, iterable: Iterable[Any], attribute: Any = None, start: Any = 0) -> Any:
        items = list(iterable)
        if isinstance(start, _SEQUENCES):
            total = len(start) + sum(len(item) for item in items if isinstance(item, _SEQUENCES))
            check_chars("sum", total)
        return func(environment, items, attribute, start)

    return _same_marker(func, checked)


# --- checks -------------------------------------------------------------------------------


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


def _check_sum(left: Any, right: Any) -> None:
    if isinstance(left, _SEQUENCES) and isinstance(right, _SEQUENCES):
        check_chars("concatenation", len(left) + len(right))


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


def _check_percent(template: str, args: Any) -> None:
    """``template % args``: widths, then the total of every field (a mapping can repeat one)."""
    _check_format_spec(template, args)
    fields = template.count("%")
    widths = sum(int(n) for pair in _PERCENT_WIDTHS.findall(template) for n in pair if n)
    if "*" in template:  # widths given as arguments
        values = args if isinstance(args, tuple) else (args,)
        widths += sum(abs(v) for v in values if isinstance(v, int) and not isinstance(v, bool))
    if isinstance(args, Mapping):
        largest = max((text_size(v, limit=MAX_VALUE_CHARS) for v in args.values()), default=0)
        total = len(template) + fields * largest
    elif isinstance(args, tuple):
        total = len(template) + sum(text_size(v, limit=MAX_VALUE_CHARS) for v in args)
    else:
        total = len(template) + fields * text_size(args, limit=MAX_VALUE_CHARS)
    check_chars("formatted text", total + widths)


def _checked_call_args(obj: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[Any, ...]:
    """Check a str method call; ``join``'s iterable is made into a list so it can be measured."""
    name = getattr(obj, "__name__", "")
    owner = getattr(obj, "__self__", None)
    if not isinstance(owner, str):
        return args
    if name in _SIZED_METHODS:
        _check_sizes(name, args, kwargs)
    elif name == "replace" and len(args) >= 2:
        _check_replace(owner, str(args[0]), str(args[1]))
    elif name == "join" and len(args) == 1:
        items = list(args[0])
        _check_join(owner, items)
        return (items,)
    elif name == "translate" and args and isinstance(args[0], Mapping):
        largest = max((text_size(v, limit=MAX_VALUE_CHARS) for v in args[0].values()), default=1)
        check_chars("translation", len(owner) * max(largest, 1))
    return args


def _check_join(separator: str, items: list[Any]) -> None:
    total = len(separator) * max(len(items) - 1, 0)
    for item in items:
        total += text_size(item, limit=MAX_VALUE_CHARS)
        if total > MAX_VALUE_CHARS:
            break
    check_chars("joined text", total)


def _check_replace(text: str, old: str, new: str) -> None:
    occurrences = text.count(old) if old else len(text) + 1
    if len(text) + occurrences * len(new) > MAX_VALUE_CHARS:
        raise _too_big("replacement")


def _check_sizes(what: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_VALUE_CHARS:
            raise _too_big(what)
