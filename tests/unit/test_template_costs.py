"""Every method, filter and test the sandbox allows, called with large arguments: none may
allocate or compute its way past the per-call bounds.

The lists are the sandbox's own allow-lists (``methods.RULES``, the environment's filters and
tests), so a method, filter or test added later is covered without touching this file. Each
is called in a template with a few well-chosen large shapes (a long string full of the
characters that make text grow, a long list of long strings, a big dict, a big int, a huge
count) as receiver, value and arguments; wrong types fail fast with a TypeError. For every
call: the memory it allocated (tracemalloc's peak) stays under MAX_CALL_BYTES, its CPU time
under the 100 ms a signal to the child may wait, and a refusal is the sandbox's own error,
never a MemoryError or the render budget running out.
"""

from __future__ import annotations

import inspect
import re
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import jinja2
import pytest
from jinja2.exceptions import SecurityError
from markupsafe import Markup

from tests.unit.test_render import address_space_limit
from tests.unit.test_sandbox import REFUSED
from vault_inject.render.limits import BudgetExceeded, render_budget
from vault_inject.render.methods import RULES
from vault_inject.render.renderer import Renderer

MAX_CALL_BYTES = 40 * 1000 * 1000  # SECURITY.md: under 150 MB for all of inject; one call far less
MAX_CALL_CPU_S = 0.1  # a re-render may delay a signal to the child by at most this
# The sandbox's refusals: a limit, a method or argument templates may not use.
SANDBOX_REFUSAL = (
    REFUSED + r"|not available in templates|in templates$|take the names|unsafe|not safely callable"
)

BIG = 1_000_000  # MAX_VALUE_CHARS: the largest string a template can make
# Tabs, newlines, spaces, markup and quote characters: what expandtabs, splitlines, split,
# indent, wordwrap, escaping and quoting grow or cut on.
TEXT = "a\tb\nc &<'\"," * (BIG // 11)
UNICODE_TEXT = "\u00df\t\n \u0130&" * (BIG // 6)  # ß -> SS, İ -> i̇: case mapping grows it
DATA = TEXT.encode()
LONG_LIST = [TEXT, "y" * BIG] * 500  # a billion characters in a few KB
BIG_DICT = dict.fromkeys(range(100_000), TEXT)  # MAX_ITEMS entries, each a long string
BIG_INT = 10**30_000  # about MAX_INT_BITS
COUNT = 10**9  # a width, a length, a count

RECEIVERS: dict[str, list[Any]] = {
    "str": [TEXT, UNICODE_TEXT],
    "bytes": [DATA],
    "int": [BIG_INT],
    "float": [1.5],
    "list": [LONG_LIST],
    "tuple": [tuple(LONG_LIST)],
    "dict": [BIG_DICT],
    "set": [set(range(100_000))],
    "frozenset": [frozenset(range(100_000))],
    "range": [range(100_000)],
    "Markup": [Markup(TEXT)],  # noqa: S704 (a constant: the point is its escaping)
}
FIRST = [COUNT, 1, TEXT, LONG_LIST]
SECOND = [COUNT, TEXT]


def _arguments(receiver: Any, arity: int) -> Iterator[tuple[Any, ...]]:
    """(), then every first argument, then every first with every second (up to ``arity``);
    a bytes receiver gets bytes where a str receiver gets text. A big container is what
    costs there: it gets the two arguments that multiply it (a count, a separator)."""
    if isinstance(receiver, list | tuple | dict | set | frozenset):
        first, second = [1, TEXT], []
    else:
        first, second = [DATA if a is TEXT and isinstance(receiver, bytes) else a for a in FIRST], SECOND
    yield ()
    for one in first if arity else ():
        yield (one,)
        for two in second if arity > 1 else ():
            yield (one, two)


def _arity(function: Any, skip: int = 0) -> int:
    """How many arguments a method (or a filter or test, after ``skip`` of them) takes, at
    most 2 (2 when Python cannot say)."""
    try:
        parameters = list(inspect.signature(function).parameters.values())[skip:]
    except (TypeError, ValueError):
        return 2
    kinds = [p.kind for p in parameters if p.kind is not inspect.Parameter.VAR_KEYWORD]
    return 2 if inspect.Parameter.VAR_POSITIONAL in kinds else min(len(kinds), 2)


def _allowed_methods() -> list[tuple[str, str]]:
    """Every method on the allow-list, and every str method Markup offers."""
    methods = [
        tuple(name.split("."))
        for name in RULES
        if hasattr(type(RECEIVERS[name.split(".")[0]][0]), name.split(".")[1])
    ]
    markup = [
        ("Markup", name)
        for name in dir(Markup)
        if not name.startswith("_") and callable(getattr(Markup, name))
    ]
    return sorted({*methods, *markup})  # type: ignore[arg-type]


def _environment() -> jinja2.Environment:
    return Renderer({}).compile("probe.j2", "").environment


ENVIRONMENT = _environment()
FILTERS = sorted(name for name in ENVIRONMENT.filters if not name.startswith("inject_"))
TESTS = sorted(name for name in ENVIRONMENT.tests if name.isidentifier())
FILTER_VALUES = [TEXT, UNICODE_TEXT, LONG_LIST, BIG_DICT, BIG_INT]


@pytest.fixture(scope="module")
def traced() -> Iterator[None]:
    """tracemalloc on for the module, under an address-space cap that turns a runaway into a
    MemoryError (judged a failure) rather than a swapping machine."""
    tracemalloc.start()
    try:
        with address_space_limit(768 * 1024 * 1024):
            yield
    finally:
        tracemalloc.stop()


def _run(template: jinja2.Template, variables: dict[str, Any]) -> tuple[BaseException | None, int, float]:
    """Render once: what it raised, the peak bytes it allocated (traced), its CPU seconds.

    tracemalloc slows a call that makes many small objects several times over, so a call
    that looks slow while traced is timed again untraced: that is the time it takes in inject."""
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    error, seconds = _render(template, variables)
    peak = tracemalloc.get_traced_memory()[1] - before
    if seconds > MAX_CALL_CPU_S / 2:
        tracemalloc.stop()
        try:
            error, seconds = _render(template, variables)
        finally:
            tracemalloc.start()
    return error, peak, seconds


def _render(template: jinja2.Template, variables: dict[str, Any]) -> tuple[BaseException | None, float]:
    started = time.thread_time()
    error: BaseException | None = None
    try:
        with render_budget(timeout_s=5):
            "".join(template.generate(**variables))
    except Exception as exc:  # every outcome is judged by _judge
        error = exc
    return error, time.thread_time() - started


def _judge(what: str, error: BaseException | None, peak: int, seconds: float) -> list[str]:
    problems = []
    if peak > MAX_CALL_BYTES:
        problems.append(f"{what}: allocated {peak / 1e6:.0f} MB")
    if seconds > MAX_CALL_CPU_S:
        problems.append(f"{what}: {seconds * 1000:.0f} ms of CPU")
    if isinstance(error, MemoryError | BudgetExceeded | RecursionError):
        problems.append(f"{what}: {type(error).__name__} (the call was not refused before it ran)")
    if isinstance(error, SecurityError) and not re.search(SANDBOX_REFUSAL, str(error)):
        problems.append(f"{what}: unexpected refusal {error}")
    return problems


def _passed(function: Any) -> int:
    """1 when Jinja passes a context or environment ahead of the value."""
    return 1 if hasattr(function, "jinja_pass_arg") else 0


def _shape(values: tuple[Any, ...]) -> str:
    """``(str*1000000, int)``: what the arguments were, never their text."""
    parts = [f"{type(v).__name__}*{len(v)}" if hasattr(v, "__len__") else type(v).__name__ for v in values]
    return "(" + ", ".join(parts) + ")"


METHOD_CALL = ENVIRONMENT.from_string("{% set r = (receiver|attr(name))(*args) %}")


@pytest.mark.parametrize(("kind", "name"), _allowed_methods(), ids=[".".join(m) for m in _allowed_methods()])
def test_every_allowed_method_with_large_arguments_stays_within_the_bounds(
    traced: None, kind: str, name: str
) -> None:
    """Each allowed method of each value type, called with large arguments: a small result,
    a sandbox refusal or a type error; never a large allocation or a long call."""
    problems: list[str] = []
    for receiver in RECEIVERS[kind]:
        for args in _arguments(receiver, _arity(getattr(type(receiver), name))):
            error, peak, seconds = _run(METHOD_CALL, {"receiver": receiver, "name": name, "args": args})
            problems += _judge(f"{kind}.{name}{_shape(args)} of {_shape((receiver,))}", error, peak, seconds)
    assert not problems, "\n".join(problems[:20])


@pytest.mark.parametrize("name", FILTERS)
def test_every_filter_with_large_arguments_stays_within_the_bounds(traced: None, name: str) -> None:
    """Each filter (Jinja's and inject's), given large values and arguments: a small result,
    a sandbox refusal or a type error; never a large allocation or a long call."""
    template = ENVIRONMENT.from_string("{% set r = value|" + name + "(*args) %}")
    arity = _arity(ENVIRONMENT.filters[name], _passed(ENVIRONMENT.filters[name]) + 1)
    problems: list[str] = []
    for value in FILTER_VALUES:
        for args in _arguments(value, arity):
            error, peak, seconds = _run(template, {"value": value, "args": args})
            problems += _judge(f"|{name}{_shape(args)} of {_shape((value,))}", error, peak, seconds)
    assert not problems, "\n".join(problems[:20])


@pytest.mark.parametrize("name", TESTS)
def test_every_test_with_large_arguments_stays_within_the_bounds(traced: None, name: str) -> None:
    """Each Jinja test (``is in``, ``is eq``...) with large operands stays within the bounds."""
    template = ENVIRONMENT.from_string("{% set r = value is " + name + "(*args) %}")
    arity = min(_arity(ENVIRONMENT.tests[name], _passed(ENVIRONMENT.tests[name]) + 1), 1)
    problems: list[str] = []
    for value in FILTER_VALUES:
        for args in _arguments(value, arity):
            error, peak, seconds = _run(template, {"value": value, "args": args})
            problems += _judge(f"is {name}{_shape(args)} of {_shape((value,))}", error, peak, seconds)
    assert not problems, "\n".join(problems[:20])
