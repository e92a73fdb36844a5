"""What one render may cost: the per-render budget (CPU time and memory) and the measures
the sandbox takes of values *before* an operation makes something from them.

Measuring never builds the text it measures (no ``str()`` of a container): it walks the
value, adds up an upper bound of its size as text, and stops as soon as that passes the
limit it was asked about, so measuring a huge value costs no more than the limit.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import time
from collections.abc import ItemsView, Iterator, KeysView, Mapping, ValuesView
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from jinja2.exceptions import SecurityError
from jinja2.sandbox import MAX_RANGE

MAX_VALUE_CHARS = 1_000_000  # one string or sequence made by one operation
MAX_INT_BITS = 100_000  # about 30,000 decimal digits
MAX_OUTPUT_CHARS = 16 * 1024 * 1024  # one rendered template, or one captured block
MAX_ITEMS = MAX_RANGE  # lists made by count (batch, slice), new dict/set entries or pieces of one call
# The work one call may do before it starts (characters compared, copied or hashed: items x
# item size for max/min/sort/unique/join/sum/...): tens of milliseconds of one core. The render
# budget is checked between calls, and no call holds the interpreter long enough to
# delay a signal to the child.
MAX_CALL_WORK = MAX_OUTPUT_CHARS
MAX_RENDER_MEMORY_BYTES = 64 * 1024 * 1024  # growth of inject's resident size during one render
DEFAULT_RENDER_TIMEOUT_S = 10.0
# Between two looks at the clocks at most this many ticks pass: each step between ticks is
# bounded by the size checks (a few MB at most), so memory overshoots the budget by little.
CHECK_EVERY_TICKS = 4
# Joining makes each item text and copies it (and measuring it first is a step of Python):
# an item costs about what copying this many characters does.
JOIN_WORK_PER_ITEM = 64
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
_CONTAINERS = (list, tuple, set, frozenset, KeysView, ValuesView)
_SCALARS = (int, float, bytes, bytearray, range, type(None))
_FLAT_FROM = 64  # a container of more items is first measured at C speed when it can be


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
    """An upper bound of ``len(str(value))``, computed without building the text; stops
    counting once past ``limit`` (the answer is then just some number above it)."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, _SCALARS):  # no walk for a number or bytes: a join measures thousands
        return _scalar_size(value)
    return measure(value, limit=limit)[0]


def joined_size(separator: int, items: str | list[Any] | tuple[Any, ...]) -> tuple[int, int]:
    """``(chars, work)`` of joining ``items`` (each made text) with a separator of ``separator``
    characters; chars are counted only up to just past MAX_VALUE_CHARS. Too many items are
    refused before any is measured, so measuring costs no more than the join would."""
    count = len(items)
    work = count * JOIN_WORK_PER_ITEM
    check_work("joined text", work)
    total = separator * max(count - 1, 0)
    if isinstance(items, str):  # its characters
        return total + count, work + total + count
    for item in items:
        total += len(item) if isinstance(item, str) else text_size(item, limit=MAX_VALUE_CHARS)
        if total > MAX_VALUE_CHARS:
            break
    return total, work + total


def measure(value: Any, *, limit: int, as_text: bool = True) -> tuple[int, int, int]:
    """``(chars, nodes, depth)`` of ``value`` as text; stops once ``chars`` passes ``limit``.

    Strings inside a container count as their ``repr`` would at most (``as_text``; else as
    their length: what comparing or hashing them touches); a dict view or a set counts like
    a list (their text lists every item)."""
    chars, count, deepest = 0, 0, 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    reprs: dict[int, int] = {}  # the same string many times over is looked at once
    while stack and chars <= limit:
        item, depth = stack.pop()
        count += 1
        deepest = max(deepest, depth)
        if not count % 4096:  # a value shared many times over (a DAG) can be a long walk
            tick()
        if isinstance(item, str):  # the common case first: most values are strings
            if not as_text or depth == 1:
                chars += len(item) + 4
            else:
                size = reprs.get(id(item))
                if size is None:
                    size = reprs[id(item)] = _repr_size(item)
                chars += size + 2  # separator and space in a container's text
        elif isinstance(item, _Parts):  # a container's items, taken one at a time
            count -= 1
            part = next(item.parts, item)
            if part is not item:
                stack += [(item, depth), (part, depth)]
        elif isinstance(item, Mapping | ItemsView):
            chars += 26
            flat = _flat_mapping_size(item, as_text, limit)
            if flat is not None:
                chars, count, deepest = chars + flat, count + 2 * len(item), max(deepest, depth + 1)
                continue
            pairs = item.items() if isinstance(item, Mapping) else item
            stack.append((_Parts(part for pair in pairs for part in pair), depth + 1))
        elif isinstance(item, _CONTAINERS):
            chars += 26
            flat = _flat_size(item, as_text, limit) if len(item) > _FLAT_FROM else None
            if flat is not None:
                chars, count, deepest = chars + flat, count + len(item), max(deepest, depth + 1)
                continue
            stack.append((_Parts(iter(item)), depth + 1))
        else:
            chars += _scalar_size(item) + 4
    return chars - 4, count, deepest


def _flat_mapping_size(mapping: Any, as_text: bool, limit: int) -> int | None:
    """What ``measure`` counts for the items of a large mapping of plain keys and values."""
    if not isinstance(mapping, Mapping) or len(mapping) <= _FLAT_FROM:
        return None
    keys = _flat_size(mapping.keys(), as_text, limit)
    values = _flat_size(mapping.values(), as_text, limit) if keys is not None else None
    return None if values is None else keys + values  # type: ignore[operator]


def _flat_size(items: Any, as_text: bool, limit: int) -> int | None:
    """What ``measure`` would count for the items of a container of only strings or only
    numbers, found with C-level passes (a walk in Python costs a microsecond an item, and a
    template can hold 100,000-item lists); None for anything else, which is walked."""
    kinds = set(map(type, items))
    size = len(items)
    if kinds == {str}:
        chars = sum(map(len, items)) + 4 * size  # quotes, separator and space
        if (
            not as_text
            or chars > limit
            or (
                all(map(str.isprintable, items))
                and not any(map(str.__contains__, items, itertools.repeat("\\")))
                and not (
                    any(map(str.__contains__, items, itertools.repeat("'")))
                    and any(map(str.__contains__, items, itertools.repeat('"')))
                )
            )
        ):
            return chars  # a repr of plain text is the text in quotes (past the limit: enough said)
        return None
    if kinds == {int}:
        return sum(map(int.bit_length, items)) * 30103 // 100000 + 6 * size
    if kinds and kinds <= {float, bool, type(None)}:
        return 28 * size
    return None


class _Parts:
    """The items of a container still to measure, walked lazily: a huge container costs
    only as much as is measured of it before the limit."""

    __slots__ = ("parts",)

    def __init__(self, parts: Iterator[Any]) -> None:
        self.parts = parts


def _repr_size(text: str) -> int:
    """At most ``len(repr(text))``: exact for plain text, 4 (``\\x00``) or 10 (``\\U000e0001``)
    characters per character otherwise. Costs at most one pass over ``text``."""
    if text.isprintable() and "\\" not in text and not ("'" in text and '"' in text):
        return len(text) + 2
    return (4 if text.isascii() else 10) * len(text) + 2


def _scalar_size(value: Any) -> int:
    if isinstance(value, bytes | bytearray):
        return 4 * len(value) + 3  # b'...' with \xNN for every byte at most
    if isinstance(value, bool) or value is None:
        return 5
    if isinstance(value, int):
        return value.bit_length() * 30103 // 100000 + 2
    if isinstance(value, range):
        return len(value) * (len(str(max(abs(value.start), abs(value.stop)))) + 2)
    return 24  # floats, small reprs


def too_big(what: str) -> SecurityError:
    """The sandbox's refusal of a result past a limit (a render error, exit 3)."""
    return SecurityError(f"{what} would be too large")


def too_costly(what: str) -> SecurityError:
    """The sandbox's refusal of one call that would do too much work."""
    return SecurityError(f"{what} would take too long (its input is too large)")


def check_chars(what: str, chars: int, *, limit: int = MAX_VALUE_CHARS) -> None:
    """Refuse a result of ``chars`` characters past ``limit`` or past the render's memory budget."""
    if chars > limit:
        raise too_big(what)
    tick(extra_bytes=chars)


def check_work(what: str, work: int) -> None:
    """Refuse one call that would touch more than MAX_CALL_WORK characters."""
    if work > MAX_CALL_WORK:
        raise too_costly(what)


def work_of(value: Any) -> int:
    """What walking over ``value`` once costs: its size as text (items x item size), counted
    only up to just past MAX_CALL_WORK."""
    if isinstance(value, str | bytes):
        return len(value)
    return measure(value, limit=MAX_CALL_WORK, as_text=False)[0]


def check_json(value: Any, indent: Any) -> None:
    """Refuse ``tojson(indent=...)`` whose indented text would be too large."""
    chars, count, depth = measure(value, limit=MAX_OUTPUT_CHARS)
    width = indent if isinstance(indent, int) and not isinstance(indent, bool) else 0
    width = len(indent) if isinstance(indent, str) else width
    check_chars("JSON text", chars + count * (1 + width * depth), limit=MAX_OUTPUT_CHARS)
    check_work("JSON text", chars)
