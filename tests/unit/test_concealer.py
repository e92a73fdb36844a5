"""The streaming replacement of secret values in the child's output (process.concealer):
the same bytes out for every way of cutting the stream, nothing held that cannot start a
value, the base64 and URL forms, binary data and very long lines."""

from __future__ import annotations

import base64
import random
import re
from urllib.parse import quote, quote_plus

import pytest

from vault_inject.process.concealer import CONCEALED, Concealer, forms_of

SECRET = "s3cr3t-P@ss/word+1"
OTHER = "hunter2hunter2"


def reference(data: bytes, values: list[str]) -> bytes:
    """The whole stream at once, the slow obvious way: at each position the longest form
    that matches there is replaced, else one byte is kept."""
    forms = sorted({f for v in values for f in forms_of(v)}, key=len, reverse=True)
    out, i = bytearray(), 0
    while i < len(data):
        hit = next((f for f in forms if data.startswith(f, i)), None)
        if hit is None:
            out.append(data[i])
            i += 1
        else:
            out += CONCEALED
            i += len(hit)
    return bytes(out)


def streamed(chunks: list[bytes], values: list[str]) -> bytes:
    """``chunks`` through one Concealer, checking the hold-back bound after each."""
    concealer = Concealer(values)
    out = []
    for chunk in chunks:
        out.append(concealer.feed(chunk))
        assert concealer.held < max(concealer.longest, 1)
    out.append(concealer.finish())
    assert concealer.held == 0
    return b"".join(out)


def every_split(data: bytes, values: list[str]) -> None:
    """Cut in two at every position, and one byte at a time: always the reference."""
    expected = reference(data, values)
    for cut in range(len(data) + 1):
        assert streamed([data[:cut], data[cut:]], values) == expected, cut
    assert streamed([data[i : i + 1] for i in range(len(data))], values) == expected


def test_a_value_is_replaced_wherever_the_stream_is_cut() -> None:
    """The value in a line, cut at every byte (also one byte per read), is never written."""
    data = f"password is {SECRET}\nbye\n".encode()
    every_split(data, [SECRET])
    assert streamed([data], [SECRET]) == b"password is " + CONCEALED + b"\nbye\n"


def test_base64_forms_are_replaced_alone_and_inside_longer_text() -> None:
    """``printf %s "$PW" | base64`` and the base64 of a longer text holding it (any of the
    three alignments) never show the value's encoded bits."""
    raw = SECRET.encode()
    for prefix in (b"", b"u", b"us", b"user:"):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            encoded = encode(prefix + raw + b"\n")
            out = streamed([encoded], [SECRET])
            assert CONCEALED in out, (prefix, encode)
            every_split(encoded + b"\n", [SECRET])
    padded = base64.b64encode(raw) + b"\n"
    assert streamed([padded], [SECRET]) == CONCEALED + b"\n"


def test_url_encoded_forms_are_replaced() -> None:
    """quote (with and without ``/`` safe, upper or lower case escapes) and quote_plus."""
    lower = re.sub("%[0-9A-F]{2}", lambda m: m.group(0).lower(), quote(SECRET, safe=""))
    for text in (quote(SECRET, safe=""), quote(SECRET), quote_plus(SECRET), lower):
        line = f"GET /login?pw={text}&x=1\n".encode()
        assert streamed([line], [SECRET]) == b"GET /login?pw=" + CONCEALED + b"&x=1\n", text
        every_split(line, [SECRET])


def test_overlapping_and_nested_values() -> None:
    """Two values that overlap, and one inside another: leftmost first, the longest at a
    position wins, the same for every cut."""
    values = ["abcdef", "cdefgh", "xxabcdefxx"]
    for data in (b"..abcdefgh..", b"xxabcdefxxgh", b"abcdcdefgh", b"cdefabcdef"):
        every_split(data, values)
    assert streamed([b"..abcdefgh.."], values) == b".." + CONCEALED + b"gh.."
    assert streamed([b"xxabcdefxx"], values) == CONCEALED


def test_a_value_repeating_its_own_start() -> None:
    """A value whose start repeats (``aaab``) in a run of ``a``: found at every cut."""
    every_split(b"aaaaaaab aaab aab", ["aaab"])


def test_output_that_cannot_start_a_value_is_given_back_at_once() -> None:
    """Nothing is held that could not begin a form: a line with none is written whole, and
    only the possible start of a value waits for the next read."""
    concealer = Concealer([SECRET])
    assert concealer.feed(b"hello world\n") == b"hello world\n"
    assert concealer.held == 0
    assert concealer.feed(b"pw=s3cr") == b"pw="
    assert concealer.held == len("s3cr")
    assert concealer.feed(b"3t-P@ss/word+1 ok\n") == CONCEALED + b" ok\n"
    assert concealer.feed(b"s3c") == b""
    assert concealer.finish() == b"s3c"  # the end of the stream: the start alone is no value


def test_binary_data_and_invalid_utf8() -> None:
    """Random bytes (not UTF-8) with the values scattered in them: the same as the whole
    stream at once, for random cuts."""
    rng = random.Random(26)
    values = [SECRET, OTHER, "ünïcødé-secret"]
    pieces = []
    for _ in range(200):
        pieces.append(rng.randbytes(rng.randint(0, 40)))
        pieces.append(rng.choice([f.encode() if isinstance(f, str) else f for f in values]))
    data = b"".join(pieces)
    expected = reference(data, values)
    assert SECRET.encode() not in expected
    assert "ünïcødé-secret".encode() not in expected
    for _ in range(30):
        cuts = sorted(rng.sample(range(len(data)), 50))
        chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        assert streamed(chunks, values) == expected


def test_a_very_long_line_is_streamed_with_bounded_holding() -> None:
    """A 4 MB line without a newline, read 64 KiB at a time: the values in it replaced, each
    read's bytes given back but for fewer than the longest form."""
    filler = b"x" * 65_000
    data = (filler + SECRET.encode() + base64.b64encode(OTHER.encode())) * 60
    chunks = [data[i : i + 65_536] for i in range(0, len(data), 65_536)]
    concealer = Concealer([SECRET, OTHER])
    written = 0
    for chunk in chunks:
        written += len(concealer.feed(chunk))
        assert concealer.held < concealer.longest
    assert streamed(chunks, [SECRET, OTHER]) == (filler + CONCEALED + CONCEALED) * 60
    assert written > 0


def test_a_value_longer_than_a_read_is_replaced() -> None:
    """A 100 KB value (a bundle of keys, say) spread over several 64 KiB reads, with text
    around it that shares its first bytes: replaced once, the text around intact."""
    rng = random.Random(7)
    value = "-----BEGIN " + "".join(rng.choice("ABCDEFGHabcdefgh0123456789") for _ in range(100_000))
    data = b"-----BEGIN CERT\n" * 500 + value.encode() + b"\n-----BEGIN tail\n"
    chunks = [data[i : i + 65_536] for i in range(0, len(data), 65_536)]
    out = streamed(chunks, [value])
    assert out == b"-----BEGIN CERT\n" * 500 + CONCEALED + b"\n-----BEGIN tail\n"
    assert streamed([data[i : i + 4096] for i in range(0, len(data), 4096)], [value]) == out


def test_short_values_are_left_alone() -> None:
    """Values of 1-3 characters (as in the logs) are not replaced: they would mangle output."""
    assert forms_of("abc") == frozenset()
    assert streamed([b"abc abc\n"], ["abc"]) == b"abc abc\n"


def test_no_values_passes_everything_through() -> None:
    """Without values the bytes pass unchanged and nothing is held."""
    concealer = Concealer()
    assert concealer.feed(b"anything") == b"anything"
    assert concealer.held == 0
    assert concealer.finish() == b""


def test_new_values_apply_from_the_next_read_and_to_what_is_held() -> None:
    """A rotated secret: the new value is replaced from then on, the held start of the old
    one is matched against the new forms."""
    concealer = Concealer(["old-value-1"])
    assert concealer.feed(b"old-value-1 x old-val") == CONCEALED + b" x "
    concealer.use(["old-valve-9"])
    assert concealer.feed(b"ve-9 old-value-1\n") == CONCEALED + b" old-value-1\n"


@pytest.mark.parametrize("value", ["abcd", SECRET, "ünï-ç", "a" * 300])
def test_every_form_of_a_value_is_replaced_at_every_cut(value: str) -> None:
    """Each form of the value, between text, cut at every position."""
    for form in sorted(forms_of(value)):
        every_split(b"<" + form + b">", [value])
        assert form not in streamed([b"<" + form + b">"], [value])
