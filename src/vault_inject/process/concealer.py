"""Replacing secret values in a stream of bytes (the child's output), chunk by chunk.

A ``Concealer`` gets the child's output in whatever pieces ``read`` returns and gives back
bytes to write, with every occurrence of a value, of its base64 forms and of its
URL-encoded forms replaced by ``<concealed by inject>``. The output for any way of cutting
the stream into chunks is the output for the whole stream at once: a value split across
reads is still replaced. To get there it holds back only the bytes that could still be the
start of a form (a suffix of what it has that is a prefix of a form): everything else is
given back at once, so a line is never delayed waiting for more output, and what it holds
is always shorter than the longest form.

Matching is leftmost first, the longest form at a position winning (a value inside another
is replaced as part of the longer one). Pure: no I/O; ``process.relay`` does the reading.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

from ..log import MIN_SECRET_CHARS

CONCEALED = b"<concealed by inject>"
MIN_FORM_BYTES = MIN_SECRET_CHARS  # shorter forms would mangle ordinary output


def forms_of(value: str) -> frozenset[bytes]:
    """The byte strings that reveal ``value``: its UTF-8 bytes, its base64 (standard and
    URL-safe; alone, and the characters that only it decides at each of the three alignments
    inside a longer encoded text) and its URL encodings (``quote`` with and without ``/``
    safe, ``quote_plus``, upper and lower case escapes). Forms shorter than
    ``MIN_FORM_BYTES`` are left out, and so is a value shorter than ``MIN_SECRET_CHARS``
    (the rule of the logs)."""
    if len(value) < MIN_SECRET_CHARS:
        return frozenset()
    raw = value.encode()
    forms = {raw}
    for pad in range(3):
        encoded = base64.b64encode(b"\0" * pad + raw)
        start = -(-8 * pad // 6)  # the first character made of the value's bits only
        end = 8 * (pad + len(raw)) // 6  # past the last such character
        core = encoded[start:end]
        forms |= {core, core.translate(_URLSAFE)}
    alone = base64.b64encode(raw)
    forms |= {alone, alone.translate(_URLSAFE), alone.rstrip(b"=").translate(_URLSAFE)}
    for text in (quote(value, safe=""), quote(value, safe="/"), quote_plus(value)):
        forms |= {text.encode(), _lower_escapes(text).encode()}
    return frozenset(form for form in forms if len(form) >= MIN_FORM_BYTES)


_HEAD = 16  # bytes compared before a whole candidate start is
_URLSAFE = bytes.maketrans(b"+/", b"-_")
_ESCAPE = re.compile(r"%[0-9A-F]{2}")


def _lower_escapes(text: str) -> str:
    return _ESCAPE.sub(lambda m: m.group(0).lower(), text)


class Concealer:
    """One stream's replacement state: the forms to replace and the bytes held back."""

    def __init__(self, values: Iterable[str] = (), *, mask: bytes = CONCEALED) -> None:
        self._mask = mask
        self._held = b""
        self._values: frozenset[str] = frozenset()
        self._forms: tuple[bytes, ...] = ()
        self.use(values)

    @property
    def held(self) -> int:
        """How many bytes are held back now (always fewer than the longest form)."""
        return len(self._held)

    @property
    def longest(self) -> int:
        """The length of the longest form (0 with no values)."""
        return len(self._forms[0]) if self._forms else 0

    def use(self, values: Iterable[str]) -> None:
        """Replace exactly ``values`` from now on (a rotated secret's new value, say). Bytes
        already held are matched against the new forms."""
        wanted = frozenset(values)
        if wanted == self._values:
            return
        self._values = wanted
        forms = set().union(*(forms_of(value) for value in wanted)) if wanted else set()
        self._forms = tuple(sorted(forms, key=lambda form: (-len(form), form)))

    def feed(self, chunk: bytes) -> bytes:
        """The bytes that can be written now, after ``chunk``."""
        return self._run(self._held + chunk, final=False)

    def finish(self) -> bytes:
        """The end of the stream: what is still held, replaced where a form is whole."""
        return self._run(self._held, final=True)

    def _run(self, data: bytes, *, final: bool) -> bytes:
        self._held = b""
        forms = self._forms
        if not forms:
            return data
        out: list[bytes] = []
        pos = 0
        undecided = len(data) if final else self._first_undecided(data, 0)
        # each form's next occurrence starting before ``undecided`` (-1: none); one bytes.find
        # per form and read, again only for the forms a replacement ran over
        ahead = [data.find(form, 0, undecided - 1 + len(form)) for form in forms]
        while True:
            best, which = -1, -1
            for index, at in enumerate(ahead):  # leftmost; at a tie the longer (sorted first)
                if at >= 0 and (best < 0 or at < best):
                    best, which = at, index
            if best < 0:
                out.append(data[pos:undecided])
                self._held = data[undecided:]
                return b"".join(out)
            out += (data[pos:best], self._mask)
            pos = best + len(forms[which])
            if pos > undecided:  # the replacement ran past it: look again from there
                undecided = self._first_undecided(data, pos)
                ahead = [data.find(form, pos, undecided - 1 + len(form)) for form in forms]
                continue
            for index, at in enumerate(ahead):
                if 0 <= at < pos:
                    ahead[index] = data.find(forms[index], pos, undecided - 1 + len(forms[index]))

    def _first_undecided(self, data: bytes, pos: int) -> int:
        """The first position at or after ``pos`` where a form could start and run past the
        end of ``data`` (so more bytes decide whether it matches); ``len(data)`` if none."""
        size = len(data)
        first = size
        for form in self._forms:
            start = max(pos, size - len(form) + 1)
            while start < first:
                at = data.find(form[:1], start, first)
                if at < 0:
                    break
                # a few bytes first: a long form (a PEM key) is not copied at every candidate
                if data.startswith(form[: min(_HEAD, size - at)], at) and form.startswith(data[at:]):
                    first = at
                    break
                start = at + 1
        return first
