"""Names computed in a template never reach a message: a key, path, variable name or request a
template computed (from a secret value, transformed so that no mask recognises it) is said to
be computed and nothing of it is shown; a name written literally in the template still is."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from tests.unit.test_transport import KV_ANSWER, MOUNT_INFO, Answer, FakeClock, Sent, answer, client_with
from vault_inject.cli.app import plan_lines
from vault_inject.errors import InjectError, RenderError, SecretError, SecretNotFound
from vault_inject.model import KvRead, Request, Secret, computed_in_template
from vault_inject.render.renderer import Rendered, Renderer

APP = "secret/app"
VALUE = "SuperSecretValue123"
COMPUTED = "computed in the template"


def transforms(value: str) -> set[str]:
    """The value and what a template can easily turn it into (none may be shown)."""
    return {
        value,
        value.upper(),
        value.lower(),
        value[::-1],
        value.swapcase(),
        base64.b64encode(value.encode()).decode(),
        base64.b64encode(value.encode()).decode().rstrip("="),
    }


def leaked(text: str, value: str = VALUE) -> list[str]:
    """The transforms of ``value`` that appear in ``text``."""
    return sorted(t for t in transforms(value) if t in text)


class FakeReader:
    """Secrets by path; a missing path fails the way a careless server adapter might: quoting it."""

    def __init__(self, secrets: Mapping[str, Mapping[str, Any]]) -> None:
        self._secrets = secrets

    def fetch(self, request: Request) -> Secret:
        assert isinstance(request, KvRead)
        if request.path not in self._secrets or request.version is not None:
            raise SecretNotFound(f"no secret at '{request.path}'")
        return Secret(path=request.path, data=dict(self._secrets[request.path]), version=1)


@pytest.fixture
def reader() -> FakeReader:
    return FakeReader({APP: {"pw": VALUE, "user": "app"}, f"secret/{VALUE.lower()}": {"x": "1"}})


def render(text: str, reader: FakeReader, environ: Mapping[str, str] | None = None) -> Rendered:
    renderer = Renderer(environ or {})
    return renderer.render_all({"/out/x": ("app.j2", renderer.compile("app.j2", text))}, [], reader)


def render_failure(text: str, reader: FakeReader) -> InjectError:
    with pytest.raises(InjectError) as info:
        render(text, reader)
    return info.value


PW = f"secret('{APP}').pw"


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        (f"{{{{ secret('{APP}')[{PW}|upper] }}}}", RenderError),
        (f"{{{{ secret('{APP}')[{PW}|reverse|join] }}}}", RenderError),
        (f"{{{{ secret('{APP}')[{PW}|b64encode] }}}}", RenderError),
        (f"{{{{ secret('{APP}')[({PW}).swapcase()] }}}}", RenderError),
        (f"{{{{ secret('{APP}').get('user')[{PW}|upper] }}}}", RenderError),
        (f"{{{{ secret_meta('{APP}')[{PW}|upper] }}}}", RenderError),
        (f"{{{{ {{'a': 1}}[{PW}|upper] }}}}", RenderError),
        (f"{{{{ secret({PW}|upper) }}}}", SecretNotFound),
        (f"{{{{ secret('secret/' ~ {PW}|upper) }}}}", SecretNotFound),
        (f"{{{{ secret('secret/' ~ {PW}) }}}}", SecretNotFound),
        (f"{{{{ secret('secret/' ~ {PW}|upper ~ '/../x') }}}}", RenderError),
        (f"{{{{ secret('{APP}', ({PW}|length) * 1000) }}}}", SecretNotFound),
        (f"{{{{ secret('secret/' ~ {PW}|lower)[{PW}|upper] }}}}", RenderError),
        (f"{{{{ secret_previous({PW}|upper) }}}}", SecretNotFound),
        (f"{{{{ env({PW}|upper) }}}}", RenderError),
        (f"{{{{ 'x'|attr('_' ~ {PW}|upper) }}}}", RenderError),
    ],
)
def test_errors_show_nothing_of_a_computed_name(reader: FakeReader, text: str, kind: type) -> None:
    """The attack of issue 24 #7: a transformed value used as a key or path is not shown."""
    error = render_failure(text, reader)
    assert isinstance(error, kind), error
    message = str(error)
    assert message.startswith("template 'app.j2' line 1: "), message
    assert leaked(message) == [], message


@pytest.mark.parametrize(
    "text",
    [
        f"{{{{ secret('{APP}')[{PW}|upper] }}}}",
        f"{{{{ secret({PW}|lower ~ 'x') }}}}",
        f"{{{{ secret_meta('{APP}')[{PW}|upper] }}}}",
        f"{{{{ env({PW}|upper) }}}}",
    ],
)
def test_a_computed_name_is_said_to_be_computed(reader: FakeReader, text: str) -> None:
    """What replaces the name tells the reader why it is not shown."""
    assert COMPUTED in str(render_failure(text, reader))


@pytest.mark.parametrize(
    ("text", "named"),
    [
        (f"{{{{ secret('{APP}')['nokey'] }}}}", "has no key 'nokey'"),
        (f"{{{{ secret('{APP}').nokey }}}}", "has no key 'nokey'"),
        (f"{{{{ secret('{APP}')|attr('nokey') }}}}", "no attribute 'nokey'"),
        (f"{{% set k = 'nokey' %}}{{{{ secret('{APP}')[k] }}}}", "has no key 'nokey'"),
        ("{{ secret('secret/nope') }}", "no secret at 'secret/nope'"),
        ("{% set p = 'secret/nope' %}{{ secret(p) }}", "no secret at 'secret/nope'"),
        ("{{ env('NOT_SET_HERE') }}", "'NOT_SET_HERE' is not set"),
        ("{{ secret('secret/../x') }}", "'secret/../x'"),
        ("{{ nothing }}", "'nothing' is undefined"),
        (f"{{{{ secret_meta('{APP}').nokey }}}}", "'nokey'"),
    ],
)
def test_a_literal_name_is_still_named(reader: FakeReader, text: str, named: str) -> None:
    """A key or path written in the template source is quoted, as before."""
    message = str(render_failure(text, reader))
    assert named in message, message
    assert f"secret '{APP}'" in message or "has no key" not in named


def test_plan_shows_nothing_of_a_computed_path(reader: FakeReader) -> None:
    """`inject plan` names the secrets an output reads: a computed one is said to be computed."""
    rendered = render(f"{{{{ secret('secret/' ~ {PW}|lower).x }}}}", reader)
    lines = plan_lines(rendered, lambda _path: None, {})
    text = "\n".join(lines)
    assert leaked(text) == [], text
    assert f"reads (a path {COMPUTED}) v1, {APP} v1" in text


def test_a_literal_path_read_through_a_variable_is_named_in_plan(reader: FakeReader) -> None:
    rendered = render(f"{{% set p = '{APP}' %}}{{{{ secret(p).user }}}}", reader)
    assert f"reads {APP} v1" in "\n".join(plan_lines(rendered, lambda _path: None, {}))


def test_requests_of_computed_paths_carry_no_name(reader: FakeReader) -> None:
    """What the render read (the engine's deps, logged by the loop) labels a computed path as such."""
    rendered = render(f"{{{{ secret('secret/' ~ {PW}|lower).x }}}}{{{{ {PW} }}}}", reader)
    labels = sorted(request.label for request in rendered.deps["/out/x"])
    assert leaked(" ".join(labels)) == [], labels
    assert APP in labels


def _server(clock: FakeClock, missing: bool) -> Callable[[Sent], Answer]:
    """A KV v2 server that fails once with a 503 (a retry is logged), then answers or says 404."""
    calls: list[Sent] = []

    def script(sent: Sent) -> Answer:
        if "sys/internal/ui/mounts" in sent.url:
            return answer(200, MOUNT_INFO)
        calls.append(sent)
        if len(calls) == 1:
            return answer(503, {"errors": []})
        return answer(404, {"errors": []}) if missing else answer(200, KV_ANSWER)

    return script


@pytest.mark.parametrize("missing", [False, True])
def test_the_server_adapter_shows_nothing_of_a_computed_path(
    caplog: pytest.LogCaptureFixture, missing: bool
) -> None:
    """Debug logs (the read, the retry) and the error of a computed read say it was computed."""
    clock = FakeClock()
    client, wire = client_with(clock, _server(clock, missing))
    request = computed_in_template(KvRead.of(f"secret/{VALUE.upper()}"))
    with caplog.at_level(logging.DEBUG, logger="vault_inject"):
        try:
            client.fetch(request)
            message = ""
        except SecretNotFound as exc:
            message = str(exc)
    assert any(VALUE.upper() in sent.url for sent in wire.calls)  # the server was asked for it
    assert leaked(caplog.text + message) == [], caplog.text + message
    assert COMPUTED in (message if missing else caplog.text)
    assert "retrying" in caplog.text
    assert missing or "read " in caplog.text


def test_a_secret_error_of_a_computed_path_keeps_its_kind(reader: FakeReader) -> None:
    """Hiding the path changes the message, never the class (so the exit code stays)."""
    error = render_failure(f"{{{{ secret({PW}|upper) }}}}", reader)
    assert isinstance(error, SecretError)
    assert error.exit_code == SecretError.exit_code


def test_the_engine_logs_a_computed_path_by_its_label(caplog: pytest.LogCaptureFixture) -> None:
    """Watch mode's change, lease and "older than" lines name a computed read as computed."""
    from tests.unit.loop_fakes import Rig
    from vault_inject.loop.lifecycle import _what
    from vault_inject.model import PkiIssue
    from vault_inject.render.engine import describe_change

    path = f"secret/{VALUE.lower()}"
    key = computed_in_template(KvRead(path))
    engine = Rig().engine
    with caplog.at_level(logging.DEBUG, logger="vault_inject"):
        changes = engine.absorb({key: Secret(path=path, data={"k": "1"}, version=3, kv_version=2)})
        engine.absorb({key: Secret(path=path, data={"k": "0"}, version=2, kv_version=2)})
    certificate = computed_in_template(PkiIssue.of(f"pki/{VALUE.lower()}", {}))
    text = caplog.text + " ".join(changes.values()) + describe_change(certificate, None, Secret(path, {}))
    text += _what(certificate)
    assert leaked(text) == [], text
    assert "older than v3" in caplog.text
    assert COMPUTED in caplog.text


@pytest.mark.parametrize(
    "text",
    [
        f"{{{{ secret('{APP}')['usr'] }}}}",
        f"{{{{ secret('{APP}').usr }}}}",
        f"{{% set k = 'usr' %}}{{{{ secret('{APP}')[k] }}}}",
    ],
)
def test_a_literal_missing_key_suggests_the_nearest_key(reader: FakeReader, text: str) -> None:
    """A misspelt key written in the template names the secret's nearest key (a name, never a value)."""
    message = str(render_failure(text, reader))
    assert message.endswith(f"secret '{APP}' has no key 'usr'; did you mean 'user'?"), message
    assert leaked(message) == [], message


def test_a_literal_key_far_from_every_key_gets_no_guess(reader: FakeReader) -> None:
    message = str(render_failure(f"{{{{ secret('{APP}')['zzzzzz'] }}}}", reader))
    assert message.endswith("has no key 'zzzzzz'"), message


@pytest.mark.parametrize(
    "text",
    [
        f"{{% set k = 'u' %}}{{{{ secret('{APP}')[k ~ 'sr'] }}}}",
        f"{{{{ secret('{APP}')[{PW}|upper] }}}}",
        f"{{{{ secret('{APP}')[{PW}[:2]] }}}}",
    ],
)
def test_a_computed_missing_key_gets_no_suggestion(reader: FakeReader, text: str) -> None:
    """A key the template computed is never guessed at, however close to a real key."""
    message = str(render_failure(text, reader))
    assert "did you mean" not in message, message
    assert f"has no key ({COMPUTED})" in message, message
