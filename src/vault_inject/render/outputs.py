"""What a render produces and reads through, without Jinja.

Kept apart from ``renderer`` (the Jinja sandbox) so that the loop, the engine and the
applier can hold and pass renders around without importing jinja2: ``inject -- CMD``
with nothing to render never compiles a template and should not pay for the import.
``renderer`` re-exports every name here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import SecretNotFound
from ..model import KvRead, Request, Secret, strings_in
from ..refs import Ref, looks_like_ref, parse_ref
from .envcheck import MAX_ENV_ENTRY_BYTES as MAX_ENV_ENTRY_BYTES
from .envcheck import checked_env as checked_env
from .envcheck import is_template_text as is_template_text

if TYPE_CHECKING:
    import jinja2


class SecretReader(Protocol):
    """Anything that can do a request (the real VaultClient, or a fake in tests)."""

    def fetch(self, request: Request) -> Secret: ...


class ReadCache:
    """Does each distinct request once per render and remembers what it got."""

    def __init__(self, reader: SecretReader, known: Mapping[Request, Secret] | None = None) -> None:
        self._reader = reader
        self.secrets: dict[Request, Secret] = dict(known or {})

    def get(self, request: Request) -> Secret:
        """The answer to ``request`` (cached for the rest of this render)."""
        if request not in self.secrets:
            self.secrets[request] = self._reader.fetch(request)
        return self.secrets[request]


def ref_request(ref: Ref) -> KvRead:
    """The read a ``vault:PATH#KEY[#VERSION]`` reference needs."""
    return KvRead.of(ref.path, ref.version)


@dataclass(frozen=True)
class EnvSpec:
    """One child env var: a reference, a template or a literal."""

    name: str
    ref: Ref | None = None
    template: jinja2.Template | None = None
    literal: str = ""


@dataclass
class Rendered:
    """The result of one complete render: file contents, env values, and what was read."""

    files: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    secrets: dict[Request, Secret] = field(default_factory=dict)
    deps: dict[str, frozenset[Request]] = field(default_factory=dict)


def secret_strings(secrets: Iterable[Secret]) -> set[str]:
    """Every string value inside these secrets (for masking)."""
    return {v for s in secrets for v in strings_in(s.data)}


class TemplateRenderer(Protocol):
    """What a Job renders with: ``render.Renderer``, or ``NoTemplates``."""

    def static_keys(self, templates: Iterable[jinja2.Template], env: Iterable[EnvSpec]) -> set[Request]: ...

    def render_all(
        self,
        templates: Mapping[str, tuple[str, jinja2.Template]],
        env: list[EnvSpec],
        reader: SecretReader,
        known: Mapping[Request, Secret] | None = None,
    ) -> Rendered: ...

    def render_one(
        self, name: str, template: jinja2.Template, cache: ReadCache
    ) -> tuple[str, frozenset[Request]]: ...

    def render_env(self, spec: EnvSpec, cache: ReadCache) -> tuple[str, frozenset[Request]]: ...


class NoTemplates:
    """The renderer of a job without templates, whose env values are all references or
    literals (``inject -- CMD``, ``-e DB_PASS=vault:...``): nothing to compile, so neither
    the sandbox nor jinja2 is loaded."""

    def static_keys(self, templates: Iterable[jinja2.Template], env: Iterable[EnvSpec]) -> set[Request]:
        """The references' secrets."""
        return {ref_request(spec.ref) for spec in env if spec.ref is not None}

    def render_all(
        self,
        templates: Mapping[str, tuple[str, jinja2.Template]],
        env: list[EnvSpec],
        reader: SecretReader,
        known: Mapping[Request, Secret] | None = None,
    ) -> Rendered:
        """Every env value, or raise."""
        if templates:
            raise ValueError("NoTemplates was given templates to render")
        cache = ReadCache(reader, known)
        out = Rendered()
        for spec in env:
            out.env[spec.name], out.deps["env:" + spec.name] = self.render_env(spec, cache)
        out.secrets = dict(cache.secrets)
        return out

    def render_one(
        self, name: str, template: jinja2.Template, cache: ReadCache
    ) -> tuple[str, frozenset[Request]]:
        """Never called: a job without templates has no template to re-render."""
        raise ValueError(f"NoTemplates cannot render template '{name}'")

    def render_env(self, spec: EnvSpec, cache: ReadCache) -> tuple[str, frozenset[Request]]:
        """One reference or literal env value."""
        return render_plain_env(spec, cache)


# --- env values that are not templates ---------------------------------------------------


def plain_env_spec(name: str, raw: str) -> EnvSpec:
    """A reference (parsed now) or a literal."""
    if looks_like_ref(raw):
        return EnvSpec(name=name, ref=parse_ref(raw, where=f"env {name}"))
    return EnvSpec(name=name, literal=raw)


def render_plain_env(spec: EnvSpec, cache: ReadCache) -> tuple[str, frozenset[Request]]:
    """A reference's value (read through ``cache``) or a literal, checked for execve."""
    if spec.ref is not None:
        text = resolve_ref(spec.ref, cache, f"env {spec.name}")
        return checked_env(spec.name, text), frozenset({ref_request(spec.ref)})
    return checked_env(spec.name, spec.literal), frozenset()


def resolve_ref(ref: Ref, cache: ReadCache, where: str) -> str:
    """The value a ``vault:PATH#KEY`` reference names, as env text."""
    data = cache.get(ref_request(ref)).data
    if ref.key not in data:
        raise SecretNotFound(f"{where}: secret '{ref.path}' has no key '{ref.key}'{nearest(ref.key, data)}")
    return as_text(data[ref.key])


def nearest(given: str, known: Iterable[Any]) -> str:
    """``"; did you mean 'password'?"`` naming the key in ``known`` closest to ``given`` (a
    typo), else ``""``. Only for a key written literally (in a reference, or in a template's
    source): a key is a name, not a value, but a computed one may be made from a value, so
    it gets no guess (names.py)."""
    import difflib  # only when a key is missing

    close = difflib.get_close_matches(given, [k for k in known if isinstance(k, str)], n=1, cutoff=0.75)
    return f"; did you mean '{close[0]}'?" if close else ""


def as_text(value: Any) -> str:
    """A secret value as env text: strings as they are, anything else as JSON."""
    if isinstance(value, str):
        return value
    import json  # rarely needed (a non-string value); not loaded at every start

    return json.dumps(value)
