"""The error boundary: errors raised while a template reads a secret say where (template and
line) and keep their class and attributes; causes are chained only where they cannot carry
a secret; our own input files are read through one helper."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from vault_inject import errors
from vault_inject.client.vault import Secret
from vault_inject.errors import (
    AuthError,
    InjectError,
    PermissionDenied,
    SecretError,
    TransientError,
    UnreachableError,
    UsageError,
)
from vault_inject.files.read import read_text
from vault_inject.model import Request
from vault_inject.render.renderer import ReadCache, Renderer

TEMPLATE = "app.yml.j2"
LINE_OF_THE_READ = 2


class RaisingReader:
    """A reader whose every read raises the error ``make`` builds."""

    def __init__(self, make: Callable[[], InjectError]) -> None:
        self.make = make

    def fetch(self, request: Request) -> Secret:
        raise self.make()


def _render_raising(make: Callable[[], InjectError]) -> InjectError:
    renderer = Renderer({})
    template = renderer.compile(TEMPLATE, "first line\n{{ secret('secret/app').password }}\n")
    with pytest.raises(InjectError) as caught:
        renderer.render_one(TEMPLATE, template, ReadCache(RaisingReader(make)))
    return caught.value


def test_permission_denied_in_a_template_keeps_token_rejected() -> None:
    """A 403 for the token itself, raised inside a template, still says token_rejected (the loop re-logs in on it)."""
    error = _render_raising(lambda: PermissionDenied("permission denied on secret/app", token_rejected=True))
    assert type(error) is PermissionDenied
    assert error.token_rejected is True
    assert str(error) == f"template '{TEMPLATE}' line {LINE_OF_THE_READ}: permission denied on secret/app"


@pytest.mark.parametrize(
    "make",
    [
        lambda: TransientError("the server did not answer"),
        lambda: UnreachableError("the server did not answer"),
        lambda: UsageError("the server did not answer"),
        lambda: AuthError("the server did not answer"),
    ],
)
def test_every_inject_error_from_a_template_names_template_and_line(make: Callable[[], InjectError]) -> None:
    """Not only SecretErrors: a transient, unreachable or usage error raised by a read inside a template names template and line and keeps its class."""
    expected = make()
    error = _render_raising(make)
    assert type(error) is type(expected)
    assert error.exit_code == expected.exit_code
    assert str(error) == f"template '{TEMPLATE}' line {LINE_OF_THE_READ}: the server did not answer"


def test_an_error_from_a_template_does_not_chain_its_cause() -> None:
    """The located error does not chain the original (whose message could quote a computed path)."""
    error = _render_raising(lambda: SecretError("no secret at secret/app"))
    assert error.__cause__ is None
    assert error.__suppress_context__ is True


def test_read_text_maps_a_missing_file_and_chains_the_oserror(tmp_path: Path) -> None:
    """A missing input file is one UsageError naming what and where; the OSError (no content) is chained."""
    with pytest.raises(UsageError, match=r"^config file .*/nope.toml: not found$") as caught:
        read_text(str(tmp_path / "nope.toml"), "config file")
    assert isinstance(caught.value.__cause__, FileNotFoundError)


def test_read_text_does_not_chain_undecodable_bytes(tmp_path: Path) -> None:
    """A credential file that is not UTF-8 is an error of the asked class without its bytes anywhere (no chained UnicodeDecodeError)."""
    path = tmp_path / "secret_id"
    path.write_bytes(b"\xffsecret-bytes\xfe")
    with pytest.raises(AuthError, match="not UTF-8 text") as caught:
        read_text(str(path), "secret_id file", error=AuthError)
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__ is True


def test_read_text_reads_utf8(tmp_path: Path) -> None:
    """A readable UTF-8 file comes back as its text."""
    path = tmp_path / "t.j2"
    path.write_text("héllo\n", encoding="utf-8")
    assert read_text(str(path), "template") == "héllo\n"


def test_the_tree_drawing_names_every_error_class() -> None:
    """errors.py's docstring draws every exception class it defines."""
    classes = [
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, Exception)
    ]
    assert classes, "no classes found"
    drawing = errors.__doc__ or ""
    missing = [name for name in classes if f" {name} " not in drawing.replace("─", " ")]
    assert missing == []
