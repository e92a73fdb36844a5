"""What a render produces and reads through, without Jinja.

Kept apart from ``render`` (the Jinja sandbox) so that the loop, the engine and the
applier can hold and pass renders around without importing jinja2: ``inject -- CMD``
with nothing to render never compiles a template and should not pay for the import.
``render`` re-exports every name here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from .model import PKI_PREFIX, TRANSIT_PREFIX, Secret, SecretKey, strings_in
from .refs import Ref, normalize_path

if TYPE_CHECKING:
    import jinja2


class SecretReader(Protocol):
    """Anything that can read a secret by path (the real VaultClient, or a fake in tests)."""

    def read(self, path: str, version: int | None = None) -> Secret: ...


class ReadCache:
    """Reads each distinct (path, version) once per render and remembers what was read."""

    def __init__(self, reader: SecretReader, known: Mapping[SecretKey, Secret] | None = None) -> None:
        self._reader = reader
        self.secrets: dict[SecretKey, Secret] = dict(known or {})

    def get(self, path: str, version: int | None = None) -> Secret:
        """The secret at ``path`` (cached for the rest of this render)."""
        key = (cache_path(path), version)
        if key not in self.secrets:
            self.secrets[key] = self._reader.read(key[0], version)
        return self.secrets[key]


def cache_path(path: str) -> str:
    """Paths are normalised; ``pki:``/``transit:`` request keys are kept exactly."""
    return path if path.startswith((PKI_PREFIX, TRANSIT_PREFIX)) else normalize_path(path)


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
    secrets: dict[SecretKey, Secret] = field(default_factory=dict)
    deps: dict[str, frozenset[SecretKey]] = field(default_factory=dict)


def secret_strings(secrets: Iterable[Secret]) -> set[str]:
    """Every string value inside these secrets (for masking)."""
    return {v for s in secrets for v in strings_in(s.data)}


class TemplateRenderer(Protocol):
    """What a Job renders with: ``render.Renderer``, or ``NothingToRender``."""

    def static_keys(self, templates: Iterable[jinja2.Template], env: Iterable[EnvSpec]) -> set[SecretKey]: ...

    def render_all(
        self,
        templates: Mapping[str, tuple[str, jinja2.Template]],
        env: list[EnvSpec],
        reader: SecretReader,
        known: Mapping[SecretKey, Secret] | None = None,
    ) -> Rendered: ...

    def render_one(
        self, name: str, template: jinja2.Template, cache: ReadCache
    ) -> tuple[str, frozenset[SecretKey]]: ...

    def render_env(self, spec: EnvSpec, cache: ReadCache) -> tuple[str, frozenset[SecretKey]]: ...


class NothingToRender:
    """The renderer of a job with no templates and no env values (``inject -- CMD`` as a
    plain PID 1): it renders nothing, so the sandbox, and jinja2, are never loaded."""

    def static_keys(self, templates: Iterable[jinja2.Template], env: Iterable[EnvSpec]) -> set[SecretKey]:
        """No template, no secret."""
        return set()

    def render_all(
        self,
        templates: Mapping[str, tuple[str, jinja2.Template]],
        env: list[EnvSpec],
        reader: SecretReader,
        known: Mapping[SecretKey, Secret] | None = None,
    ) -> Rendered:
        """The empty render."""
        if templates or env:
            raise ValueError("NothingToRender was given templates or env values to render")
        return Rendered()

    def render_one(
        self, name: str, template: jinja2.Template, cache: ReadCache
    ) -> tuple[str, frozenset[SecretKey]]:
        """Never called: a job without templates has no output to re-render."""
        raise ValueError(f"NothingToRender cannot render template '{name}'")

    def render_env(self, spec: EnvSpec, cache: ReadCache) -> tuple[str, frozenset[SecretKey]]:
        """Never called: a job without env values has no env output."""
        raise ValueError(f"NothingToRender cannot render env {spec.name}")
