"""Rendering templates and env values in the Jinja sandbox."""

from __future__ import annotations

import contextlib
import resource
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jinja2
import pytest

from vault_inject.client.vault import Secret
from vault_inject.errors import RenderError, SecretNotFound, UsageError
from vault_inject.model import KvRead, Request
from vault_inject.render.renderer import EnvSpec, ReadCache, Rendered, Renderer

APP = "secret/app"
DB = "database/creds/readonly"
PASSWORD = "hunter2-Zq8xK"
DB_PASSWORD = "A1a-dynamic-9fQ"


class FakeReader:
    """Returns Secrets from a dict keyed by (path, version) and counts every read."""

    def __init__(self, secrets: Mapping[tuple[str, int | None], Mapping[str, Any]]) -> None:
        self._secrets = secrets
        self.reads: list[tuple[str, int | None]] = []

    @property
    def values(self) -> set[str]:
        """Every string value this reader can return (none may appear in an error)."""
        return {v for data in self._secrets.values() for v in data.values() if isinstance(v, str)}

    def fetch(self, request: Request) -> Secret:
        assert isinstance(request, KvRead)
        path, version = request.path, request.version
        self.reads.append((path, version))
        if (path, version) not in self._secrets:
            raise SecretNotFound(f"no secret at {path}")
        return Secret(path=path, data=dict(self._secrets[(path, version)]), version=version or 3)


@pytest.fixture
def reader() -> FakeReader:
    """A reader with a KV secret (two versions) and a dynamic database secret."""
    return FakeReader(
        {
            (APP, None): {"user": "appuser-K3", "password": PASSWORD, "html": "<&>", "b64": "aGVsbG8="},
            (APP, 2): {"user": "appuser-K3", "password": "old-pass-v2-77"},
            (DB, None): {"username": "v-ro-xyz", "password": DB_PASSWORD},
        }
    )


@pytest.fixture
def renderer() -> Renderer:
    """A renderer whose own environment has HOME and REGION set."""
    return Renderer({"HOME": "/home/app", "REGION": "eu-west-1"})


def render_text(renderer: Renderer, reader: FakeReader, text: str, name: str = "app.yml.j2") -> str:
    """Render one template text against ``reader`` and return the output."""
    out = renderer.render_all({"/out/x": (name, renderer.compile(name, text))}, [], reader)
    return out.files["/out/x"]


def render_error(renderer: Renderer, reader: FakeReader, text: str, name: str = "app.yml.j2") -> str:
    """Render ``text``, expecting a RenderError; return its message."""
    with pytest.raises(RenderError) as info:
        render_text(renderer, reader, text, name)
    return str(info.value)


# --- secret() ---------------------------------------------------------------------------


def test_secret_attribute_and_item_access(renderer: Renderer, reader: FakeReader) -> None:
    """secret(path) gives a mapping usable as ``s.key`` and ``s['key']``."""
    text = "{{ secret('secret/app').user }}:{{ secret('secret/app')['password'] }}"
    assert render_text(renderer, reader, text) == f"appuser-K3:{PASSWORD}"


def test_secret_with_version(renderer: Renderer, reader: FakeReader) -> None:
    """secret(path, version) reads that version."""
    assert render_text(renderer, reader, "{{ secret('secret/app', 2).password }}") == "old-pass-v2-77"
    assert reader.reads == [(APP, 2)]


def test_secret_mapping_iterates_keys_and_get_has_default(renderer: Renderer, reader: FakeReader) -> None:
    """The secret mapping iterates its keys and .get() returns a default for a missing key."""
    text = "{{ secret('database/creds/readonly') | list | join(',') }} {{ secret('secret/app').get('nope', 'dflt') }}"
    assert render_text(renderer, reader, text) == "username,password dflt"


def test_secret_meta_gives_version_not_values(renderer: Renderer, reader: FakeReader) -> None:
    """secret_meta(path) exposes the version and path of the read."""
    text = "{{ secret_meta('secret/app', 2).version }} {{ secret_meta('secret/app').path }}"
    assert render_text(renderer, reader, text) == "2 secret/app"


def test_each_path_and_version_read_once_per_render(renderer: Renderer, reader: FakeReader) -> None:
    """Within one render_all each distinct (path, version) is read once, shared by templates and env."""
    templates = {
        "/out/a": (
            "a.j2",
            renderer.compile("a.j2", "{{ secret('secret/app').user }} {{ secret('/secret/app/').password }}"),
        ),
        "/out/b": ("b.j2", renderer.compile("b.j2", "{{ secret('database/creds/readonly').username }}")),
        "/out/c": (
            "c.j2",
            renderer.compile(
                "c.j2", "{{ secret('secret/app', 2).user }}{{ secret('secret/app', 2).password }}"
            ),
        ),
    }
    env = [
        renderer.env_spec("DB_USER", "vault:database/creds/readonly#username"),
        renderer.env_spec("DB_PASS", "vault:database/creds/readonly#password"),
        renderer.env_spec("APP_PASS", "bao:/secret/app#password"),
        renderer.env_spec("URL", "pg://{{ secret('database/creds/readonly').username }}@db"),
    ]
    out = renderer.render_all(templates, env, reader)
    assert sorted(reader.reads, key=str) == sorted([(APP, None), (APP, 2), (DB, None)], key=str)
    assert out.env["DB_USER"] == "v-ro-xyz"
    assert out.env["DB_PASS"] == DB_PASSWORD
    assert out.env["URL"] == "pg://v-ro-xyz@db"
    assert set(out.secrets) == {KvRead(APP), KvRead(APP, 2), KvRead(DB)}


def test_each_render_all_reads_afresh(renderer: Renderer, reader: FakeReader) -> None:
    """The read cache lives for one render: a second render_all reads the path again."""
    templates = {"/out/a": ("a.j2", renderer.compile("a.j2", "{{ secret('secret/app').user }}"))}
    renderer.render_all(templates, [], reader)
    renderer.render_all(templates, [], reader)
    assert reader.reads == [(APP, None), (APP, None)]


def test_read_cache_normalises_paths() -> None:
    """ReadCache treats reads of '/a/b/' and 'a//b' as the same path and passes the normalised one on."""
    reader = FakeReader({("a/b", None): {"k": "v"}})
    cache = ReadCache(reader)
    assert cache.get(KvRead.of("/a/b/")) is cache.get(KvRead.of("a//b"))
    assert reader.reads == [("a/b", None)]


# --- errors name template, line and name ---------------------------------------------------


def test_missing_key_names_template_line_and_key(renderer: Renderer, reader: FakeReader) -> None:
    """A missing key is a RenderError naming the template, the line and the key."""
    text = "a: 1\nb: 2\npass: {{ secret('secret/app').pasword }}\n"
    message = render_error(renderer, reader, text, name="app.yml.j2")
    assert "'app.yml.j2'" in message
    assert "line 3" in message
    assert "'pasword'" in message


def test_missing_key_by_item_names_key(renderer: Renderer, reader: FakeReader) -> None:
    """s['missing'] is a RenderError naming the key and the secret path."""
    message = render_error(renderer, reader, "\n{{ secret('secret/app')['nokey'] }}")
    assert "line 2" in message
    assert "'nokey'" in message
    assert "secret/app" in message


def test_undefined_variable_names_line_and_name(renderer: Renderer, reader: FakeReader) -> None:
    """An undefined variable is a RenderError naming the line and the variable (StrictUndefined)."""
    message = render_error(renderer, reader, "ok\nok\nok\n{{ db_host }}\n", name="cfg.j2")
    assert "'cfg.j2'" in message
    assert "line 4" in message
    assert "db_host" in message


def test_undefined_variable_in_an_expression_is_an_error(renderer: Renderer, reader: FakeReader) -> None:
    """Using an undefined variable in an expression is an error, never an empty string."""
    render_error(renderer, reader, "{{ missing ~ 'x' }}")


def test_syntax_error_names_template_and_line(renderer: Renderer) -> None:
    """A template syntax error is a RenderError at compile time naming template and line."""
    with pytest.raises(RenderError) as info:
        renderer.compile("broken.j2", "line1\n{% if x %}\nline3\n{{ y }\n")
    message = str(info.value)
    assert "'broken.j2'" in message
    assert "line 4" in message


def test_missing_secret_path_propagates_secret_not_found(renderer: Renderer, reader: FakeReader) -> None:
    """A path that does not exist propagates the reader's SecretNotFound (not hidden as a render error)."""
    with pytest.raises(SecretNotFound, match="secret/nope"):
        render_text(renderer, reader, "{{ secret('secret/nope').x }}")


@pytest.mark.parametrize(
    "call", ["secret('')", "secret('/')", "secret(1)", "secret('secret/app', 0)", "secret('secret/app', '2')"]
)
def test_secret_bad_arguments_are_render_errors(renderer: Renderer, reader: FakeReader, call: str) -> None:
    """secret() with an empty/non-string path or a non-positive/non-int version is a RenderError."""
    render_error(renderer, reader, f"{{{{ {call} }}}}")
    assert reader.reads == []


# --- env values -----------------------------------------------------------------------------


def test_env_spec_classifies_reference_template_literal(renderer: Renderer) -> None:
    """env_spec parses references, compiles templates and keeps anything else literal."""
    ref = renderer.env_spec("A", "vault:secret/app#password#2")
    assert ref.ref is not None
    assert (ref.ref.path, ref.ref.key, ref.ref.version) == (APP, "password", 2)
    tpl = renderer.env_spec("B", "x{{ 1 + 1 }}")
    assert isinstance(tpl.template, jinja2.Template)
    lit = renderer.env_spec("C", "just text with # and : in it")
    assert (lit.ref, lit.template, lit.literal) == (None, None, "just text with # and : in it")


def test_env_reference_resolves(renderer: Renderer, reader: FakeReader) -> None:
    """An env reference resolves to the key's value."""
    out = renderer.render_all({}, [renderer.env_spec("P", "vault:secret/app#password")], reader)
    assert out.env == {"P": PASSWORD}


def test_env_reference_non_string_value_is_json() -> None:
    """A non-string secret value referenced from env is rendered as JSON."""
    reader = FakeReader({("kv/x", None): {"port": 5432, "flags": {"a": True}}})
    renderer = Renderer({})
    specs = [renderer.env_spec("PORT", "vault:kv/x#port"), renderer.env_spec("F", "vault:kv/x#flags")]
    assert renderer.render_all({}, specs, reader).env == {"PORT": "5432", "F": '{"a": true}'}


def test_env_reference_missing_key_raises_secret_not_found(renderer: Renderer, reader: FakeReader) -> None:
    """An env reference to a missing key raises SecretNotFound naming the env var, path and key."""
    with pytest.raises(SecretNotFound) as info:
        renderer.render_all({}, [renderer.env_spec("P", "vault:secret/app#pasword")], reader)
    message = str(info.value)
    assert "env P" in message
    assert "secret/app" in message
    assert "'pasword'" in message
    assert not any(value in message for value in reader.values)


def test_env_literal_passes_through(renderer: Renderer, reader: FakeReader) -> None:
    """A literal env value is used unchanged and reads nothing."""
    out = renderer.render_all({}, [renderer.env_spec("MODE", "production")], reader)
    assert out.env == {"MODE": "production"}
    assert out.deps == {"env:MODE": frozenset()}
    assert reader.reads == []


def test_env_template_error_names_the_env_var(renderer: Renderer, reader: FakeReader) -> None:
    """An env template error names the env var as the template."""
    with pytest.raises(RenderError, match="env URL"):
        renderer.render_all({}, [renderer.env_spec("URL", "x{{ nope }}")], reader)


def test_malformed_env_reference_names_the_env_var(renderer: Renderer) -> None:
    """A malformed env reference fails when classified, naming the env var."""
    with pytest.raises(UsageError, match="env BAD"):
        renderer.env_spec("BAD", "vault:secret/app")


# --- env() ------------------------------------------------------------------------------


def test_env_function_reads_injects_environment(renderer: Renderer, reader: FakeReader) -> None:
    """env(name) returns inject's own environment variable."""
    assert render_text(renderer, reader, "{{ env('REGION') }}") == "eu-west-1"


def test_env_function_default(renderer: Renderer, reader: FakeReader) -> None:
    """env(name, default) returns the default when the variable is unset, the value otherwise."""
    text = "{{ env('NOPE', 'fallback') }}|{{ env('HOME', 'x') }}|{{ env('NOPE', default='kw') }}"
    assert render_text(renderer, reader, text) == "fallback|/home/app|kw"


def test_env_function_missing_without_default_names_variable(renderer: Renderer, reader: FakeReader) -> None:
    """env(name) without default for an unset variable is a RenderError naming it and the line."""
    message = render_error(renderer, reader, "a\n{{ env('DATABASE_HOST') }}")
    assert "DATABASE_HOST" in message
    assert "line 2" in message


# --- filters and output -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{{ 'hello' | b64encode }}", "aGVsbG8="),
        ("{{ 'aGVsbG8=' | b64decode }}", "hello"),
        ("{{ secret('secret/app').b64 | b64decode }}", "hello"),
        ("{{ 'héllo' | b64encode | b64decode }}", "héllo"),
        ("{{ {'a': '<b>&'} | tojson }}", '{"a": "<b>&"}'),
        (
            "{{ secret('database/creds/readonly') | tojson }}",
            f'{{"username": "v-ro-xyz", "password": "{DB_PASSWORD}"}}',
        ),
        ("{{ [1, 'x'] | tojson }}", '[1, "x"]'),
        ('{{ "it\'s; rm -rf /" | shell_quote }}', "'it'\"'\"'s; rm -rf /'"),
        ("{{ 'plain' | shell_quote }}", "plain"),
        ("{{ '' | shell_quote }}", "''"),
    ],
)
def test_filters(renderer: Renderer, reader: FakeReader, text: str, expected: str) -> None:
    """b64encode, b64decode, tojson (no HTML escaping) and shell_quote give exact output."""
    assert render_text(renderer, reader, text) == expected


@pytest.mark.parametrize("value", ["not base64!!", "aGVsbG8", "/w=="])
def test_b64decode_bad_input_is_render_error(renderer: Renderer, reader: FakeReader, value: str) -> None:
    """b64decode of invalid base64 (or non-UTF-8 bytes) is a RenderError that does not echo the value."""
    message = render_error(renderer, reader, f"{{{{ '{value}' | b64decode }}}}")
    assert "b64decode" in message
    assert value not in message


def test_trailing_newline_is_kept(renderer: Renderer, reader: FakeReader) -> None:
    """A template's trailing newline is kept in the output."""
    assert render_text(renderer, reader, "a: {{ 1 }}\n") == "a: 1\n"
    assert render_text(renderer, reader, "a\n\n") == "a\n\n"


def test_no_autoescape(renderer: Renderer, reader: FakeReader) -> None:
    """Output is not HTML-escaped: '<&>' stays '<&>' from literals and from secrets."""
    assert render_text(renderer, reader, "{{ '<&>' }} {{ secret('secret/app').html }}") == "<&> <&>"


# --- sandbox ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ lipsum.__globals__ }}",
        "{{ joiner }}",
        "{{ namespace }}",
        "{{ dict }}",
        "{{ secret.__globals__ }}",
        "{{ env.__globals__ }}",
        "{{ secret.__code__ }}",
        "{{ ().__class__.__base__.__subclasses__() }}",
        "{{ '{0.__class__}'.format(1) }}",
        "{{ secret('secret/app').__class__ }}",
        "{{ secret('secret/app')._data }}",
        "{{ self.__init__.__globals__ }}",
        "{{ 'x' | attr('__class__') }}",
        "{% set d = {} %}{{ d.update(a=1) }}",
        "{% set l = [] %}{{ l.append(1) }}",
    ],
)
def test_sandbox_escapes_are_render_errors(renderer: Renderer, reader: FakeReader, text: str) -> None:
    """Sandbox escapes, removed globals and mutations fail with RenderError instead of rendering."""
    render_error(renderer, reader, text)


@pytest.mark.parametrize(
    "payload",
    [
        "cycler.__init__.__globals__.os.system('touch MARK')",
        "lipsum.__globals__['os'].system('touch MARK')",
        "secret.__globals__['__builtins__']['open']('MARK', 'w')",
        "self.__init__.__globals__.__builtins__.open('MARK', 'w')",
        "env.__globals__.__builtins__.__import__('os').system('touch MARK')",
        "''.__class__.__mro__[1].__subclasses__()[0].__init__.__globals__.__builtins__.open('MARK', 'w')",
    ],
)
def test_sandbox_escape_does_not_run_code(
    renderer: Renderer, reader: FakeReader, tmp_path: Path, payload: str
) -> None:
    """A sandbox escape payload raises RenderError and its side effect (creating a file) never happens."""
    marker = tmp_path / "pwned"
    render_error(renderer, reader, "{{ " + payload.replace("MARK", str(marker)) + " }}")
    assert not marker.exists()


def test_range_is_limited_by_the_sandbox(renderer: Renderer, reader: FakeReader) -> None:
    """range() larger than the sandbox limit (100000) is refused, even when never materialised."""
    message = render_error(renderer, reader, "{{ range(10**9) | length }}")
    assert "too large" in message


@contextlib.contextmanager
def address_space_limit(extra_bytes: int) -> Iterator[None]:
    """Cap this process's address space a little above its current size, then restore it."""
    with open("/proc/self/statm") as handle:
        current = int(handle.read().split()[0]) * resource.getpagesize()
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (current + extra_bytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def test_huge_range_list_is_a_render_error(renderer: Renderer, reader: FakeReader) -> None:
    """``range(10**9) | list`` is a RenderError saying 'too large', never an exhausted machine."""
    template = renderer.compile("big.j2", "{{ range(10**9) | list }}")
    with address_space_limit(512 * 1024 * 1024), pytest.raises(RenderError, match="too large"):
        renderer.render_all({"/out/x": ("big.j2", template)}, [], reader)


# --- secrecy of error messages ---------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "{{ secret('secret/app').pasword }}",
        "{{ secret('secret/app').password + 1 }}",
        "{{ secret('secret/app').password | b64decode }}",
        "{{ secret('secret/app').password.foo }}",
        "{{ secret('secret/app').password[100] }}",
        "{{ secret('secret/app').password | int + [] }}",
        "{{ '%d' % secret('secret/app').password }}",
        "{{ secret('secret/app').password.__class__ }}",
        "{{ secret('database/creds/readonly').password | float + {} }}",
        "{{ secret('secret/app', secret('secret/app').password) }}",
        "{% for c in secret('secret/app').password %}{{ c.x.y }}{% endfor %}",
        "{{ {'a': 1}[secret('secret/app').password] }}",
        "{{ secret('secret/app')[secret('database/creds/readonly').password] }}",
    ],
)
def test_render_errors_never_contain_secret_values(renderer: Renderer, reader: FakeReader, text: str) -> None:
    """No RenderError message contains a value the reader returned, whatever the template did with it."""
    message = render_error(renderer, reader, text)
    leaked = [value for value in reader.values if value in message]
    assert leaked == []


# --- deps ----------------------------------------------------------------------------------


def test_deps_map_each_output_to_what_it_read(renderer: Renderer, reader: FakeReader) -> None:
    """Rendered.deps maps each destination and 'env:NAME' to the (path, version) keys it read."""
    templates = {
        "/out/a": (
            "a.j2",
            renderer.compile(
                "a.j2", "{{ secret('secret/app').user }}{{ secret('/database/creds/readonly').username }}"
            ),
        ),
        "/out/b": ("b.j2", renderer.compile("b.j2", "{{ secret('secret/app', 2).user }}")),
        "/out/c": ("c.j2", renderer.compile("c.j2", "static")),
    }
    env = [
        renderer.env_spec("P", "vault:secret/app#password#2"),
        renderer.env_spec("U", "{{ secret('database/creds/readonly').username }}"),
        renderer.env_spec("L", "literal"),
    ]
    out = renderer.render_all(templates, env, reader)
    assert isinstance(out, Rendered)
    assert out.deps == {
        "/out/a": frozenset({KvRead(APP), KvRead(DB)}),
        "/out/b": frozenset({KvRead(APP, 2)}),
        "/out/c": frozenset(),
        "env:P": frozenset({KvRead(APP, 2)}),
        "env:U": frozenset({KvRead(DB)}),
        "env:L": frozenset(),
    }


def test_deps_include_secret_meta_reads(renderer: Renderer, reader: FakeReader) -> None:
    """A template that only reads metadata still depends on that secret."""
    templates = {"/out/m": ("m.j2", renderer.compile("m.j2", "{{ secret_meta('secret/app').version }}"))}
    assert renderer.render_all(templates, [], reader).deps == {"/out/m": frozenset({KvRead(APP)})}


def test_render_all_outputs_files_by_destination(renderer: Renderer, reader: FakeReader) -> None:
    """render_all returns each destination's text and each env value by name."""
    templates = {
        "/out/a": ("a.j2", renderer.compile("a.j2", "A={{ secret('secret/app').user }}\n")),
        "/out/b": ("b.j2", renderer.compile("b.j2", "B")),
    }
    out = renderer.render_all(templates, [EnvSpec(name="X", literal="1")], reader)
    assert out.files == {"/out/a": "A=appuser-K3\n", "/out/b": "B"}
    assert out.env == {"X": "1"}


def test_env_value_with_nul_byte_is_a_render_error() -> None:
    """An env value containing NUL (which execve cannot pass) fails naming the variable, not the value."""
    renderer = Renderer({})
    reader = FakeReader({("secret/app", None): {"bad": "abc\0def"}})
    spec = renderer.env_spec("BAD", "vault:secret/app#bad")
    with pytest.raises(RenderError, match="env BAD: the value contains a NUL byte") as info:
        renderer.render_all({}, [spec], reader)
    assert "abc" not in str(info.value)


def test_literal_secret_paths_are_found_for_prefetch() -> None:
    """static_keys lists secret('...') calls with literal paths (and versions), skipping computed ones."""
    renderer = Renderer({})
    template = renderer.compile(
        "app.j2",
        "{{ secret('secret/a').x }}{{ secret('/secret/b/', 2).y }}{{ secret_meta('secret/c', version=3) }}"
        "{{ secret('secret/' ~ env('X', 'd')).z }}",
    )
    env = [renderer.env_spec("E", "vault:secret/e#k"), renderer.env_spec("L", "literal")]
    assert renderer.static_keys([template], env) == {
        KvRead("secret/a"),
        KvRead("secret/b", 2),
        KvRead("secret/c", 3),
        KvRead("secret/e"),
    }


def test_prefetched_secrets_are_not_read_again() -> None:
    """Secrets handed to render_all as already known are used without another read."""
    renderer = Renderer({})
    reader = FakeReader({("secret/a", None): {"x": "1"}})
    known = {KvRead("secret/a"): reader.fetch(KvRead("secret/a"))}
    template = renderer.compile("a.j2", "{{ secret('secret/a').x }}")
    rendered = renderer.render_all({"/out": ("a.j2", template)}, [], reader, known)
    assert rendered.files["/out"] == "1"
    assert reader.reads == [("secret/a", None)]  # only the read that built `known`
