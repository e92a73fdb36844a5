"""`secrets(path)` and `secret_write(path, **params)`: the requests they make (``KvList``,
``SecretWrite``), how they are named, shared within a render, polled and told apart, what
the client asks the server, and when an SSH certificate from a write ends."""

from __future__ import annotations

import base64
import struct
from collections.abc import Mapping
from typing import Any

import pytest

from tests.unit.fakeclock import FakeClock
from tests.unit.test_transport import MOUNT_INFO, answer, client_with
from vault_inject.cli.app import plan_lines, prepare
from vault_inject.client.sshcert import valid_before
from vault_inject.config.settings import CliOptions, build_config
from vault_inject.errors import InjectError, RenderError, SecretNotFound
from vault_inject.loop.lifecycle import Lifecycle
from vault_inject.model import COMPUTED_PATH, KvList, KvRead, Request, Secret, SecretWrite
from vault_inject.render.engine import Engine
from vault_inject.render.renderer import ReadCache, Renderer

SIGNED = "ssh-ed25519-cert-v01@openssh.com AAAA-not-parsed-here"


class Server:
    """Lists keys per path, answers KV reads, and answers writes with a counter (so two
    writes are told apart); records every request."""

    def __init__(self, keys: Mapping[str, list[str]] | None = None) -> None:
        self.keys = {path: list(names) for path, names in (keys or {}).items()}
        self.requests: list[Request] = []

    def fetch(self, request: Request) -> Secret:
        self.requests.append(request)
        if isinstance(request, KvList):
            return Secret(path=request.path, data={}, listed=tuple(sorted(self.keys.get(request.path, []))))
        if isinstance(request, SecretWrite):
            data = {"signed_key": f"{SIGNED} #{len(self.requests)}", "sent": request.payload()}
            return Secret(path=request.path, data=data)
        return Secret(path=request.path, data={"port": request.path[-1]}, version=1, kv_version=2)


def render(
    text: str, server: Server, environ: Mapping[str, str] | None = None
) -> tuple[str, frozenset[Request]]:
    """One template rendered against ``server``: its text and what it read."""
    renderer = Renderer(environ or {})
    return renderer.render_one("t.j2", renderer.compile("t.j2", text), ReadCache(server))


# --- secrets() -------------------------------------------------------------------------------

EVERY_SERVICE = (
    "{% for name in secrets('secret/services') %}"
    "{{ name }}={{ secret('secret/services/' ~ name).port }}\n{% endfor %}"
)


def test_secrets_lists_sorted_keys_and_each_entry_is_read() -> None:
    """secrets(path) is the keys under it, sorted; a config is built from every entry."""
    server = Server({"secret/services": ["web2", "api1", "db3"]})
    text, deps = render(EVERY_SERVICE, server)
    assert text == "api1=1\ndb3=3\nweb2=2\n"
    assert KvList("secret/services") in deps
    assert {KvRead("secret/services/api1"), KvRead("secret/services/web2")} <= deps


def test_secrets_of_a_path_with_nothing_under_it_is_empty() -> None:
    """An empty listing renders the loop's else branch (no error)."""
    text, _ = render("{% for k in secrets('secret/none') %}{{ k }}{% else %}none{% endfor %}", Server())
    assert text == "none"


def test_one_list_per_render_however_often_asked() -> None:
    """Two calls for one path (spelt differently) are one LIST."""
    server = Server({"secret/services": ["a"]})
    render("{{ secrets('secret/services') }}{{ secrets('/secret//services/') | length }}", server)
    assert server.requests == [KvList("secret/services")]


def test_a_computed_list_path_is_named_as_computed() -> None:
    """secrets(env-derived path) is a list marked computed: its label shows nothing of the path."""
    server = Server({"secret/hidden-x9": ["a"]})
    _, deps = render("{{ secrets(env('WHERE')) }}", server, {"WHERE": "secret/hidden-x9"})
    (request,) = deps
    assert isinstance(request, KvList)
    assert request.computed
    assert request.label == f"list:{COMPUTED_PATH}"
    assert "hidden-x9" not in request.label


@pytest.mark.parametrize("text", ["{{ secrets('') }}", "{{ secrets('secret/../sys') }}", "{{ secrets(3) }}"])
def test_a_bad_list_path_is_one_render_error(text: str) -> None:
    """An empty, relative or non-text path is a RenderError naming the template."""
    renderer = Renderer({})
    template = renderer.compile("t.j2", text)
    with pytest.raises(RenderError, match=r"^template 't\.j2' line 1: secret"):
        renderer.render_all({"/o": ("t.j2", template)}, [], Server())


# --- secret_write() --------------------------------------------------------------------------

SIGN = "secret_write('ssh/sign/app', public_key='ssh-ed25519 AAAAC3 me', valid_principals='web')"


def test_one_write_per_render_however_often_referenced() -> None:
    """The same write in two templates (parameters in any order) is one request; its data is returned."""
    renderer = Renderer({})
    first = renderer.compile("a.j2", "{{ " + SIGN + ".signed_key }}")
    again = "secret_write('ssh/sign/app', valid_principals='web', public_key='ssh-ed25519 AAAAC3 me')"
    second = renderer.compile(
        "b.j2", "{{ " + again + ".signed_key }}|{{ " + again + ".sent.valid_principals }}"
    )
    server = Server()
    rendered = renderer.render_all({"/a": ("a.j2", first), "/b": ("b.j2", second)}, [], server)
    assert len(server.requests) == 1
    assert rendered.files["/a"] == f"{SIGNED} #1"
    assert rendered.files["/b"] == f"{SIGNED} #1|web"


def test_write_parameters_keep_their_json_types() -> None:
    """Booleans, numbers and lists are sent as JSON values, not as text."""
    server = Server()
    render("{{ secret_write('totp/keys/app', generate=true, period=30, names=['a', 'b']).sent }}", server)
    (request,) = server.requests
    assert isinstance(request, SecretWrite)
    assert request.payload() == {"generate": True, "period": 30, "names": ["a", "b"]}
    assert not request.computed, "literal parameters (a boolean too) keep the write named"


def test_a_write_with_a_parameter_from_a_secret_is_computed() -> None:
    """A parameter taken from a secret (or env) marks the write computed: its label shows no parameter."""
    server = Server()
    render("{{ secret_write('totp/code/app', code=secret('secret/otp5').port) }}", server)
    write = next(r for r in server.requests if isinstance(r, SecretWrite))
    assert write.computed
    assert write.label == f"write:{COMPUTED_PATH}"


def test_a_parameter_that_is_not_json_is_one_render_error() -> None:
    """A value JSON cannot carry (a function) is a RenderError naming the template and the path."""
    renderer = Renderer({})
    template = renderer.compile("t.j2", "{{ secret_write('ssh/sign/app', key=env) }}")
    with pytest.raises(RenderError, match=r"'ssh/sign/app'\): parameters must be"):
        renderer.render_all({"/o": ("t.j2", template)}, [], Server())


def test_write_requests_are_equal_whatever_the_parameter_order_and_labelled_with_them() -> None:
    """SecretWrite.of sorts parameters; the label is `write:PATH?name=value` (text without quotes)."""
    first = SecretWrite.of("/ssh//sign/app/", {"b": True, "a": "x y"})
    second = SecretWrite.of("ssh/sign/app", {"a": "x y", "b": True})
    assert first == second
    assert hash(first) == hash(second)
    assert first.label == "write:ssh/sign/app?a=x+y&b=true"
    assert SecretWrite.of("totp/code/app", {}).label == "write:totp/code/app"
    assert "x y" not in repr(first)


# --- the engine and the lifecycle -----------------------------------------------------------


def _engine(text: str, server: Server) -> Engine:
    data = {"template": [{"contents": text, "destination": "/out/app.conf"}]}
    config = build_config(CliOptions(), {}, data, config_path="inject.toml", cwd="/srv")
    engine = Engine(prepare(config, {}), server)
    engine.first_render()
    return engine


def test_lists_are_polled_and_writes_are_not() -> None:
    """Each poll re-lists every list in use (beside unpinned KV reads); a write is never polled."""
    server = Server({"secret/services": ["a"]})
    engine = _engine(EVERY_SERVICE + "{{ " + SIGN + ".signed_key }}", server)
    assert set(engine.polled_keys()) == {KvList("secret/services"), KvRead("secret/services/a")}


def test_a_key_added_or_removed_is_a_change_of_the_outputs_using_the_list() -> None:
    """A listing with a key more and one less marks the output, described by counts only."""
    server = Server({"secret/services": ["a", "b"]})
    engine = _engine(EVERY_SERVICE, server)
    request = KvList("secret/services")
    same = engine.absorb({request: Secret(path=request.path, data={}, listed=("a", "b"))})
    assert same == {}
    changed = engine.absorb({request: Secret(path=request.path, data={}, listed=("a", "c"))})
    assert changed == {request: "list:secret/services: 1 key added, 1 key removed"}
    assert engine.outputs_using(changed) == {"/out/app.conf"}


def test_a_leased_write_is_renewed_and_an_ssh_certificate_re_signed_before_it_ends() -> None:
    """A write's lease is planned like database credentials; a certificate it answered is re-written at 2/3 of its life."""
    clock = FakeClock()
    life = Lifecycle(
        None,
        authenticator=None,
        grant=None,
        on_new_token=lambda _: None,
        clock=clock,
        wall_clock=lambda: 1000.0,
    )  # type: ignore[arg-type]
    leased, signed = SecretWrite.of("aws/sts/app", {"ttl": "1h"}), SecretWrite.of("ssh/sign/app", {})
    life.track(
        {
            leased: Secret(
                path="aws/sts/app", data={}, lease_id="aws/sts/app/L1", lease_duration_s=3600, renewable=True
            ),
            signed: Secret(path="ssh/sign/app", data={}, issued_at=1000.0, expires_at=1060.0),
        }
    )
    assert life.plans[leased].action == "renew"
    assert life.plans[signed].action == "reread"
    assert life.plans[signed].at == pytest.approx(clock.now + 40, abs=1)
    kinds = {(e.kind, e.what) for e in life.expiries()}
    assert kinds == {("lease", "aws/sts/app"), ("certificate", "ssh/sign/app")}


# --- what the client asks ------------------------------------------------------------------


def test_a_kv2_list_is_a_list_of_its_metadata(clock: FakeClock) -> None:
    """fetch(KvList) on KV v2 sends LIST secret/metadata/PATH and returns the keys sorted, folders with '/'."""

    def script(sent: Any) -> Any:
        if "sys/internal/ui/mounts" in sent.url:
            return answer(200, MOUNT_INFO)
        return answer(200, {"data": {"keys": ["web", "api", "team/"]}})

    client, wire = client_with(clock, script)
    secret = client.fetch(KvList.of("secret/services"))
    listed = [(s.method, s.url.rpartition("/v1/")[2]) for s in wire.calls if "mounts" not in s.url]
    assert listed == [("LIST", "secret/metadata/services")]
    assert secret.listed == ("api", "team/", "web")
    assert secret.data == {}, "key names are not data: they are not masked as secret values"
    assert secret.describe == "3 keys"


def test_nothing_under_a_listed_path_is_no_keys(clock: FakeClock) -> None:
    """A 404 on the LIST (nothing written there yet) is an empty listing, not an error."""

    def script(sent: Any) -> Any:
        return answer(200, MOUNT_INFO) if "mounts" in sent.url else answer(404, {"errors": []})

    client, _ = client_with(clock, script)
    assert client.fetch(KvList.of("secret/none")).listed == ()


def test_a_write_posts_its_json_parameters(clock: FakeClock) -> None:
    """fetch(SecretWrite) POSTs the parameters as JSON and keeps the answer's data and lease."""
    body = {"data": {"code": "123456"}, "lease_id": "", "lease_duration": 0}
    client, wire = client_with(clock, lambda sent: answer(200, body))
    secret = client.fetch(SecretWrite.of("totp/code/app", {"code": "123456", "period": 30}))
    (sent,) = wire.calls
    assert (sent.method, sent.url.rpartition("/v1/")[2]) == ("POST", "totp/code/app")
    assert sent.json == {"code": "123456", "period": 30}
    assert secret.data == {"code": "123456"}
    assert secret.expires_at is None


def test_a_write_answering_no_data_is_an_empty_answer_but_write_says_so(clock: FakeClock) -> None:
    """A 204 is empty data for secret_write; the library's write() (which wants a lease) still refuses it."""
    client, _ = client_with(clock, lambda sent: answer(204))
    assert client.fetch(SecretWrite.of("totp/keys/app", {"generate": False})).data == {}
    with pytest.raises(SecretNotFound, match=r"^'totp/keys/app' returned no data$"):
        client.write("totp/keys/app", {})


# --- SSH certificates ------------------------------------------------------------------------


def _field(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _certificate(kind: str, public_fields: int, before: int) -> str:
    blob = _field(kind.encode()) + _field(b"nonce")
    blob += b"".join(_field(b"k%d" % i) for i in range(public_fields))
    blob += struct.pack(">QI", 7, 1) + _field(b"key-id") + _field(_field(b"web"))
    blob += (
        struct.pack(">QQ", 1000, before)
        + _field(b"")
        + _field(b"")
        + _field(b"")
        + _field(b"ca")
        + _field(b"sig")
    )
    return f"{kind} {base64.b64encode(blob).decode()}\n"


@pytest.mark.parametrize(
    ("kind", "fields"),
    [("ssh-ed25519-cert-v01@openssh.com", 1), ("ssh-rsa-cert-v01@openssh.com", 2),
     ("ecdsa-sha2-nistp256-cert-v01@openssh.com", 2)],
)  # fmt: skip
def test_the_end_of_an_ssh_certificate_is_read_for_each_key_type(kind: str, fields: int) -> None:
    """valid_before finds 'valid before' past the type's own public fields."""
    assert valid_before(_certificate(kind, fields, 1_800_000_000)) == 1_800_000_000.0


@pytest.mark.parametrize(
    "text",
    [None, "", "ssh-ed25519 AAAAC3Nza", "ssh-ed25519-cert-v01@openssh.com !!!",
     _certificate("ssh-ed25519-cert-v01@openssh.com", 1, 5)[:60],
     _certificate("ssh-rsa-cert-v01@openssh.com", 2, 5).replace("ssh-rsa-cert", "ssh-ed25519-cert", 1),
     _certificate("ssh-ed25519-cert-v01@openssh.com", 1, 2**64 - 1)],
)  # fmt: skip
def test_anything_but_an_expiring_ssh_certificate_has_no_end(text: object) -> None:
    """Not a certificate, truncated, a type that does not match its blob, or 'forever': None."""
    assert valid_before(text) is None


@pytest.fixture
def clock() -> FakeClock:
    """A fresh fake clock (time moves only when the client sleeps)."""
    return FakeClock()


# --- naming: plan output and errors -----------------------------------------------------------


class Refusing(Server):
    """Refuses every request, quoting its path (as a careless reader might)."""

    def fetch(self, request: Request) -> Secret:
        from vault_inject.errors import PermissionDenied

        raise PermissionDenied(f"permission denied reading '{request.path}'")


@pytest.mark.parametrize(
    "text",
    [
        "{{ secrets('secret/' ~ env('WHO')) }}",
        "{{ secret_write('ssh/sign/' ~ env('WHO'), public_key='k') }}",
        "{{ secret_write('ssh/sign/app', public_key=env('WHO')) }}",
    ],
)
def test_a_refused_computed_request_shows_nothing_of_its_path(text: str) -> None:
    """A list or write whose path or parameter is computed is refused without a word of either."""
    renderer = Renderer({"WHO": "hidden-Qx7"})
    template = renderer.compile("t.j2", text)
    with pytest.raises(InjectError) as caught:
        renderer.render_all({"/o": ("t.j2", template)}, [], Refusing())
    message = str(caught.value)
    assert "hidden-Qx7" not in message
    assert COMPUTED_PATH in message


def test_a_write_with_dot_segments_is_refused_before_any_request() -> None:
    """secret_write('ssh/../sys/x') never reaches the server."""
    server = Server()
    renderer = Renderer({})
    template = renderer.compile("t.j2", "{{ secret_write('ssh/../sys/x', a=1) }}")
    with pytest.raises(RenderError, match=r"'ssh/\.\./sys/x' contains '\.' or '\.\.'"):
        renderer.render_all({"/o": ("t.j2", template)}, [], server)
    assert server.requests == []


def test_plan_names_lists_and_writes_by_their_labels() -> None:
    """`inject plan` says which list (and how many keys) and which write an output used."""
    renderer = Renderer({})
    text = "{{ secrets('secret/services') | length }}{{ " + SIGN + ".signed_key }}"
    rendered = renderer.render_all(
        {"/o": ("t.j2", renderer.compile("t.j2", text))}, [], Server({"secret/services": ["a", "b"]})
    )
    (line,) = plan_lines(rendered, lambda _path: None, {})
    assert "list:secret/services 2 keys" in line
    assert "write:ssh/sign/app?public_key=ssh-ed25519+AAAAC3+me&valid_principals=web" in line


def test_a_parameter_may_be_called_path() -> None:
    """The path is positional only: an engine's own `path` parameter is sent like any other."""
    server = Server()
    render("{{ secret_write('kv-like/config', path='/srv/x').sent.path }}", server)
    (request,) = server.requests
    assert isinstance(request, SecretWrite)
    assert request.payload() == {"path": "/srv/x"}


@pytest.mark.parametrize(
    ("mount", "sent"),
    [
        ({"path": "kv1/", "type": "kv", "options": {"version": "1"}}, "kv1/services"),
        ({"path": "ssh-x/", "type": "ssh"}, "ssh-x/roles"),
    ],
)
def test_kv1_and_other_engines_are_a_plain_list(clock: FakeClock, mount: dict[str, Any], sent: str) -> None:
    """KV v1 lists the path itself, another engine (SSH roles) too: LIST /v1/PATH."""

    def script(request: Any) -> Any:
        if "sys/internal/ui/mounts" in request.url:
            return answer(200, {"data": mount})
        return answer(200, {"data": {"keys": ["b", "a"]}})

    client, wire = client_with(clock, script)
    secret = client.fetch(KvList.of(sent))
    listed = [(s.method, s.url.rpartition("/v1/")[2]) for s in wire.calls if "mounts" not in s.url]
    assert listed == [("LIST", sent)]
    assert secret.listed == ("a", "b")
