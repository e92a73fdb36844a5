"""Hostile and broken inputs found while hardening (several by the fuzzer): each ends in one
of our own errors naming the thing, never a traceback; plus the file-side guards (sweep on
every write, world-writable directories, text that cannot be written as UTF-8)."""

from __future__ import annotations

import datetime
import errno
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.test_render import FakeReader
from vault_inject.config.durations import parse_duration
from vault_inject.config.settings import CliOptions, build_config, parse_signal, parse_toml
from vault_inject.errors import FileWriteError, RenderError, UsageError
from vault_inject.files import write as files
from vault_inject.process import child
from vault_inject.refs import parse_ref
from vault_inject.render.renderer import MAX_ENV_ENTRY_BYTES, Renderer

APP = "secret/app"


def _render(text: str, secrets: dict[tuple[str, int | None], dict[str, str]] | None = None) -> str:
    renderer = Renderer({})
    template = renderer.compile("evil.j2", text)
    return renderer.render_all({"/out": ("evil.j2", template)}, [], FakeReader(secrets or {})).files["/out"]


# --- parsers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [[1], {"s": 1}, datetime.date(2024, 1, 1), None, 10**400],
    ids=["list", "table", "date", "none", "int-past-float"],
)
def test_duration_of_a_wrong_type_or_huge_int_is_a_usage_error(value: object) -> None:
    """A list, table, date or an int past a float's range as a duration is a UsageError, not a crash."""
    with pytest.raises(UsageError, match="--kill-timeout"):
        parse_duration(value, where="--kill-timeout")  # type: ignore[arg-type]


def test_reference_version_with_thousands_of_digits_is_a_usage_error() -> None:
    """`vault:p#k#<5000 digits>` is a UsageError naming the variable (int() would refuse to parse it)."""
    with pytest.raises(UsageError, match="env DB: version must be a positive integer"):
        parse_ref("vault:secret/app#key#" + "1" * 5000, where="env DB")


@pytest.mark.parametrize(
    "value",
    ["\u00b2", "\u0663", "9" * 5000, "SIG" + "1" * 30],
    ids=["superscript", "arabic-indic", "5000-digits", "sig-digits"],
)
def test_signal_of_odd_digits_is_a_usage_error(value: str) -> None:
    """Superscript or Arabic-Indic digits, or thousands of digits, as a signal are a UsageError."""
    with pytest.raises(UsageError, match="--reload-signal"):
        parse_signal(value, "--reload-signal")


@pytest.mark.parametrize("opener", ["[", "{a=", "[{b="])
def test_deeply_nested_toml_is_a_usage_error(opener: str) -> None:
    """Thousands of nested arrays or inline tables are a UsageError naming the file, not a RecursionError."""
    with pytest.raises(UsageError, match=r"config app\.toml: invalid TOML: .*nested too deeply"):
        parse_toml("x = " + opener * 5000, "app.toml")


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"template": [{"destination": "out\0.txt", "contents": "x"}]}, "template #1.destination"),
        ({"template": [{"destination": "o", "source": "a\0b"}]}, "template #1.source"),
        ({"auth": {"token_file": "/run/tok\0en"}}, "auth.token_file"),
        ({"child": {"user": "app\0"}}, "child.user"),
        ({"env": {"X": "a\0b"}}, "env.X"),
    ],
)
def test_nul_byte_anywhere_in_the_config_file_is_a_usage_error(data: dict[str, object], where: str) -> None:
    """TOML can spell a NUL byte (\\u0000); no path, user or value can hold one: UsageError naming the key."""
    with pytest.raises(UsageError, match=rf"config app\.toml: {where} contains a NUL byte"):
        build_config(CliOptions(), {}, data, config_path="app.toml", cwd="/srv")


@pytest.mark.parametrize(
    "spec",
    ["app\0", "1" * 5000, "\u00b2", "99999999999999999999999"],
    ids=["nul", "5000-digits", "superscript", "past-uid_t"],
)
def test_unusable_user_is_a_usage_error(spec: str) -> None:
    """A --user with a NUL byte, odd digits or an id past uid_t is a UsageError, not a ValueError."""
    with pytest.raises(UsageError, match="--user"):
        child.resolve_user(spec)


def test_too_big_environment_says_so() -> None:
    """execve's E2BIG names the cause (the rendered env vars), not just 'Argument list too long'."""
    error = child._command_error("app", errno.E2BIG)
    assert "environment" in str(error)
    assert error.exit_code == 126


# --- templates ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}",
        "{{ " + "[" * 3000 + "]" * 3000 + " }}",
        "{% if 1 %}" * 200 + "x" + "{% endif %}" * 200,
        "{% if 1 %}" * 2000 + "x" + "{% endif %}" * 2000,
    ],
)
def test_deeply_nested_template_is_a_render_error_at_compile_time(text: str) -> None:
    """Deep brackets or blocks are a RenderError naming the template, not a RecursionError/IndentationError."""
    with pytest.raises(RenderError, match=r"template 'evil\.j2': expressions or blocks nested too deeply"):
        Renderer({}).compile("evil.j2", text)


def test_unbounded_macro_recursion_is_a_render_error() -> None:
    """A macro calling itself forever is a RenderError naming the template and line."""
    with pytest.raises(RenderError, match=r"template 'evil.j2' line 1: .*too deeply nested"):
        _render("{% macro r(n) %}{{ r(n+1) }}{% endmacro %}{{ r(0) }}")


@pytest.mark.parametrize(
    "call",
    [
        "secret('secret/app/../../sys/policies/acl/root')",
        "secret('./secret/app')",
        "secret_meta('secret/../x')",
        "pki_cert('pki/../sys/issue/web', common_name='x')",
        "transit_decrypt('transit/../sys/x', 'vault:v1:abc')",
    ],
)
def test_dot_segments_in_template_paths_are_refused(call: str) -> None:
    """A secret path computed in a template (maybe from a secret's value) cannot climb with '..'."""
    with pytest.raises(RenderError, match=r"contains '\.' or '\.\.'"):
        _render("{{ " + call + " }}", {(APP, None): {"k": "v"}})


def test_secret_value_holding_dotdot_cannot_steer_a_read() -> None:
    """`secret(secret('a').next)` with next='secret/app/../../sys/x' is refused, the value masked."""
    hostile = "secret/app/../../sys/x"
    with pytest.raises(RenderError) as info:
        _render("{{ secret(secret('secret/app').next) }}", {(APP, None): {"next": hostile}})
    assert hostile not in str(info.value)


def test_env_value_over_the_kernel_limit_is_a_render_error() -> None:
    """A value execve cannot pass (over 128 KiB) fails naming the variable, not an E2BIG at spawn."""
    renderer = Renderer({})
    big = "x" * MAX_ENV_ENTRY_BYTES
    with pytest.raises(RenderError, match=r"env BIG: the value is \d+ bytes; Linux passes at most 128 KiB"):
        renderer.render_all(
            {}, [renderer.env_spec("BIG", "vault:secret/app#k")], FakeReader({(APP, None): {"k": big}})
        )
    fits = "y" * (MAX_ENV_ENTRY_BYTES - 10)
    rendered = renderer.render_all(
        {}, [renderer.env_spec("OK", "vault:secret/app#k")], FakeReader({(APP, None): {"k": fits}})
    )
    assert rendered.env["OK"] == fits


# --- files --------------------------------------------------------------------------------


@pytest.fixture
def file_log() -> Iterator[list[str]]:
    """Messages logged by vault_inject (files and safepath) during the test."""
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    logger = logging.getLogger("vault_inject")  # files and safepath
    handler, old_level = Collect(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def test_world_writable_directory_is_warned_about_once(tmp_path: Path, file_log: list[str]) -> None:
    """A 0777 destination directory (no sticky bit) allowed by allow_shared_dir gets one warning
    naming it, however many writes (without the option it is refused: test_files_hostile.py)."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    for n in range(3):
        files.write_all(
            [
                files.FileWrite(destination=str(shared / "a.conf"), content=f"a{n}\n", allow_shared_dir=True),
                files.FileWrite(destination=str(shared / "b.conf"), content=f"b{n}\n", allow_shared_dir=True),
            ]
        )
    warnings = [m for m in file_log if "world-writable" in m]
    assert warnings == [warnings[0]]
    assert str(shared) in warnings[0]
    assert (shared / "a.conf").read_text() == "a2\n"


def test_sticky_or_private_directory_is_not_warned_about(tmp_path: Path, file_log: list[str]) -> None:
    """A world-writable directory with the sticky bit (like /tmp), or a private one, gets no warning."""
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    files.write_all([files.FileWrite(destination=str(sticky / "a.conf"), content="a\n")])
    files.write_all([files.FileWrite(destination=str(tmp_path / "private" / "b.conf"), content="b\n")])
    assert not [m for m in file_log if "world-writable" in m]


def test_unchanged_write_still_sweeps_abandoned_temp_files(tmp_path: Path) -> None:
    """A render whose content did not change still removes temp files a killed inject left behind."""
    destination = tmp_path / "app.yml"
    files.write_all([files.FileWrite(destination=str(destination), content="same\n")])
    stale = tmp_path / ".inject-killed.tmp"
    stale.write_text("half a secret")
    past = time.time() - 60
    os.utime(stale, (past, past))
    commit = files.write_all([files.FileWrite(destination=str(destination), content="same\n")])
    assert commit.changed == []
    assert not stale.exists()


def test_text_that_is_not_utf8_is_a_file_write_error(tmp_path: Path) -> None:
    """Undecodable bytes (env() of a non-UTF-8 variable) fail naming the file; nothing is written."""
    first = tmp_path / "first.txt"
    with pytest.raises(FileWriteError, match=r"bad\.txt: the rendered text is not valid UTF-8"):
        files.write_all(
            [
                files.FileWrite(destination=str(first), content="fine\n"),
                files.FileWrite(destination=str(tmp_path / "bad.txt"), content="a\udcffb"),
            ]
        )
    assert os.listdir(tmp_path) == []
