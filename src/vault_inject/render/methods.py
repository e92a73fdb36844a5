"""What a call of a built-in method costs, known from its inputs before it runs.

A template can reach the methods of the values it holds (str, bytes, int, float, list,
tuple, dict, set, range and Markup, Jinja's escaped str). Each one a template may call has a
rule here giving an upper bound of the result's size and of the work the call does, from
the receiver and the arguments alone; the sandbox refuses the call when either is too
large. A built-in method without a rule (one a new Python added, a method of a dict view)
is refused: the table is an allow-list. ``tests/unit/test_template_costs.py`` calls every
reachable method with large arguments and checks that none gets through.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from jinja2.exceptions import SecurityError
from markupsafe import Markup

from .limits import (
    MAX_INT_BITS,
    MAX_ITEMS,
    MAX_VALUE_CHARS,
    check_chars,
    check_work,
    joined_size,
    text_size,
    too_big,
    work_of,
)

# (size of the result in characters, items or bytes; characters touched)
Cost = tuple[int, int]
Rule = Callable[[Any, tuple[Any, ...], Mapping[str, Any]], Cost]
# str.translate looks every character up in the table through Python's item access.
TRANSLATE_WORK_PER_CHAR = 64
COMPARE_WORK_PER_ITEM = 256  # one comparison through Python's rich comparison
ESCAPE_FACTOR = 6  # Markup's methods escape their arguments: "&" -> "&amp;" at most... "&#39;"
_WHITESPACE = (" ", "\n", "\t", "\r", "\x0b", "\x0c")
_LINE_BREAKS = ("\n", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029")
_PLAIN_CODECS = frozenset({"utf-8", "utf8", "ascii", "latin-1", "latin1", "iso-8859-1", "iso8859-1"})


def arg(args: Sequence[Any], kwargs: Mapping[str, Any], index: int, name: str, default: Any = None) -> Any:
    """Argument ``index`` of a call, given by position or as ``name``."""
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _len(value: Any) -> int:
    return (
        len(value) if isinstance(value, str | bytes | bytearray) else text_size(value, limit=MAX_VALUE_CHARS)
    )


def _args_size(args: Sequence[Any], kwargs: Mapping[str, Any]) -> int:
    return sum(work_of(value) for value in (*args, *kwargs.values()))


# --- rules ------------------------------------------------------------------------------


def _same_size(owner: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Cost:
    """lower, upper, title...: one pass; a non-ASCII character can become three (``ß`` -> ``SS``...)."""
    grows = isinstance(owner, str) and not owner.isascii()
    return len(owner) * (3 if grows else 1), len(owner)


def _scan(owner: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Cost:
    """find, count, startswith, isdigit...: a small result after one pass over the inputs."""
    return 0, _len(owner) + _args_size(args, kwargs)


def _small(owner: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Cost:
    """int and float methods, dict views, get: a small result for little work."""
    return 0, _args_size(args, kwargs)


def _at_most_owner(owner: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Cost:
    """removeprefix, partition, copy...: no larger than the receiver."""
    return _len(owner) if isinstance(owner, str | bytes) else len(owner), _len(owner) + _args_size(
        args, kwargs
    )


def _strip(owner: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Cost:
    """strip(chars): every stripped character is looked up in ``chars``."""
    chars = arg(args, kwargs, 0, "chars")
    per_char = len(chars) if isinstance(chars, str | bytes) else 1
    return len(owner), len(owner) * max(per_char, 1)


def _pad(owner: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Cost:
    """center, ljust, rjust, zfill: ``width`` characters."""
    width = _int(arg(args, kwargs, 0, "width"))
    return max(len(owner), width), max(len(owner), width)


def _expandtabs(owner: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Cost:
    tabsize = max(_int(arg(args, kwargs, 0, "tabsize", 8), 8), 0)
    tab = "\t" if isinstance(owner, str) else b"\t"
    size = len(owner) + owner.count(tab) * tabsize
    return size, size


def _replace(owner: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Cost:
    old, new = arg(args, kwargs, 0, "old"), arg(args, kwargs, 1, "new")
    if not (isinstance(old, str | bytes) and isinstance(new, str | bytes)):
        return len(owner), len(owner)
    found = owner.count(old) if old and type(old) is type(owner) else len(owner) + 1  # type: ignore[arg-type]
    limit = _int(arg(args, kwargs, 2, "count", -1), -1)
    found = min(found, limit) if limit >= 0 else found
    size = len(owner) + found * len(new)
    return size, size


def _pieces(owner: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Cost:
    """split, rsplit: at most MAX_ITEMS new strings."""
    sep = arg(args, kwargs, 0, "sep")
    maxsplit = _int(arg(args, kwargs, 1, "maxsplit", -1), -1)
    if isinstance(sep, str | bytes) and sep:
        count = owner.count(sep) + 1 if type(sep) is type(owner) else 1  # type: ignore[arg-type]
    elif isinstance(owner, bytes) or owner.isascii():
        count = sum(owner.count(c if isinstance(owner, str) else c.encode()) for c in _WHITESPACE) + 1
    else:
        count = len(owner) // 2 + 1
    if maxsplit >= 0:
        count = min(count, maxsplit + 1)
    _check_items("split", count)
    return len(owner), len(owner)


def _lines(owner: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Cost:
    breaks = _LINE_BREAKS if isinstance(owner, str) else ("\n", "\r")
    count = sum(owner.count(c if isinstance(owner, str) else c.encode()) for c in breaks) + 1
    _check_items("splitlines", count)
    return len(owner), len(owner)


def _encode(owner: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Cost:
    """encode / decode: one byte per character for plain text in a plain codec; else up to 10
    (``errors='xmlcharrefreplace'`` writes ``&#1114111;``)."""
    encoding, errors = arg(args, kwargs, 0, "encoding", "utf-8"), arg(args, kwargs, 1, "errors", "strict")
    if not (isinstance(encoding, str) and isinstance(errors, str)):
        raise SecurityError("encode() and decode() take the names of a codec and an error handler")
    encoding = encoding.lower()
    plain = encoding in _PLAIN_CODECS and errors in ("strict", "ignore", "replace")
    ascii_text = owner.isascii()
    factor = 1 if plain and (ascii_text or isinstance(owner, bytes)) else 4 if plain else 10
    return len(owner) * factor, len(owner) * factor


def _hex(owner: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Cost:
    return 3 * len(owner), 3 * len(owner)


def _fromhex(owner: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Cost:
    return _len(arg(args, kwargs, 0, "string", "")), _len(arg(args, kwargs, 0, "string", ""))


def _translate(owner: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Cost:
    """str.translate: each character becomes the table's entry, as long as its largest one."""
    table = arg(args, kwargs, 0, "table")
    if isinstance(owner, bytes) or table is None:
        return len(owner), len(owner)
    if isinstance(table, str | bytes):
        return len(owner), len(owner) * TRANSLATE_WORK_PER_CHAR
    if isinstance(table, Mapping):
        entries: Any = table.values()
    elif isinstance(table, list | tuple | range):
        entries = table
    else:
        raise SecurityError("translate() takes a dict or a list as its table in templates")
    largest = 1
    for index, entry in enumerate(entries):
        if isinstance(entry, str):
            largest = max(largest, len(entry))
        if not index % 4096:
            check_work("translation table", index)
    size = len(owner) * largest
    return size, len(owner) * TRANSLATE_WORK_PER_CHAR


def _maketrans(owner: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Cost:
    """str.maketrans: one dict entry per character given (bytes.maketrans: 256 bytes)."""
    first = arg(args, kwargs, 0, "x")
    third = arg(args, kwargs, 2, "z", "")
    entries = sum(len(part) for part in (first, third) if isinstance(part, Mapping | str | bytes))
    _check_items("translation table", entries)
    return 256, _args_size(args, kwargs)


def _join(owner: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Cost:
    items = arg(args, kwargs, 0, "iterable", ())
    if not isinstance(items, list | tuple):
        raise SecurityError("join() takes a list in templates")
    return joined_size(len(owner), items)


def _escape_argument(owner: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Cost:
    """Markup.escape(value): the value made text (then escaped: the caller's factor)."""
    size = _len(arg(args, kwargs, 0, "s", ""))
    return size, size


def _to_bytes(owner: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Cost:
    length = _int(arg(args, kwargs, 0, "length", 1), 1)
    return max(length, 0), max(length, 0)


def _from_bytes(owner: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Cost:
    data = arg(args, kwargs, 0, "bytes", b"")
    size = len(data) if hasattr(data, "__len__") else 0
    if 8 * size > MAX_INT_BITS:
        raise too_big("integer")
    return 0, size


def _compare_items(owner: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Cost:
    """list.count / index: every item compared with the argument."""
    return 0, work_of(owner) + _args_size(args, kwargs)


def _compare_range(owner: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Cost:
    """range.count / index: arithmetic for an int, every item compared for anything else."""
    value = arg(args, kwargs, 0, "value")
    return 0, 0 if isinstance(value, int) else len(owner) * COMPARE_WORK_PER_ITEM


def _fromkeys(owner: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Cost:
    keys = arg(args, kwargs, 0, "iterable", ())
    count = len(keys) if hasattr(keys, "__len__") else 0
    _check_items("dict", count)
    return 0, work_of(keys)


def _set_operation(owner: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Cost:
    """union, difference...: at most every entry of every input, each hashed once."""
    count = len(owner) + sum(len(other) for other in args if hasattr(other, "__len__"))
    _check_items("set", count)
    return 0, work_of(owner) + _args_size(args, kwargs)


def _check_items(what: str, count: int) -> None:
    if count > MAX_ITEMS:
        raise too_big(what)


_TEXT = {
    **dict.fromkeys(("capitalize", "casefold", "lower", "upper", "swapcase", "title"), _same_size),
    **dict.fromkeys(("strip", "lstrip", "rstrip"), _strip),
    **dict.fromkeys(("removeprefix", "removesuffix", "partition", "rpartition"), _at_most_owner),
    **dict.fromkeys(
        (
            "count",
            "find",
            "rfind",
            "index",
            "rindex",
            "startswith",
            "endswith",
            "isalnum",
            "isalpha",
            "isascii",
            "isdecimal",
            "isdigit",
            "isidentifier",
            "islower",
            "isnumeric",
            "isprintable",
            "isspace",
            "istitle",
            "isupper",
        ),
        _scan,
    ),
    **dict.fromkeys(("center", "ljust", "rjust", "zfill"), _pad),
    "expandtabs": _expandtabs,
    "replace": _replace,
    "split": _pieces,
    "rsplit": _pieces,
    "splitlines": _lines,
    "translate": _translate,
    "maketrans": _maketrans,
    "join": _join,
}

RULES: dict[str, Rule] = {
    **{f"str.{name}": rule for name, rule in _TEXT.items()},
    **{f"bytes.{name}": rule for name, rule in _TEXT.items() if name not in ("casefold",)},
    "str.encode": _encode,
    "Markup.escape": _escape_argument,
    "str.format": _small,  # measured field by field by the sandbox's formatter
    "str.format_map": _small,
    "bytes.decode": _encode,
    "bytes.hex": _hex,
    "bytes.fromhex": _fromhex,
    "int.to_bytes": _to_bytes,
    "int.from_bytes": _from_bytes,
    **dict.fromkeys(
        ("int.as_integer_ratio", "int.bit_count", "int.bit_length", "int.conjugate", "int.is_integer"), _small
    ),
    **dict.fromkeys(("float.as_integer_ratio", "float.conjugate", "float.hex", "float.is_integer"), _small),
    "float.fromhex": _fromhex,
    **dict.fromkeys(("list.count", "list.index", "tuple.count", "tuple.index"), _compare_items),
    "list.copy": _at_most_owner,
    **dict.fromkeys(("dict.get", "dict.items", "dict.keys", "dict.values"), _small),
    **dict.fromkeys(("range.count", "range.index"), _compare_range),
    "dict.copy": _at_most_owner,
    "dict.fromkeys": _fromkeys,
    **dict.fromkeys(("set.copy", "frozenset.copy"), _at_most_owner),
    **{
        f"{kind}.{name}": _set_operation
        for kind in ("set", "frozenset")
        for name in (
            "difference",
            "intersection",
            "isdisjoint",
            "issubset",
            "issuperset",
            "symmetric_difference",
            "union",
        )
    },
}
# Markup's own methods (Python code over the str ones) escape their arguments first.
_MARKUP = {"Markup.unescape": "str.lower", "Markup.striptags": "str.lower", "Markup.escape": "Markup.escape"}


def checked_method_args(method: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Refuse a call of a built-in method whose result or work would be too large (or that has
    no rule); return the positional arguments to call it with (an iterator made a list, so it
    could be measured). Other callables (macros, inject's functions) pass unchanged."""
    name = getattr(method, "__qualname__", "")
    owner = getattr(method, "__self__", None)
    markup = isinstance(owner, Markup) or (isinstance(owner, type) and issubclass(owner, Markup))
    if markup and not _is_builtin(method):  # escape is a classmethod: its __self__ is the class
        name = _MARKUP.get(name, "str." + name.rpartition(".")[2])
        factor = ESCAPE_FACTOR
    elif _is_builtin(method) and (owner is None or not isinstance(owner, _MODULE)):
        factor = 1
    else:
        return args
    rule = RULES.get(name)
    if rule is None:
        raise SecurityError(f"{name}() is not available in templates")
    args = tuple(_listed(value) for value in args)
    for key, value in kwargs.items():
        kwargs[key] = _listed(value)
    receiver = (
        owner
        if isinstance(owner, str | bytes | int | float | list | tuple | dict | set | frozenset | range)
        else ""
    )
    size, work = rule(receiver, args, kwargs)
    existing = len(receiver) if isinstance(receiver, str | bytes) else 0
    check_chars(name.partition(".")[2] or name, size * factor, limit=max(MAX_VALUE_CHARS, existing))
    check_work(name.partition(".")[2] or name, work * factor)
    return args


_MODULE = type(itertools)
_VALUES = (str, bytes, int, float, list, tuple, dict, set, frozenset, range)


def _is_builtin(method: Any) -> bool:
    return type(method).__name__ == "builtin_function_or_method"


def _listed(value: Any) -> Any:
    """An iterator (a filter's generator) as a list of at most MAX_VALUE_CHARS items."""
    if not isinstance(value, Iterator):
        return value
    items = list(itertools.islice(value, MAX_VALUE_CHARS + 1))
    if len(items) > MAX_VALUE_CHARS:
        raise too_big("list")
    return items
