"""Composition root: builds the real collaborators from a Config and runs one command.

``render`` writes once; ``check`` renders in memory and writes nothing; ``run``
renders, then either execs the command in place (``--no-watch``) or supervises it.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from ..config import (
    AUTH_ENV_VARS,
    SYSTEMD_ENV_VARS,
    CliOptions,
    Config,
    build_config,
    parse_toml,
    resolve_config_path,
    template_commands,
    trust_config,
)
from ..errors import UnreachableError, UsageError
from ..files import read_text
from ..identity import Identity
from ..log import masker
from ..process import INBOX, child
from ..refs import looks_like_ref
from ..render import checked_env, is_template_text
from . import collector
from .keeper import RunState, StateKeeper

# Imported where they are used, not here: what a command does not need it does not load.
# `inject -- CMD` with nothing to render needs neither a template sandbox (render: jinja2),
# nor the server's values (model), nor a server connection (client: hvac and requests);
# `--listen` alone loads observe (prometheus_client).
if TYPE_CHECKING:
    import jinja2

    from ..client import LastKnownGood, Login, State, VaultClient, auth
    from ..loop import StartedStale
    from ..model import Request, Secret
    from ..observe import Notifier, ObserveServer, Snapshot
    from ..render import CompileCache, Engine, Job, Rendered, Renderer

log = logging.getLogger(__name__)


def load_config(cli: CliOptions, config_path: str | None, environ: Mapping[str, str], cwd: str) -> Config:
    """Read the config file (if any) and merge it with the CLI and the environment. As root,
    a config file another user could write is refused (unless trusted): it decides what root
    writes where and which commands it runs."""
    path = resolve_config_path(config_path, environ, os.path.isfile)
    data: dict[str, object] = {}
    if path is not None:
        text = read_text(path, "config file", refuse_untrusted=not trust_config(cli, environ))
        data = parse_toml(text, path)
    return build_config(cli, environ, data, config_path=path, cwd=cwd)


def template_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """What ``env()`` in templates sees: inject's environment minus auth material."""
    return {k: v for k, v in environ.items() if k not in AUTH_ENV_VARS}


def prepare(config: Config, environ: Mapping[str, str]) -> Job:
    """Compile templates and classify env values (ambient references included) up front,
    so every usage and syntax error is reported before the server is contacted."""
    from ..render import Job, NoTemplates, plain_env_spec  # not for the child alone (``alone``)

    child.make_undumpable()  # before any secret is read: no core dump, no /proc/<inject>/environ
    env_values = _env_values(config, environ)
    if not config.templates and not any(is_template_text(value) for _, value in env_values):
        env = [plain_env_spec(name, value) for name, value in env_values]
        return Job(config, NoTemplates(), {}, env, {}, _config_digest(config))
    cache = _compile_cache(environ, child.resolve_user(config.user).uid)
    try:
        renderer = _renderer(config, environ, cache)
        templates, sources = _compile_templates(config, renderer)
        env = [renderer.env_spec(name, value) for name, value in env_values]
    finally:
        if cache is not None:
            cache.close()  # only compiling uses it; a later prepare (a reload) opens it again
    owners = {spec.destination: child.resolve_user(spec.owner) for spec in config.templates if spec.owner}
    return Job(config, renderer, templates, env, owners, sources)


def _compile_templates(
    config: Config, renderer: Renderer
) -> tuple[dict[str, tuple[str, jinja2.Template]], dict[str, str]]:
    """destination -> (name, compiled), and the SHA-256 of every source file (and config).
    As root, a source another user could write is refused, like the config file."""
    templates = {}
    sources = _config_digest(config)
    for spec in config.templates:
        text = (
            spec.contents
            if spec.contents is not None
            else read_text(spec.source or "", "template", refuse_untrusted=not config.trust_config)
        )
        templates[spec.destination] = (spec.name, renderer.compile(spec.name, text))
        if spec.source:
            sources[spec.source] = _sha256_hex(text)
    return templates, sources


def _renderer(config: Config, environ: Mapping[str, str], cache: CompileCache | None) -> Renderer:
    from ..render import Renderer  # jinja2 only when there is something to compile

    return Renderer(template_environ(environ), render_timeout_s=config.render_timeout_s, cache=cache)


def _compile_cache(environ: Mapping[str, str], child_uid: int) -> CompileCache | None:
    """The on-disk cache of compiled templates, when this run may use one (as root, or with
    the child under another user) and a private cache directory is available."""
    from ..render import cachedir, compilecache, sandbox
    from ..render import renderer as render

    if not cachedir.usable(euid=os.geteuid(), child_uid=child_uid):
        return None  # a child of inject's own user could write what inject would run

    header = compilecache.header(render.__file__, sandbox.__file__)
    return compilecache.CompileCache.open(cachedir.default_dir(environ), header)


def _config_digest(config: Config) -> dict[str, str]:
    return {config.config_file: _digest_of(config.config_file)} if config.config_file else {}


def _env_values(config: Config, environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """The child's env values to classify: ambient references, then the configured ones."""
    configured = dict(config.env)
    ambient = [
        (name, value)
        for name, value in sorted(environ.items())
        if looks_like_ref(value) and name not in configured
    ]
    return ambient + list(configured.items())


def connect(config: Config, environ: Mapping[str, str]) -> VaultClient:
    """A client with a working token (checked once, retried while unreachable)."""
    client, _, _ = login(config, environ)
    return client


def login(config: Config, environ: Mapping[str, str]) -> tuple[VaultClient, auth.Authenticator, Login]:
    """A logged-in client, the authenticator that can log in again, and the token's TTL."""
    from ..client import auth

    authenticator = auth.Authenticator(config, environ)
    client, grant = auth.logged_in(config, authenticator)
    return client, authenticator, grant


def load_client() -> None:
    """Import the client (hvac, requests, urllib3) on a fresh thread, from a shallow call
    depth. CPython 3.11 keeps frames in 16 KiB chunks and frees a chunk as soon as the call
    that crossed into it returns: a module whose import recurses (urllib3 compiling its URL
    regexes) from a deep call chain (click and inject's layers) can map and unmap one chunk
    thousands of times (6,000 mmap/munmap pairs and +40 ms of start-up were measured). A
    fresh thread starts near the bottom of its own first chunk. An import error here is met
    again, and reported, where the client is used."""
    import threading

    loader = threading.Thread(target=_import_client, name="inject-import", daemon=True)
    loader.start()
    loader.join()


def _import_client() -> None:
    with contextlib.suppress(Exception):
        from ..client import vault  # noqa: F401 - the import is the point


def render_once(job: Job, client: VaultClient) -> Rendered:
    """One complete render in memory (nothing written)."""
    from ..render import render_job

    collector.resume()
    return render_job(job, client, client.read_many)


def write_files(job: Job, rendered: Rendered, identity: Identity) -> list[str]:
    """Write every rendered file atomically, all or nothing; the destinations that changed."""
    writes = job.writes(rendered.files, identity)
    if not writes:
        return []  # (the plain PID 1) the files package stays unloaded
    from ..files import write as files

    return files.write_all(writes).changed


def child_environ(
    config: Config, environ: Mapping[str, str], rendered: Mapping[str, str], identity: Identity | None = None
) -> dict[str, str]:
    """inject's environment plus the rendered vars, minus tokens, auth material and systemd's
    notify socket (unless passed); HOME/USER/LOGNAME follow a ``--user`` switch (as gosu and
    su-exec do)."""
    keep = set(config.pass_env)
    hidden = {*AUTH_ENV_VARS, *SYSTEMD_ENV_VARS}
    if config.state_key_env:
        hidden.add(config.state_key_env)
    env = {k: v for k, v in environ.items() if k not in hidden or k in keep}
    if identity is not None and identity.home:
        env.update(HOME=identity.home, USER=identity.name, LOGNAME=identity.name)
    env.update(rendered)
    return env


# --- commands ---------------------------------------------------------------------------


def cmd_render(config: Config, environ: Mapping[str, str]) -> int:
    """``inject render``: write every file once and exit 0."""
    identity = child.resolve_user(config.user)
    keeper = StateKeeper.of(config, environ)
    if keeper is None:
        job, rendered = _render_in_memory(config, environ)
    else:
        job, rendered = _render_with_state(config, environ, keeper)
    changed = write_files(job, rendered, identity)
    log.info("rendered %d file(s), %d changed", len(rendered.files), len(changed))
    run_template_commands(config, changed, child_environ(config, environ, rendered.env), identity)
    return 0


def run_template_commands(
    config: Config, changed: Sequence[str], env: Mapping[str, str], identity: Identity
) -> None:
    """Run the ``command`` of every template whose file was just written (as consul-template),
    as the ``--user``."""
    commands = child.Commands(child.Reaper(), identity)
    INBOX.on_exit(commands.kill_all)
    commands.run_all(template_commands(config, changed), env=env)


def _render_in_memory(config: Config, environ: Mapping[str, str]) -> tuple[Job, Rendered]:
    job = prepare(config, environ)
    client = connect(config, environ)
    try:
        return job, render_once(job, client)
    finally:
        client.close()


def _render_with_state(
    config: Config, environ: Mapping[str, str], keeper: StateKeeper
) -> tuple[Job, Rendered]:
    """Render taking over what the state holds (token, leases, certificates), then save the
    state before any file is written: with ``--hand-over`` its token and leases too, for the
    next inject (``inject render`` revokes nothing: they stay valid either way)."""
    import time

    from ..client import Reusing, snapshot
    from ..render import render_job

    job = prepare(config, environ)
    previous = keeper.load()
    authenticator = _authenticator(config, environ)
    client, _, taken = _resumed(config, authenticator, previous)
    try:
        reader = Reusing(client, taken)
        collector.resume()
        rendered = render_job(job, reader, reader.read_many)
        token = client.token if config.hand_over and authenticator.owns_token else ""
    finally:
        client.close()
    state = snapshot(rendered.secrets, token=token, now=time.time(), previous=previous)
    keeper.save(state if config.hand_over else state.without_hand_over())
    return job, rendered


def _resumed(
    config: Config, authenticator: auth.Authenticator, state: State | None
) -> tuple[VaultClient, Login, dict[Request, Secret]]:
    from ..client import resumed  # hvac and requests, only when there is a server to talk to

    return resumed(config, authenticator, state)


def cmd_check(config: Config, environ: Mapping[str, str]) -> int:
    """``inject check``: validate config and templates and read every secret; write nothing."""
    _, rendered = _render_in_memory(config, environ)
    log.info(
        "ok: %d template(s), %d env var(s), %d secret(s) readable",
        len(rendered.files),
        len(rendered.env),
        len(rendered.secrets),
    )
    return 0


def cmd_plan(config: Config, environ: Mapping[str, str]) -> int:
    """``inject plan``: print what a render would change and which secret versions drive it."""
    _, rendered = _render_in_memory(config, environ)
    for line in plan_lines(rendered, _current_text, environ):
        print(line)
    return 0


def _current_text(path: str) -> str | None:
    from ..files import safepath  # only `inject plan` reads what is there

    data = safepath.read_regular_file(path)  # never blocks on a FIFO, never reads a huge file whole
    try:
        return None if data is None else data.decode()
    except UnicodeDecodeError:
        return None


def plan_lines(
    rendered: Rendered, current: Callable[[str], str | None], environ: Mapping[str, str]
) -> list[str]:
    """``+``/``~``/``=`` per destination and env name, with the secret versions it reads;
    masked like a log line (a path a template computed can hold a secret value)."""
    from ..render import secret_strings

    mask = masker(secret_strings(rendered.secrets.values()))
    return [mask(line) for line in _plan_lines(rendered, current, environ)]


def _plan_lines(
    rendered: Rendered, current: Callable[[str], str | None], environ: Mapping[str, str]
) -> list[str]:
    lines = []
    for dest, text in rendered.files.items():
        old = current(dest)
        mark, why = (
            ("+", "new file") if old is None else ("=", "unchanged") if old == text else ("~", "changes")
        )
        lines.append(f"{mark} {dest} ({why}; {_sources(rendered, dest)})")
    for name, value in rendered.env.items():
        old_value = environ.get(name)
        mark = "=" if old_value == value else "+" if old_value is None or looks_like_ref(old_value) else "~"
        lines.append(f"{mark} env {name} ({_sources(rendered, 'env:' + name)})")
    return lines


def _sources(rendered: Rendered, output: str) -> str:
    from ..model import request_order

    keys = sorted(rendered.deps.get(output, frozenset()), key=request_order)
    if not keys:
        return "no secrets"
    return "reads " + ", ".join(f"{key.label} {rendered.secrets[key].describe}" for key in keys)


def cmd_run(config: Config, environ: Mapping[str, str], argv: Sequence[str]) -> int:
    """``inject -- CMD``: render, then exec (``--no-watch``) or start and supervise CMD."""
    if not argv:
        raise UsageError("no command given: use 'inject -- COMMAND' (or 'inject render' to only write files)")
    if config.no_watch and config.mask_output:
        raise UsageError(
            "no_watch and mask_output: with --no-watch the command replaces inject, so nothing "
            "is left to conceal its output; turn one of them off"
        )
    from ..process import alone  # the child alone: no supervisor loop (not for render or watch)

    env_values = _env_values(config, environ)
    # under systemd (NOTIFY_SOCKET) the loop runs: it tells systemd and pets the watchdog
    if not environ.get("NOTIFY_SOCKET") and alone.applies(config, env_values, _needs_server):
        child.make_undumpable()  # inject's environment may still hold a token
        collector.resume()
        identity = child.resolve_user(config.user)
        literals = {name: checked_env(name, value) for name, value in env_values}
        return alone.run(config, {**child_environ(config, environ, {}, identity), **literals}, argv, identity)
    return _keep_fresh(config, environ, argv)


def _needs_server(value: str) -> bool:
    return looks_like_ref(value) or is_template_text(value)


def cmd_watch(config: Config, environ: Mapping[str, str]) -> int:
    """``inject watch``: render, then keep the files fresh with no child (sidecar)."""
    return _keep_fresh(config, environ, None)


def _keep_fresh(config: Config, environ: Mapping[str, str], argv: Sequence[str] | None) -> int:
    # Up before the first render (it says "pending" meanwhile); with --no-watch nothing stays
    # to report on once the command replaces inject.
    observer = None if argv and config.no_watch else _start_observer(config)
    notify = _notifier(config, environ)
    try:
        return _render_and_supervise(
            config, environ, argv, observer.board.publish if observer else None, notify
        )
    finally:
        if observer is not None:
            observer.stop()


def _start_observer(config: Config) -> ObserveServer | None:
    """The health and metrics endpoints, when ``--listen`` asks for them."""
    if not config.listen:
        return None
    from ..observe import Board, ObserveServer  # prometheus_client only when listening

    observer = ObserveServer(config.listen, Board())
    observer.start()
    return observer


def _notifier(config: Config, environ: Mapping[str, str]) -> Notifier | None:
    """systemd's notify socket, when inject runs as a ``Type=notify`` service; not when the
    child is given ``NOTIFY_SOCKET`` (``pass_env``) and replaces inject (``--no-watch``): the
    app then speaks for itself."""
    if not environ.get("NOTIFY_SOCKET") or (config.no_watch and "NOTIFY_SOCKET" in config.pass_env):
        return None
    from ..observe import notifier_from  # the socket only under systemd

    return notifier_from(environ)


def _render_and_supervise(
    config: Config,
    environ: Mapping[str, str],
    argv: Sequence[str] | None,
    publish: Callable[[Snapshot], None] | None,
    notify: Notifier | None = None,
) -> int:
    from ..loop import FileWatcher

    job = prepare(config, environ)
    identity = child.resolve_user(config.user)
    offline = not (job.templates or job.env)  # nothing to render: a plain PID 1 needs no server
    authenticator = None if offline else _authenticator(config, environ)
    keeper = None if offline else StateKeeper.of(config, environ)
    previous = keeper.load() if keeper is not None else None
    auth_file = _watched_auth_file(authenticator)
    events = INBOX.events
    # Watching before the first render: an edit made while it runs is not lost. With
    # --no-watch the command replaces inject right after it: nothing would read the events,
    # so nothing is watched (and watchfiles is not even imported).
    exec_argv = argv if argv and config.no_watch else None
    watcher = FileWatcher([] if exec_argv else _watched_files(config, auth_file), events)
    watcher.start()
    reaper = child.Reaper()
    commands = child.Commands(reaper, identity)
    INBOX.on_exit(commands.kill_all)
    try:
        taken: dict[Request, Secret] = {}
        stale: tuple[LastKnownGood, StartedStale] | None = None
        if authenticator is None:
            client, grant = _offline_client(config)
        elif keeper is None:
            client, grant = _logged_in(config, authenticator)
        else:
            try:
                client, grant, taken = _resumed(config, authenticator, previous)
            except UnreachableError as exc:
                if exec_argv or not config.start_stale:
                    raise
                client, grant, stale = _from_state(config, authenticator, previous, exc)
        engine = _engine(job, client, taken) if stale is None else _stale_engine(job, stale[0])
        collector.resume()
        try:
            rendered = engine.first_render()
            run_state = _run_state(keeper, authenticator, engine, client, save=stale is None)
            with INBOX.deferred():
                changed = write_files(job, rendered, identity)
        except BaseException:
            client.close()
            raise
    except BaseException:
        watcher.stop()
        raise
    commands.run_all(template_commands(config, changed), env=child_environ(config, environ, rendered.env))
    if exec_argv:
        watcher.stop()
        client.close()
        log.debug("exec %s in place of inject", exec_argv[0])
        if notify is not None:  # the same pid goes on as the app: rendered, and starting now
            notify.ready(f"{len(rendered.files)} file(s) rendered; exec {exec_argv[0]}")
        child.exec_in_place(exec_argv, child_environ(config, environ, rendered.env, identity), identity)
    from ..loop import wiring  # only long-running commands need the loop

    startup = wiring.Startup(
        config=config,
        environ=environ,
        engine=engine,
        client=client,
        authenticator=authenticator,
        grant=grant,
        base_env=child_environ(config, environ, {}, identity),
        auth_file=auth_file,
        identity=identity,
        reaper=reaper,
        commands=commands,
        rebuild_job=lambda: _rebuild(config, environ),
        reconcile=lambda: changed_sources(engine.job),
        publish=publish,
        persist=run_state,
        notify=notify,
        stale=stale[1] if stale is not None else None,
    )
    try:
        return wiring.supervise(startup, argv, events)
    finally:
        watcher.stop()
        client.close()


def _from_state(
    config: Config, authenticator: auth.Authenticator, state: State | None, cause: UnreachableError
) -> tuple[VaultClient, None, tuple[LastKnownGood, StartedStale]]:
    """The server did not answer within the start-up budget: with ``[state] start_stale``,
    start from the state's last-known-good values (one line says so); with nothing usable,
    fail as without a state (``cause``). A client without a token, for when it answers."""
    import datetime
    import time

    from ..client import LastKnownGood, VaultClient, reconnect, server_settings, stale_values
    from ..loop import StartedStale

    now = time.time()
    values = stale_values(state, now, config.state_max_age_s) if state is not None else None
    if not values or state is None:
        why = "there is no usable state" if state is None else "the state is older than [state] max_age"
        if state is not None and values is not None:
            why = "nothing in the state is still usable"
        log.warning("cannot start from the state's last-known-good values: %s", why)
        raise cause
    saved = datetime.datetime.fromtimestamp(state.saved_at, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    log.warning(
        "%s; starting from the state's last-known-good values (saved %s, %d secret(s)) until it answers",
        cause,
        saved,
        len(values),
    )
    client = VaultClient(server_settings(config), "", retry_timeout_s=config.retry_timeout_s)
    started = StartedStale(lambda c: reconnect(c, authenticator, state), state.saved_at, now)
    return client, None, (LastKnownGood(values, cause), started)


def _stale_engine(job: Job, reader: LastKnownGood) -> Engine:
    from ..render import Engine

    return Engine(job, reader, reader.read_many)


def _engine(job: Job, client: VaultClient, taken: Mapping[Request, Secret]) -> Engine:
    from ..client import Reusing
    from ..render import Engine

    if not taken:
        return Engine(job, client, client.read_many)
    reader = Reusing(client, taken)
    return Engine(job, reader, reader.read_many)


def _run_state(
    keeper: StateKeeper | None,
    authenticator: auth.Authenticator | None,
    engine: Engine,
    client: VaultClient,
    *,
    save: bool = True,
) -> RunState | None:
    """The loop's state keeper, with the first render saved (before any file is written;
    not a render from the state's own values: its age must not be renewed)."""
    if keeper is None:
        return None
    run_state = RunState(keeper, own_token=authenticator is not None and authenticator.owns_token)
    if save:
        run_state.save(engine.secrets, client.token)
    return run_state


def _authenticator(config: Config, environ: Mapping[str, str]) -> auth.Authenticator:
    from ..client import auth

    return auth.Authenticator(config, environ)


def _watched_auth_file(authenticator: auth.Authenticator | None) -> str:
    if authenticator is None:
        return ""
    try:
        return authenticator.watched_file
    except UsageError:
        return ""  # the login that follows reports it


def _watched_files(config: Config, auth_file: str) -> list[str]:
    paths = [spec.source for spec in config.templates if spec.source]
    paths += [config.config_file or "", auth_file]
    return [p for p in paths if p]


def _logged_in(config: Config, authenticator: auth.Authenticator) -> tuple[VaultClient, Login]:
    from ..client import logged_in  # hvac and requests, only when there is a server to talk to

    return logged_in(config, authenticator)


def _offline_client(config: Config) -> tuple[VaultClient, Login | None]:
    """A client that never logs in: nothing will ask it for a secret (unless a reloaded
    config adds templates). It is made on first use, so a plain PID 1 loads no hvac."""

    def make(token: str, retry_timeout_s: float) -> VaultClient:
        from ..client import VaultClient, server_settings

        return VaultClient(server_settings(config), token, retry_timeout_s=retry_timeout_s)

    return cast("VaultClient", DeferredClient(make, retry_timeout_s=0)), None


class DeferredClient:
    """Stands in for a VaultClient and makes the real one (importing hvac) on first use.

    The methods the loop binds or calls at start-up without sending anything (``clone``,
    ``set_token``, ``close``, and ``fetch``/``read_many``, which are handed over as bound
    methods) are defined here so that they do not make the client; anything else is
    forwarded to the real client, made then with the token given so far.
    """

    def __init__(self, make: Callable[[str, float], VaultClient], *, retry_timeout_s: float) -> None:
        self._make = make
        self._retry_timeout_s = retry_timeout_s
        self._token = ""
        self._client: VaultClient | None = None

    def _real(self) -> VaultClient:
        if self._client is None:
            self._client = self._make(self._token, self._retry_timeout_s)
        return self._client

    def clone(self, *, retry_timeout_s: float) -> VaultClient:
        """Another deferred client with the same token and its own default budget."""
        if self._client is not None:
            return self._client.clone(retry_timeout_s=retry_timeout_s)
        other = DeferredClient(self._make, retry_timeout_s=retry_timeout_s)
        other._token = self._token
        return cast("VaultClient", other)

    def set_token(self, token: str) -> None:
        """Use ``token`` from now on."""
        self._token = token
        if self._client is not None:
            self._client.set_token(token)

    def close(self) -> None:
        """Close the real client's session, if one was made."""
        if self._client is not None:
            self._client.close()

    def fetch(self, request: Request, *, budget_s: float | None = None) -> Any:
        """``VaultClient.fetch`` on the real client."""
        return self._real().fetch(request, budget_s=budget_s)

    def read_many(self, keys: Any, **options: Any) -> Any:
        """``VaultClient.read_many`` on the real client."""
        return self._real().read_many(keys, **options)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real(), name)


def _rebuild(config: Config, environ: Mapping[str, str]) -> Job:
    """Re-read the config file (if any) and every template source."""
    if config.config_file is not None:
        config = load_config(
            config.cli or CliOptions(), config.config_file, environ, config.cwd or os.getcwd()
        )
    return prepare(config, environ)


def changed_sources(job: Job) -> frozenset[str]:
    """Template sources and the config file whose content differs from what ``job`` compiled
    (edited before the file watcher was up)."""
    return frozenset(path for path, digest in job.sources.items() if _digest_of(path) != digest)


def _sha256_hex(text: str) -> str:
    import hashlib  # loads OpenSSL: only when there is a source or config to digest

    return hashlib.sha256(text.encode()).hexdigest()


def _digest_of(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return _sha256_hex(handle.read())
    except (OSError, UnicodeDecodeError):
        return ""
