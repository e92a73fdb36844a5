"""Hostile templates fail cleanly and fast: no huge values, no code, no exhausted machine."""

from __future__ import annotations

import pytest

from tests.unit.test_render import FakeReader, address_space_limit
from vault_inject.errors import RenderError
from vault_inject.render import Renderer

HOSTILE = [
    "{{ 'a' * 10**10 }}",
    "{{ 10**10 * 'a' }}",
    "{{ [1] * 10**9 }}",
    "{{ 10 ** 100000000 }}",
    "{{ (10 ** 20000) * (10 ** 20000) }}",
    "{{ '%999999999d' % 1 }}",
    "{{ '%*d' % (999999999, 1) }}",
    "{{ '{:>999999999}'.format(1) }}",
    "{{ 'x'.center(999999999) }}",
    "{{ 'x'.ljust(999999999) }}",
    "{{ 'x' | center(999999999) }}",
    "{{ 'x' | indent(999999999) }}",
    "{{ '%999999999s' | format('x') }}",
    "{{ ('a' * 1000) | replace('a', 'b' * 10000) }}",
    "{{ ('a' * 1000).replace('a', 'b' * 10000) }}",
    "{% for i in range(100000) %}{{ 'y' * 1000 }}{% endfor %}",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_template_is_refused_quickly_within_memory(text: str) -> None:
    """Each amplification trick is refused (not folded at compile time, not run) within 256 MiB."""
    renderer = Renderer({})
    with address_space_limit(256 * 1024 * 1024):
        template = renderer.compile("evil.j2", text)
        with pytest.raises(RenderError, match=r"would be too large|output larger than"):
            renderer.render_all({"/out": ("evil.j2", template)}, [], FakeReader({}))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{{ 'ab' * 3 }}", "ababab"),
        ("{{ 2 ** 10 }}", "1024"),
        ("{{ '%05d' % 42 }}", "00042"),
        ("{{ 'x' | center(5) }}", "  x  "),
        ("{{ 'a-b' | replace('-', '_') }}", "a_b"),
        ("{{ '{:>4}'.format(7) }}", "   7"),
    ],
)
def test_ordinary_uses_of_the_same_operations_still_work(text: str, expected: str) -> None:
    """The limits only refuse huge results: everyday repetition, powers and padding render."""
    renderer = Renderer({})
    template = renderer.compile("ok.j2", text)
    assert renderer.render_all({"/out": ("ok.j2", template)}, [], FakeReader({})).files["/out"] == expected
