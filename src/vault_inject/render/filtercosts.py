"""What a filter call costs, known from its inputs before it runs.

Every filter a template can use has an entry in :data:`FILTER_CHECKS` (the sandbox refuses
to start with one that has none): a check that measures the filtered value and the
arguments (never by turning them into text) and refuses the call when its result would pass
the value limit or its work (items x item size: comparing, sorting, hashing, copying) would
pass MAX_CALL_WORK. A filter that walks a generator to its end (``sort``, ``max``...) gets
it as a list, made first and measured. Also here: the checks of ``%`` formatting and of
``replace``/``join`` that the str methods and operators share.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from .limits import (
    MAX_ITEMS,
    MAX_VALUE_CHARS,
    check_chars,
    check_work,
    joined_size,
    text_size,
    too_big,
    work_of,
)
from .methods import arg

# A check gets the filter's arguments (the filtered value first) and returns them, perhaps
# with the value made a list.
Checker = Callable[[tuple[Any, ...], Mapping[str, Any]], tuple[Any, ...]]
_BIG_NUMBER = re.compile(r"\d{7,}")  # a width or precision of a million or more
_PERCENT_WIDTHS = re.compile(r"%[-+ #0]*(\d*)(?:\.(\d*))?")  # printf-style width and precision
_SEQUENCES = (str, bytes, list, tuple)
# textwrap works chunk by chunk in Python: a character costs about what copying 64 does.
WRAP_WORK_PER_CHAR = 64
# Python code per character (title's and striptags' regular expressions and word lists).
PYTHON_WORK_PER_CHAR = 64
# max, min, sort...: a key function in Python per item (a string's characters are items).
KEY_WORK_PER_ITEM = 128
# Tests that make their operand text first (``str(value).islower()``).
_TEXT_TESTS = frozenset({"lower", "upper"})


def _text_in(what: str, value: Any, factor: int = 1) -> int:
    """Measure a value a filter turns into text; refuse it past the value limit (times
    ``factor``, what the filter may grow it by). Returns its size."""
    if isinstance(value, str):
        size = len(value)
        limit = max(MAX_VALUE_CHARS, size) if factor == 1 else MAX_VALUE_CHARS
    else:
        size, limit = text_size(value, limit=MAX_VALUE_CHARS), MAX_VALUE_CHARS
    check_chars(what, size * factor, limit=limit)
    check_work(what, size * factor)
    return size


def _as_text(what: str, factor: int = 1, *, work: int = 1) -> Checker:
    """A filter that makes its value text (at most ``factor`` times longer), with ``work``
    per character."""

    def check(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[Any, ...]:
        check_work(what, _text_in(what, args[0], factor) * work)
        return args

    return check


def _any(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[Any, ...]:
    """A filter whose cost is a few references or a number (first, length, int, default...)."""
    return args


def _listed(value: Any) -> Any:
    if not isinstance(value, Iterator):
        return value
    items = []
    for item in value:
        items.append(item)
        if len(items) > MAX_VALUE_CHARS:
            raise too_big("list")
    return items


def _walks(what: str, *, sorts: bool = False) -> Checker:
    """max, min, unique, sort, dictsort, groupby: every item compared or hashed (after a
    case-insensitive copy), a sort about log2(n) times each."""

    def check(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[Any, ...]:
        value = _listed(args[0])
        work = work_of(value)
        if hasattr(value, "__len__"):
            if sorts:
                work *= max(1, math.ceil(math.log2(len(value) + 1)))
            work += len(value) * KEY_WORK_PER_ITEM
        check_work(what, work)
        return (value, *args[1:])

    return check


def _consumes(what: str) -> Checker:
    """list, last, length...: the value made a list first (measured by count only)."""

    def check(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[Any, ...]:
        return (_listed(args[0]), *args[1:])

    return check


def _check_count(what: str, name: str) -> Checker:
    """``batch(n)`` / ``slice(n)``: at most MAX_ITEMS lists."""

    def check(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[Any, ...]:
        count = arg(args, kwargs, 1, name, 0)
        if isinstance(count, int) and count > MAX_ITEMS:
            raise too_big(what)
        return (_listed(args[0]), *args[1:])

    return check


def _check_center(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[Any, ...]:
    size = _text_in("centered text", args[0])
    width = arg(args, kwargs, 1, "width", 80)
    check_sizes("centered text", (width,), {})
    check_chars("centered text", max(size, width if isinstance(width, int) else 0))
    return args


def _check_truncate(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[Any, ...]:
    size = _text_in("truncated text", args[0])
    check_sizes("truncated text", args[1:], kwargs)
    end = arg(args, kwargs, 3, "end", "...")
    check_chars("truncated text", size + _text_in("truncated text", end))
    return args


def _check_case(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[Any, ...]:
    """lower, upper...: a non-ASCII character can become three (``ß`` -> ``SS``, ...)."""
    value = args[0]
    _text_in("text", value, 1 if isinstance(value, str) and value.isascii() else 3)
    return args


def _check_title(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[Any, ...]:
    """title: words found by a regular expression, each capitalized in Python."""
    check_work("title", _text_in("text", args[0], 3) * PYTHON_WORK_PER_CHAR)
    return args


def _check_trim(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[Any, ...]:
    size = _text_in("trimmed text", args[0])
    chars = arg(args, kwargs, 1, "chars")
    check_work("trimmed text", size * max(1, len(chars) if isinstance(chars, str) else 1))
    return args


def _check_indent(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[Any, ...]:
    value = args[0]
    size = _text_in("indented text", value)
    width = arg(args, kwargs, 1, "width", 4)
    check_sizes("indent", (width,), {})
    per_line = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
    lines = value.count("\n") + 2 if isinstance(value, str) else size + 2
    check_chars("indented text", size + lines * max(per_line, 0))
    return args


def _check_wordwrap(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[Any, ...]:
    """wordwrap: textwrap's Python loop per chunk, and each word longer than ``width`` cut
    line by line (copying what is left of it each time: its length squared over ``width``)."""
    value = args[0]
    size = _text_in("wrapped text", value)
    width = arg(args, kwargs, 1, "width", 79)
    wrap = arg(args, kwargs, 3, "wrapstring")
    if not isinstance(width, int) or width < 1:
        return args  # textwrap refuses it
    check_sizes("wrapped text", (width,), {})
    work = size * WRAP_WORK_PER_CHAR
    check_work("wrapped text", work)
    if isinstance(value, str) and arg(args, kwargs, 2, "break_long_words", True):
        for long_run in re.finditer(r"\S{%d,}|\s{%d,}" % (width + 1, width + 1), value):  # noqa: UP031
            length = long_run.end() - long_run.start()
            work += length * length // (2 * width)
            check_work("wrapped text", work)
    lines = 2 * size // width + size + 1  # a line holds over width/2, or one per newline
    wrap_size = _text_in("wrapped text", wrap) if wrap is not None else 1
    check_chars("wrapped text", size + lines * wrap_size)
    return args


def _check_format_filter(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[Any, ...]:
    _text_in("formatted text", args[0])
    check_percent(str(args[0]), kwargs or tuple(args[1:]))  # measured above: a small str()
    return args


def _check_replace_filter(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[Any, ...]:
    sizes = [
        _text_in("replacement", arg(args, kwargs, i, name, "")) for i, name in enumerate(("s", "old", "new"))
    ]
    old = arg(args, kwargs, 1, "old", "")
    value = args[0]
    found = value.count(old) if isinstance(value, str) and isinstance(old, str) and old else sizes[0] + 1
    check_chars("replacement", sizes[0] + found * sizes[2])
    return args


def _check_urlencode(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[Any, ...]:
    value = args[0]
    per_char = 3 if isinstance(value, str) and value.isascii() else 12  # %XX per UTF-8 byte
    _text_in("URL-encoded text", value, per_char)
    return args


def _check_join_filter(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[Any, ...]:
    """join: every item (a string's characters, a dict's keys) made text and copied."""
    value = args[0]
    items = value if isinstance(value, str | list | tuple) else list(_listed(value))
    separator = arg(args, kwargs, 1, "d", "")
    check_join(_text_in("joined text", separator), items)
    return (items, *args[1:])


def _check_sum(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[Any, ...]:
    """``sum`` adds every item (big integers, or lists and strings concatenated)."""
    items = _listed(args[0])
    check_work("sum", work_of(items))
    start = arg(args, kwargs, 2, "start", 0)
    if isinstance(start, _SEQUENCES):
        total = len(start) + sum(len(item) for item in items if isinstance(item, _SEQUENCES))
        check_chars("sum", total)
    return (items, *args[1:])


def _check_tojson(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[Any, ...]:
    return args  # measured by the filter itself (check_json), after SecretData became dicts


FILTER_CHECKS: dict[str, Checker] = {
    **dict.fromkeys(
        (
            "abs",
            "attr",
            "d",
            "default",
            "float",
            "int",
            "round",
            "first",
            "items",
            "map",
            "select",
            "reject",
            "selectattr",
            "rejectattr",
            "filesizeformat",
            "inject_checked_concat",
            "inject_compared",
        ),
        _any,
    ),
    **{name: _consumes(name) for name in ("length", "count", "list", "last", "random", "reverse")},
    **{name: _walks(name) for name in ("max", "min", "unique")},
    **{name: _walks(name, sorts=True) for name in ("sort", "dictsort", "groupby")},
    "batch": _check_count("batch", "linecount"),
    "slice": _check_count("slice", "slices"),
    "string": _as_text("text"),
    "safe": _as_text("text"),
    "striptags": _as_text("text", work=PYTHON_WORK_PER_CHAR),
    "wordcount": _as_text("text"),
    "b64decode": _as_text("decoded text"),
    **dict.fromkeys(("capitalize", "lower", "upper"), _check_case),
    "title": _check_title,
    **dict.fromkeys(("e", "escape", "forceescape"), _as_text("escaped text", 6)),  # "&" -> "&amp;"
    "xmlattr": _as_text("attributes", 6),
    "urlize": _as_text("linked text", 12),
    "pprint": _as_text("pretty-printed text", 2),
    "b64encode": _as_text("base64 text", 6),  # 4 bytes of UTF-8 per character, 4/3 of that
    "shell_quote": _as_text("quoted text", 5),  # ' -> '"'"'
    "trim": _check_trim,
    "truncate": _check_truncate,
    "center": _check_center,
    "indent": _check_indent,
    "wordwrap": _check_wordwrap,
    "format": _check_format_filter,
    "replace": _check_replace_filter,
    "urlencode": _check_urlencode,
    "join": _check_join_filter,
    "sum": _check_sum,
    "tojson": _check_tojson,
}


# --- tests ------------------------------------------------------------------------------


def check_test(name: str, operands: Iterable[Any]) -> None:
    """``x is test(...)``: the containers a test compares (``in``, ``eq``...) are measured
    first, and ``lower``/``upper`` make their operand text."""
    operands = tuple(operands)
    for operand in operands:
        if not isinstance(operand, str | bytes | int | float | type(None)):
            check_work("comparison", work_of(operand))
    if name in _TEXT_TESTS and operands:
        _text_in("text", operands[0])


# --- shared by filters, methods and operators -------------------------------------------


def check_format_spec(template: str, args: Any) -> None:
    """Refuse a format string naming a width or precision of a million or more."""
    if _BIG_NUMBER.search(template):
        raise too_big("formatted text")
    values = args if isinstance(args, tuple) else (args,)
    if "*" in template and any(isinstance(v, int) and abs(v) > MAX_VALUE_CHARS for v in values):
        raise too_big("formatted text")


def check_percent(template: str, args: Any) -> None:
    """``template % args``: widths, then the total of every field (a mapping can repeat one)."""
    check_format_spec(template, args)
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


def check_join(separator: int, items: str | list[Any] | tuple[Any, ...]) -> None:
    """Refuse joining ``items`` (each made text) with a separator of ``separator`` characters
    past the value limit, or with too many items (JOIN_WORK_PER_ITEM each)."""
    total, work = joined_size(separator, items)
    check_chars("joined text", total)
    check_work("joined text", work)


def check_sizes(what: str, args: Iterable[Any], kwargs: Mapping[str, Any]) -> None:
    """Refuse any integer argument (a width, a length) past the value limit."""
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_VALUE_CHARS:
            raise too_big(what)
