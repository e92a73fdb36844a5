"""The render state of a long-running inject: the last good output of every template
and env var, the secrets they were made from, and selective re-rendering.

Only outputs whose inputs changed are re-rendered. After the first render, one
failing output keeps its last good value and does not stop the others; its error is
logged once (again only if it changes). No network beyond the reader, no disk.
"""

from __future__ import annotations

import datetime
import itertools
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..config import Config
from ..errors import InjectError
from ..identity import Identity
from ..model import FileWrite, KvList, KvRead, PkiIssue, Request, Secret, SecretWrite, request_order
from .outputs import EnvSpec, ReadCache, Rendered, SecretReader, TemplateRenderer

if TYPE_CHECKING:  # a Job holds compiled templates; only compiling them needs jinja2 (app)
    import jinja2

log = logging.getLogger(__name__)

ENV_PREFIX = "env:"


@dataclass
class Job:
    """Everything compiled from a Config before any network: templates and env specs."""

    config: Config
    renderer: TemplateRenderer
    templates: dict[str, tuple[str, jinja2.Template]]
    env: list[EnvSpec]
    owners: dict[str, Identity] = field(default_factory=dict)  # per-template owner
    sources: dict[str, str] = field(default_factory=dict)  # source file -> sha256 compiled

    def writes(self, contents: Mapping[str, str], default_owner: Identity) -> list[FileWrite]:
        """What to write for rendered ``contents`` (destination -> text), with mode and owner."""
        by_dest = {spec.destination: spec for spec in self.config.templates}
        return [
            FileWrite(
                destination=dest,
                content=text,
                perms=by_dest[dest].perms,
                allow_symlink=by_dest[dest].allow_symlink,
                allow_shared_dir=by_dest[dest].allow_shared_dir,
                uid=self.owners.get(dest, default_owner).uid,
                gid=self.owners.get(dest, default_owner).gid,
            )
            for dest, text in contents.items()
            if dest in by_dest
        ]


@dataclass
class Outcome:
    """What a re-render produced: changed files, changed env, and outputs that failed."""

    files: dict[str, str] = field(default_factory=dict)
    env_changed: bool = False
    failed: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """True when a file or an env value is different from the last good one."""
        return bool(self.files) or self.env_changed


Prefetch = Callable[[Iterable[Request]], Mapping[Request, Secret]]


def render_job(job: Job, reader: SecretReader, prefetch: Prefetch | None = None) -> Rendered:
    """Render a whole job; with ``prefetch``, the secrets its templates name literally are
    fetched together first (concurrently), then rendering reads only what remains."""
    keys = job.renderer.static_keys((template for _, template in job.templates.values()), job.env)
    known = prefetch(keys) if prefetch is not None and keys else None
    return job.renderer.render_all(job.templates, job.env, reader, known)


def describe_change(request: Request, old: Secret | None, new: Secret) -> str:
    """``secret/services/n8n v3 -> v4``, ``new lease for database/creds/ro``, never a value."""
    if isinstance(request, PkiIssue):
        return f"new certificate from {request.label if request.computed else request.path}"
    if isinstance(request, KvList):
        return f"{request.label}: {_keys_change(old, new)}"
    if isinstance(request, SecretWrite) and not new.lease_id:
        return f"new answer from {request.label}"
    if old is not None and old.version is not None and new.version is not None:
        return f"{request.label} v{old.version} -> v{new.version}"
    if new.lease_id:
        return f"new lease for {request.label}"
    return f"{request.label} changed"


class Engine:
    """Holds the last good render and re-renders only what changed."""

    def __init__(self, job: Job, reader: SecretReader, prefetch: Prefetch | None = None) -> None:
        self.job = job
        self.reader = reader
        self._prefetch = prefetch
        self.secrets: dict[Request, Secret] = {}
        self.files: dict[str, str] = {}
        self.env: dict[str, str] = {}
        self.deps: dict[str, frozenset[Request]] = {}
        self._errors: dict[str, str] = {}
        self._stale: dict[Request, int] = {}  # the older version last ignored, per key

    def first_render(self) -> Rendered:
        """Render everything; any failure raises (all or nothing before the child starts)."""
        rendered = render_job(self.job, self.reader, self._prefetch)
        self.accept(rendered)
        return rendered

    def accept(self, rendered: Rendered) -> None:
        """Make ``rendered`` the last good state (after its files were written). A secret
        polled while the render ran on a worker is newer than the render's: it is kept."""
        for key, secret in rendered.secrets.items():
            self.secrets.setdefault(key, secret)
        self.files.update(rendered.files)
        self.env.update(rendered.env)
        self.deps.update(rendered.deps)

    def polled_keys(self) -> list[Request]:
        """The secrets to check each poll: KV secrets read without a pinned version, and
        lists (``secrets()``: a key added or removed is a change)."""
        used = set().union(*self.deps.values()) if self.deps else set()
        return sorted(
            (
                key
                for key in used
                if key in self.secrets
                and (
                    isinstance(key, KvList)
                    or (
                        isinstance(key, KvRead)
                        and key.version is None
                        and self.secrets[key].kv_version is not None
                    )
                )
            ),
            key=request_order,
        )

    def absorb(self, fresh: Mapping[Request, Secret]) -> dict[Request, str]:
        """Take newly read secrets; return the keys whose version or data changed, described.

        A KV v2 read older than the version held (a lagging standby, a node that rejoined
        an HA cluster) is ignored: versions never go backwards. It is logged once per
        older version, and never re-renders or restarts anything. An older version that
        was *created* after the one held is not lagging: the secret was deleted with its
        metadata and written again (or the version held came from a node that is gone), so
        it is taken, logged once."""
        changed = {}
        for key, new in fresh.items():
            old = self.secrets.get(key)
            if old is not None and self._went_back(key, old, new):
                continue
            if old is None or (old.version, old.data, old.listed) != (new.version, new.data, new.listed):
                changed[key] = describe_change(key, old, new)
                log.debug("%s", changed[key])
            self.secrets[key] = new
        return changed

    def _went_back(self, key: Request, old: Secret, new: Secret) -> bool:
        """True (logged once per older version) when ``new`` is an older KV v2 version that
        is not newer in time than the one held."""
        if not (old.kv_version == new.kv_version == 2 and old.version and new.version):
            return False
        if new.version >= old.version:
            self._stale.pop(key, None)
            return False
        if created_later(new, old):
            self._stale.pop(key, None)
            log.warning(
                "%s: the server answered v%d, created after v%d already rendered: the secret was"
                " written anew; taken",
                new.path,
                new.version,
                old.version,
            )
            return False
        if self._stale.get(key) != new.version:
            self._stale[key] = new.version
            log.warning(
                "%s: the server answered v%d, older than v%d already rendered; ignored"
                " (a lagging or rejoining node?)",
                key.label,
                new.version,
                old.version,
            )
        return True

    def outputs_using(self, keys: Iterable[Request]) -> set[str]:
        """Every output (destination, or ``env:NAME``) that read one of ``keys``."""
        wanted = set(keys)
        return {out for out, deps in self.deps.items() if deps & wanted}

    def all_outputs(self) -> set[str]:
        """Every destination and ``env:NAME``."""
        return set(self.job.templates) | {ENV_PREFIX + spec.name for spec in self.job.env}

    def snapshot(self) -> dict[Request, Secret]:
        """The known secrets as of now, for a re-render on another thread."""
        return dict(self.secrets)

    def rerender(
        self, outputs: Iterable[str], known: Mapping[Request, Secret] | None = None
    ) -> tuple[Outcome, Rendered]:
        """Re-render ``outputs`` from the known secrets (``known``: a ``snapshot``); failures
        keep their last good value."""
        cache = ReadCache(self.reader, self.secrets if known is None else known)
        outcome, result = Outcome(), Rendered()
        env_by_name = {spec.name: spec for spec in self.job.env}
        for out in sorted(outputs):
            try:
                text, deps = self._render_output(out, cache, env_by_name)
            except InjectError as exc:
                self._report(out, str(exc))
                outcome.failed.append(out)
                continue
            self._errors.pop(out, None)
            result.deps[out] = deps
            self._collect(out, text, outcome, result)
        result.secrets = dict(cache.secrets)
        return outcome, result

    def _render_output(
        self, out: str, cache: ReadCache, env_by_name: Mapping[str, EnvSpec]
    ) -> tuple[str, frozenset[Request]]:
        renderer = self.job.renderer
        if out.startswith(ENV_PREFIX):
            return renderer.render_env(env_by_name[out[len(ENV_PREFIX) :]], cache)
        name, template = self.job.templates[out]
        return renderer.render_one(name, template, cache)

    def _collect(self, out: str, text: str, outcome: Outcome, result: Rendered) -> None:
        if out.startswith(ENV_PREFIX):
            name = out[len(ENV_PREFIX) :]
            result.env[name] = text
            if self.env.get(name) != text:
                outcome.env_changed = True
        else:
            result.files[out] = text
            if self.files.get(out) != text:
                outcome.files[out] = text

    def _report(self, out: str, message: str) -> None:
        if self._errors.get(out) != message:
            self._errors[out] = message
            log.error("%s (keeping the last good version)", message)

    def forget_errors(self) -> None:
        """Log the next failure of each output again (its template was reloaded)."""
        self._errors.clear()

    def forget(self, outputs: Iterable[str]) -> None:
        """Drop outputs that no longer exist (after a config reload)."""
        for out in outputs:
            self.deps.pop(out, None)
            self.files.pop(out, None)
            if out.startswith(ENV_PREFIX):
                self.env.pop(out[len(ENV_PREFIX) :], None)


def _keys_change(old: Secret | None, new: Secret) -> str:
    """``2 keys added, 1 removed``: counts only (a list's key names are shown by no message
    whose template may have computed the path)."""
    before, after = set(old.listed or ()) if old else set(), set(new.listed or ())
    added, removed = len(after - before), len(before - after)
    parts = [f"{added} key{'s' * (added != 1)} added"] if added else []
    parts += [f"{removed} key{'s' * (removed != 1)} removed"] if removed else []
    return ", ".join(parts) or "keys changed"


def created_later(new: Secret, old: Secret) -> bool:
    """True when both carry a KV v2 ``created_time`` and ``new``'s is later than ``old``'s."""
    new_at, old_at = _instant(new.created_time), _instant(old.created_time)
    return new_at is not None and old_at is not None and new_at > old_at


def _instant(text: object) -> tuple[datetime.datetime, int] | None:
    """An RFC 3339 time as the server writes it (``2026-12-08T01:02:03.123456789Z``: up to
    nanoseconds, which ``fromisoformat`` does not take) as a comparable value; None if not one."""
    if not isinstance(text, str) or not text:
        return None
    main, _, rest = text.partition(".")
    digits = "".join(itertools.takewhile(str.isdigit, rest))
    zone = rest[len(digits) :] if rest else main[19:]
    try:
        when = datetime.datetime.fromisoformat(main[:19] + (zone.replace("Z", "+00:00") or "+00:00"))
    except ValueError:
        return None
    return when.astimezone(datetime.UTC), int((digits + "000000000")[:9])
