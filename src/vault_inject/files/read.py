"""Reading inject's own input files (config, templates, secrets files, credential files):
one place that turns the failures into one-line errors naming the file.

The causes are chained (``from exc``) for OSError, which names the file and the reason
only; never for UnicodeDecodeError, which carries the file's bytes (a credential file's
bytes are the credential)."""

from __future__ import annotations

import os
from typing import TextIO

from ..errors import InjectError, UsageError

TRUST_HINT = (
    "as root inject reads it only if no other user can change it "
    "(fix the owner or mode, or accept it with --trust-config or INJECT_TRUST_CONFIG=1)"
)


def read_text(
    path: str, what: str, *, error: type[InjectError] = UsageError, refuse_untrusted: bool = False
) -> str:
    """The UTF-8 text of ``path``; ``error`` saying ``what`` and ``path`` when it cannot be read.

    With ``refuse_untrusted``, inject running as root reads the file only if no user but
    root could have written it (``trusted``): a config file or template source decides
    what root writes where and which commands it runs."""
    try:
        with _open(path, what, error, checked=refuse_untrusted and os.geteuid() == 0) as handle:
            return handle.read()
    except FileNotFoundError as exc:
        raise error(f"{what} {path}: not found") from exc
    except UnicodeDecodeError:
        raise error(f"{what} {path}: not UTF-8 text") from None
    except OSError as exc:
        raise error(f"{what} {path}: {exc.strerror}") from exc


def _open(path: str, what: str, error: type[InjectError], *, checked: bool) -> TextIO:
    if not checked:
        return open(path, encoding="utf-8")
    from . import trusted  # only as root, only for the files that decide what root does

    try:
        return open(trusted.open_trusted(path), encoding="utf-8")
    except trusted.Untrusted as exc:
        raise error(f"{what} {path}: {exc}; {TRUST_HINT}") from None
