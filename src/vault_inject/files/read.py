"""Reading inject's own input files (config, templates, secrets files, credential files):
one place that turns the failures into one-line errors naming the file.

The causes are chained (``from exc``) for OSError, which names the file and the reason
only; never for UnicodeDecodeError, which carries the file's bytes (a credential file's
bytes are the credential)."""

from __future__ import annotations

from ..errors import InjectError, UsageError


def read_text(path: str, what: str, *, error: type[InjectError] = UsageError) -> str:
    """The UTF-8 text of ``path``; ``error`` saying ``what`` and ``path`` when it cannot be read."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError as exc:
        raise error(f"{what} {path}: not found") from exc
    except UnicodeDecodeError:
        raise error(f"{what} {path}: not UTF-8 text") from None
    except OSError as exc:
        raise error(f"{what} {path}: {exc.strerror}") from exc
