"""Checks of env values that need no template engine and no server values: whether a value
is a template, and whether a process can receive it. Apart from ``outputs`` so that the
plain PID 1 path (``inject -- CMD`` with only literal env values) loads only this. Pure."""

from __future__ import annotations

from ..errors import RenderError
from ..refs import looks_like_ref

MAX_ENV_ENTRY_BYTES = 128 * 1024  # the kernel's MAX_ARG_STRLEN for one "NAME=value\0"


def is_template_text(raw: str) -> bool:
    """An env value with Jinja markup is compiled as a template (unless it is a reference)."""
    return ("{{" in raw or "{%" in raw) and not looks_like_ref(raw)


def checked_env(name: str, text: str) -> str:
    """``text`` if a process can receive it as ``name``'s value, else RenderError."""
    if "\0" in text:
        raise RenderError(f"env {name}: the value contains a NUL byte, which no process can receive")
    size = _env_entry_bytes(name, text)
    if size > MAX_ENV_ENTRY_BYTES:
        raise RenderError(
            f"env {name}: the value is {size} bytes; Linux passes at most "
            f"{MAX_ENV_ENTRY_BYTES // 1024} KiB per environment variable (render it to a file instead)"
        )
    return text


def _env_entry_bytes(name: str, value: str) -> int:
    """Bytes of ``NAME=value\\0`` as execve receives it."""
    return len(f"{name}={value}".encode(errors="surrogatepass")) + 1
