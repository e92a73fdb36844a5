"""The typed requests of a render (``model.Request``): what each one asks the server, how it
is named in logs and plan output, and that equal requests are one cache entry."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tests.unit.fakeclock import FakeClock
from tests.unit.test_transport import answer, client_with
from vault_inject.errors import PermissionDenied, SecretNotFound
from vault_inject.model import KvRead, PkiIssue, Request, Secret, TransitDecrypt, request_order
from vault_inject.render.renderer import ReadCache, Renderer

CIPHERTEXT = "vault:v1:c2VjcmV0LWNpcGhlcnRleHQtNzc="
CERT = {
    "certificate": "-----BEGIN CERTIFICATE-----",
    "private_key": "pk-Zq8xK-unit",
    "expiration": 1_900_000_000,
}

# --- naming and equality ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role_path", "path"),
    [("pki/issue/web", "pki/issue/web"), ("/pki-int//web/", "pki-int/issue/web"), ("web", "pki/issue/web")],
)
def test_pki_role_paths_become_the_issue_endpoint(role_path: str, path: str) -> None:
    """`MOUNT/issue/ROLE` is kept, `MOUNT/ROLE` gains `issue/`, a bare `ROLE` is the `pki` mount's."""
    assert PkiIssue.of(role_path, {}).path == path


def test_pki_params_in_any_order_are_one_request() -> None:
    """The same parameters given in another order (or as non-strings) make an equal, equally hashed request."""
    first = PkiIssue.of("pki/web", {"common_name": "a.localhost", "ttl": 3600})
    second = PkiIssue.of("pki/issue/web", {"ttl": "3600", "common_name": "a.localhost"})
    assert first == second
    assert len({first, second}) == 1
    assert first.params == (("common_name", "a.localhost"), ("ttl", "3600"))


@pytest.mark.parametrize(
    ("key", "path"), [("app", "transit/decrypt/app"), ("/tr-x//app", "tr-x/decrypt/app")]
)
def test_transit_keys_become_the_decrypt_endpoint(key: str, path: str) -> None:
    """A bare key name is the `transit` mount's; `MOUNT/KEY` decrypts at `MOUNT/decrypt/KEY`."""
    assert TransitDecrypt.of(key, CIPHERTEXT).path == path


def test_a_hash_in_a_transit_key_name_stays_in_the_path() -> None:
    """Nothing is split on '#': the key name and the ciphertext stay apart whatever they contain."""
    request = TransitDecrypt.of("transit/odd#name", "vault:v1:a#b")
    assert (request.path, request.ciphertext) == ("transit/decrypt/odd#name", "vault:v1:a#b")


def test_labels_name_requests_as_logs_and_plan_output_always_have() -> None:
    """KV reads by path; certificates and decryptions by `pki:PATH?PARAMS` and `transit:PATH#CIPHERTEXT`."""
    assert KvRead.of("/secret//app/", 3).label == "secret/app"
    assert PkiIssue.of("pki/web", {}).label == "pki:pki/issue/web"
    assert PkiIssue.of("pki/web", {"ttl": "6s", "common_name": "a b&c"}).label == (
        "pki:pki/issue/web?common_name=a+b%26c&ttl=6s"
    )
    assert TransitDecrypt.of("app", CIPHERTEXT).label == f"transit:transit/decrypt/app#{CIPHERTEXT}"


def test_repr_shows_neither_a_ciphertext_nor_certificate_parameters() -> None:
    """A request printed by accident (a traceback, a debug line) names its path only."""
    text = repr(TransitDecrypt.of("app", CIPHERTEXT)) + repr(
        PkiIssue.of("pki/web", {"common_name": "host-q7"})
    )
    assert "transit/decrypt/app" in text
    assert "pki/issue/web" in text
    assert CIPHERTEXT not in text
    assert "host-q7" not in text


def test_requests_of_every_kind_sort_together() -> None:
    """request_order sorts a mixed set by label, then version (plan output lists them so)."""
    requests: list[Request] = [
        TransitDecrypt.of("app", CIPHERTEXT),
        KvRead("secret/a", 2),
        PkiIssue.of("pki/web", {}),
        KvRead("secret/a"),
    ]
    assert [r.label for r in sorted(requests, key=request_order)] == [
        "pki:pki/issue/web",
        "secret/a",
        "secret/a",
        "transit:transit/decrypt/app#" + CIPHERTEXT,
    ]
    assert sorted(requests, key=request_order)[1:3] == [KvRead("secret/a"), KvRead("secret/a", 2)]


# --- what the server is asked ----------------------------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    """A fresh fake clock (time moves only when the client sleeps)."""
    return FakeClock()


def test_a_certificate_request_posts_its_parameters_to_the_issue_endpoint(clock: FakeClock) -> None:
    """fetch(PkiIssue) POSTs the parameters (an empty one left out) and keeps the certificate's expiry."""
    client, wire = client_with(clock, lambda sent: answer(200, {"data": CERT}))
    secret = client.fetch(PkiIssue.of("pki-x/web", {"common_name": "a.localhost", "alt_names": ""}))
    (sent,) = wire.calls
    assert (sent.method, sent.url.rpartition("/v1/")[2]) == ("POST", "pki-x/issue/web")
    assert sent.json == {"common_name": "a.localhost"}
    assert secret.path == "pki-x/issue/web"
    assert secret.expires_at == 1_900_000_000
    assert secret.issued_at is not None


def test_a_decryption_posts_the_ciphertext_and_returns_the_plaintext(clock: FakeClock) -> None:
    """fetch(TransitDecrypt) POSTs the ciphertext to MOUNT/decrypt/KEY and decodes the plaintext."""
    plaintext = base64.b64encode(b"plain-Kq9").decode()
    client, wire = client_with(clock, lambda sent: answer(200, {"data": {"plaintext": plaintext}}))
    secret = client.fetch(TransitDecrypt.of("tr/app", CIPHERTEXT))
    (sent,) = wire.calls
    assert (sent.method, sent.url.rpartition("/v1/")[2]) == ("POST", "tr/decrypt/app")
    assert sent.json == {"ciphertext": CIPHERTEXT}
    assert secret.data == {"plaintext": "plain-Kq9"}


def test_a_refused_decryption_names_the_key_path_but_not_the_ciphertext(clock: FakeClock) -> None:
    """A 403 on a decryption says which key path was refused and never quotes the ciphertext."""
    client, _ = client_with(clock, lambda sent: answer(403, {"errors": ["1 error occurred: denied"]}))
    with pytest.raises(PermissionDenied) as caught:
        client.fetch(TransitDecrypt.of("tr/app", CIPHERTEXT))
    assert "tr/decrypt/app" in str(caught.value)
    assert CIPHERTEXT not in str(caught.value)


def test_no_certificate_in_the_answer_names_the_role_path(clock: FakeClock) -> None:
    """An issue endpoint answering without a certificate is SecretNotFound naming the path, not the parameters."""
    client, _ = client_with(clock, lambda sent: answer(200, {"data": {}}))
    with pytest.raises(SecretNotFound, match=r"^'pki/issue/web' returned no certificate$"):
        client.fetch(PkiIssue.of("pki/web", {"common_name": "host-q7"}))


def test_a_path_that_looks_like_a_request_is_read_as_a_path(clock: FakeClock) -> None:
    """read('pki:...') is a plain read of that path: no string is ever taken for a certificate request."""
    client, wire = client_with(clock, lambda sent: answer(404, {"errors": []}))
    with pytest.raises(SecretNotFound):
        client.read("pki:pki/issue/web?common_name=x")
    assert all(sent.method == "GET" for sent in wire.calls)
    assert all("?" not in sent.url and not sent.params for sent in wire.calls)  # '?' escaped: no query


# --- in a render -----------------------------------------------------------------------------


class Recorder:
    """Answers every request with a certificate-shaped secret and records the requests."""

    def __init__(self) -> None:
        self.requests: list[Request] = []

    def fetch(self, request: Request) -> Secret:
        self.requests.append(request)
        data: dict[str, Any] = dict(CERT) if isinstance(request, PkiIssue) else {"plaintext": "p-Zq8x"}
        return Secret(path=request.path, data=data)


def test_two_templates_asking_the_same_certificate_share_one_issue() -> None:
    """pki_cert with the same role and parameters (any order, either role spelling) issues once per render."""
    renderer = Renderer({})
    cert = renderer.compile("c.j2", "{{ pki_cert('pki/web', common_name='a', ttl='1h').certificate }}")
    key = renderer.compile("k.j2", "{{ pki_cert('pki/issue/web', ttl='1h', common_name='a').private_key }}")
    reader = Recorder()
    rendered = renderer.render_all({"/c": ("c.j2", cert), "/k": ("k.j2", key)}, [], reader)
    assert reader.requests == [PkiIssue("pki/issue/web", (("common_name", "a"), ("ttl", "1h")))]
    assert rendered.deps["/c"] == rendered.deps["/k"] == frozenset(reader.requests)


def test_transit_decrypt_in_a_template_is_one_typed_request() -> None:
    """transit_decrypt(key, ciphertext) renders the plaintext of one TransitDecrypt request."""
    renderer = Renderer({})
    template = renderer.compile("t.j2", "{{ transit_decrypt('app', '" + CIPHERTEXT + "') }}")
    reader = Recorder()
    text, deps = renderer.render_one("t.j2", template, ReadCache(reader))
    assert text == "p-Zq8x"
    assert deps == frozenset({TransitDecrypt("transit/decrypt/app", CIPHERTEXT)})
