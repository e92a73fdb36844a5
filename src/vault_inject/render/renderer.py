"""Templates and env values -> rendered strings, in a Jinja sandbox.

No disk and no network: template texts come in as strings and secrets come from a
``SecretReader``. Within one render each distinct request (``model.Request``: a path at
a version, a certificate, a decryption) is made once and shared by every template and env
value (so ``#username`` and ``#password`` of a dynamic path come from one lease, and the
certificate and key templates from one issue). Every failure becomes a RenderError naming the
template, the line and the missing name, or the SecretError the read raised.
"""

from __future__ import annotations

import base64
import binascii
import json
import shlex
import types
from collections.abc import Iterable, Iterator, Mapping
from types import CodeType
from typing import Any

import jinja2
import jinja2.nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import safe_range

from ..errors import InjectError, RenderError, SecretNotFound
from ..log import redact
from ..model import (
    KvList,
    KvRead,
    PkiIssue,
    Request,
    Secret,
    SecretWrite,
    TransitDecrypt,
    computed_in_template,
)
from .compilecache import CompileCache, Keys
from .limits import (
    DEFAULT_RENDER_TIMEOUT_S,
    MAX_OUTPUT_CHARS,
    BudgetExceeded,
    check_json,
    render_budget,
)
from .names import NamedUndefined, Names, is_literal, literal_names, rendering, shown, shown_path
from .outputs import (
    MAX_ENV_ENTRY_BYTES,
    EnvSpec,
    ReadCache,
    Rendered,
    SecretReader,
    as_text,
    checked_env,
    is_template_text,
    nearest,
    plain_env_spec,
    ref_request,
    render_plain_env,
    secret_strings,
)
from .sandbox import Sandbox

__all__ = [
    "MAX_ENV_ENTRY_BYTES",
    "EnvSpec",
    "ReadCache",
    "Rendered",
    "Renderer",
    "SecretData",
    "SecretReader",
    "as_text",
    "literal_secret_keys",
    "secret_strings",
]

_MISSING: Any = object()


_SECRET_FUNCTIONS = ("secret", "secret_meta")


def literal_secret_keys(tree: jinja2.nodes.Template) -> frozenset[KvRead]:
    """The read of every ``secret('literal path'[, version])`` call in a template."""
    keys = set()
    for call in tree.find_all(jinja2.nodes.Call):
        if not (isinstance(call.node, jinja2.nodes.Name) and call.node.name in _SECRET_FUNCTIONS):
            continue
        path = _const(call.args[0]) if call.args else None
        version_node = call.args[1] if len(call.args) > 1 else _kwarg(call, "version")
        version = _const(version_node) if version_node is not None else None
        if isinstance(path, str) and path.strip("/") and (version is None or _is_version(version)):
            keys.add(KvRead.of(path, version))
    return frozenset(keys)


def _path_order(key: tuple[str, int | None]) -> tuple[str, int]:
    return key[0], key[1] or 0


def _const(node: jinja2.nodes.Node) -> Any:
    return node.value if isinstance(node, jinja2.nodes.Const) else None


def _kwarg(call: jinja2.nodes.Call, name: str) -> jinja2.nodes.Node | None:
    return next((kw.value for kw in call.kwargs if kw.key == name), None)


def _is_version(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


class _MissingKey(Exception):
    """A template asked a secret for a key it does not have (not a LookupError on purpose:
    Jinja would turn a LookupError into a vague 'has no attribute' undefined)."""


class SecretData(Mapping[str, Any]):
    """A secret's data as the template sees it: ``s.password`` or ``s['password']``. A
    missing key is named only when the template writes it literally (``names``); ``shown``
    is how messages name the secret (``'secret/app'``, or that its path was computed)."""

    def __init__(self, shown: str, data: Mapping[str, Any], names: Names = frozenset()) -> None:
        self._shown = shown
        self._data = data
        self._names = names

    def __getitem__(self, key: str) -> Any:
        if key not in self._data:
            hint = nearest(key, self._data) if is_literal(key, self._names) else ""
            raise _MissingKey(f"secret {self._shown} has no key {shown(key, self._names)}{hint}")
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key``, or ``default`` when the secret has no such key."""
        return self._data.get(key, default)

    def __repr__(self) -> str:  # never the values
        return f"<secret {self._shown} keys={sorted(self._data)}>"


# --- filters --------------------------------------------------------------------------


def _b64encode(value: Any) -> str:
    data = value if isinstance(value, bytes) else str(value).encode()
    return base64.b64encode(data).decode("ascii")


def _b64decode(value: Any) -> str:
    try:
        return base64.b64decode(str(value), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise _FilterError("b64decode: value is not base64 of UTF-8 text") from None


def _tojson(value: Any, indent: int | None = None) -> str:
    plain = _plain(value)
    check_json(plain, indent)
    return json.dumps(plain, indent=indent, sort_keys=False)


def _plain(value: Any) -> Any:
    if isinstance(value, SecretData):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _shell_quote(value: Any) -> str:
    return shlex.quote(str(value))


class _FilterError(Exception):
    """A filter got a value it cannot handle (message never includes the value)."""


# --- the renderer ---------------------------------------------------------------------


class Renderer:
    """Compiles templates once and renders them against a per-render ReadCache, each
    render (all templates and env values together) within ``render_timeout_s`` of CPU time."""

    def __init__(
        self,
        environ: Mapping[str, str],
        *,
        render_timeout_s: float = DEFAULT_RENDER_TIMEOUT_S,
        cache: CompileCache | None = None,
    ) -> None:
        self._environ = environ
        self._cache = cache
        self._render_timeout_s = render_timeout_s
        self._jinja = Sandbox(
            filters={
                "b64encode": _b64encode,
                "b64decode": _b64decode,
                "tojson": _tojson,
                "shell_quote": _shell_quote,
            },
            undefined=NamedUndefined,
            autoescape=False,
            keep_trailing_newline=True,
        )
        self._jinja.globals.clear()  # no range/lipsum/cycler/joiner/namespace/dict beyond ours
        self._jinja.globals["range"] = safe_range  # capped at MAX_RANGE items
        self._static: dict[int, frozenset[Request]] = {}
        self._names: dict[int, Names] = {}  # per template: what its messages may quote

    def compile(self, name: str, text: str) -> jinja2.Template:
        """Compile template ``name`` (or load it from the compile cache); RenderError naming
        the line on a syntax error."""
        cached = self._cache.load(name, text) if self._cache is not None else None
        template = self._from_code(cached[0]) if cached is not None else None
        if template is not None and cached is not None:
            keys, names = cached[1], cached[2]
        else:
            code, keys, names = self._compile(name, text)
            template = self._jinja.template_class.from_code(self._jinja, code, self._jinja.globals, None)
        self._static[id(template)] = frozenset(KvRead(path, version) for path, version in keys)
        self._names[id(template)] = frozenset(names)
        return template

    def _from_code(self, code: CodeType) -> jinja2.Template | None:
        """The template of a cached code object, or None when that code does not load
        (compiled again then: a bad entry is never an error)."""
        try:
            return self._jinja.template_class.from_code(self._jinja, code, self._jinja.globals, None)
        except Exception:
            return None

    def _compile(self, name: str, text: str) -> tuple[CodeType, Keys, tuple[str | int, ...]]:
        try:
            tree = self._jinja.parse(text, name=name, filename=name)
            code = self._jinja.compile(tree, name=name, filename=name)
        except jinja2.TemplateSyntaxError as exc:
            raise RenderError(f"template '{name}' line {exc.lineno}: {exc.message}") from None
        except (RecursionError, MemoryError, SyntaxError):
            # Jinja's parser recurses per nesting level and Python's compiler caps indentation:
            # thousands of nested brackets or blocks end here, not in a traceback.
            raise RenderError(f"template '{name}': expressions or blocks nested too deeply") from None
        # (path, version) pairs: what the cache stores (marshal knows no dataclasses)
        keys = tuple(sorted(((k.path, k.version) for k in literal_secret_keys(tree)), key=_path_order))
        names = literal_names(tree)
        if self._cache is not None:
            self._cache.store(name, text, code, keys, names)
        return code, keys, names

    def static_keys(self, templates: Iterable[jinja2.Template], env: Iterable[EnvSpec]) -> set[Request]:
        """Every secret the templates and env values name literally, so they can be
        fetched together before rendering (paths computed at render time are read then)."""
        keys: set[Request] = set()
        for template in templates:
            keys |= self._static.get(id(template), frozenset())
        for spec in env:
            if spec.ref is not None:
                keys.add(ref_request(spec.ref))
            elif spec.template is not None:
                keys |= self._static.get(id(spec.template), frozenset())
        return keys

    def env_spec(self, name: str, raw: str) -> EnvSpec:
        """Classify an env value: reference (parsed now), template (compiled now) or literal."""
        if is_template_text(raw):
            return EnvSpec(name=name, template=self.compile(f"env {name}", raw))
        return plain_env_spec(name, raw)

    def render_all(
        self,
        templates: Mapping[str, tuple[str, jinja2.Template]],
        env: list[EnvSpec],
        reader: SecretReader,
        known: Mapping[Request, Secret] | None = None,
    ) -> Rendered:
        """Render every template (destination -> (name, compiled)) and env value, or raise.
        ``known`` holds secrets already fetched for this render (see static_keys)."""
        cache = ReadCache(reader, known)
        out = Rendered()
        with render_budget(timeout_s=self._render_timeout_s):
            for destination, (name, template) in templates.items():
                out.files[destination], out.deps[destination] = self.render_one(name, template, cache)
            for spec in env:
                out.env[spec.name], out.deps["env:" + spec.name] = self.render_env(spec, cache)
        out.secrets = dict(cache.secrets)
        return out

    def render_env(self, spec: EnvSpec, cache: ReadCache) -> tuple[str, frozenset[Request]]:
        """One env value and the secrets it used (a NUL byte cannot be passed to a process)."""
        if spec.template is None:
            return render_plain_env(spec, cache)
        text, deps = self.render_one(f"env {spec.name}", spec.template, cache)
        return checked_env(spec.name, text), deps

    def render_one(
        self, name: str, template: jinja2.Template, cache: ReadCache
    ) -> tuple[str, frozenset[Request]]:
        """Render one compiled template; return its text and the secrets it read."""
        used: set[Request] = set()
        names = self._names.get(id(template), frozenset())
        context = self._context(cache, used, names)
        try:
            # the budget is a no-op inside render_all's; `rendering`: the names messages may quote
            with render_budget(timeout_s=self._render_timeout_s), rendering(names):
                text = _bounded(name, template.generate(context))
        except InjectError as exc:  # a read inside the template failed: say where, keep the kind
            raise _located(exc, name, cache) from None  # its message can quote a computed path
        except Exception as exc:  # the sandbox can raise anything (OverflowError, ...)
            raise RenderError(_masked(_describe(name, exc), cache)) from None  # jinja's can quote values
        return text, frozenset(used)

    def _context(self, cache: ReadCache, used: set[Request], names: Names) -> dict[str, Any]:
        """The template's functions. Messages quote a path, key or name only when the
        template writes it literally (``names``); a computed one may be a secret value."""

        def secret(path: str, version: int | None = None) -> SecretData:
            found = _read(cache, used, path, version, names)
            return SecretData(shown_path(path, names), found.data, names)

        def secret_meta(path: str, version: int | None = None) -> dict[str, Any]:
            return _meta(_read(cache, used, path, version, names))

        def env(name: str, default: Any = _MISSING) -> Any:
            if name in self._environ:
                return self._environ[name]
            if default is _MISSING:
                named = shown(name, names)
                hint = f" (give env({named}, default))" if is_literal(name, names) else ""
                raise _MissingKey(f"environment variable {named} is not set{hint}")
            return default

        def secret_previous(path: str, n: int = 1) -> SecretData | None:
            current = _read(cache, used, path, None, names)
            if current.version is None:
                raise _MissingKey(
                    f"secret_previous({shown_path(path, names)}): only KV v2 secrets have versions"
                )
            wanted = current.version - n
            if n < 1 or wanted < 1:
                return None
            try:
                older = _read(cache, used, path, wanted, names, version_known=True)
            except SecretNotFound:
                return None  # deleted or destroyed: there is no usable previous key
            return SecretData(f"{shown_path(path, names)} v{wanted}", older.data, names)

        def pki_cert(role_path: str, **params: Any) -> SecretData:
            _no_dot_segments(str(role_path), names)
            request = PkiIssue.of(role_path, params)
            if not (is_literal(role_path, names) and all(is_literal(v, names) for v in params.values())):
                request = computed_in_template(request)
            found = _fetch(cache, used, request)
            return SecretData(shown_path(role_path, names), found.data, names)

        def transit_decrypt(key: str, ciphertext: str) -> str:
            _no_dot_segments(str(key), names)
            request = TransitDecrypt.of(key, str(ciphertext))
            if not (is_literal(key, names) and is_literal(ciphertext, names)):
                request = computed_in_template(request)
            found = _fetch(cache, used, request)
            return str(found.data["plaintext"])

        def secrets(path: str) -> list[str]:
            if not isinstance(path, str) or not path.strip("/"):
                raise _MissingKey("secrets() needs a path like 'secret/services'")
            _no_dot_segments(path, names)
            request = KvList.of(path)
            if not is_literal(path, names):
                request = computed_in_template(request)
            listed = _fetch(cache, used, request).listed
            return list(listed or ())

        def secret_write(path: str, /, **params: Any) -> SecretData:
            if not isinstance(path, str) or not path.strip("/"):
                raise _MissingKey("secret_write() needs a path like 'ssh/sign/app'")
            _no_dot_segments(path, names)
            plain = {name: _plain(value) for name, value in params.items()}
            try:
                request = SecretWrite.of(path, plain)
            except (TypeError, ValueError):
                raise _MissingKey(
                    f"secret_write({shown_path(path, names)}): parameters must be text, numbers,"
                    " booleans or lists and mappings of those"
                ) from None
            if not (is_literal(path, names) and all(_literal_value(v, names) for v in plain.values())):
                request = computed_in_template(request)
            found = _fetch(cache, used, request)
            return SecretData(shown_path(path, names), found.data, names)

        return {
            "secret": secret,
            "secrets": secrets,
            "secret_write": secret_write,
            "secret_meta": secret_meta,
            "secret_previous": secret_previous,
            "pki_cert": pki_cert,
            "transit_decrypt": transit_decrypt,
            "env": env,
        }


def _bounded(name: str, chunks: Iterator[str]) -> str:
    """Join the rendered chunks, refusing output past MAX_OUTPUT_CHARS as it grows."""
    parts, size = [], 0
    for chunk in chunks:
        size += len(chunk)
        if size > MAX_OUTPUT_CHARS:
            raise RenderError(f"template '{name}': output larger than {MAX_OUTPUT_CHARS // 2**20} MiB")
        parts.append(chunk)
    return "".join(parts)


def _read(
    cache: ReadCache,
    used: set[Request],
    path: Any,
    version: Any,
    names: Names,
    *,
    version_known: bool = False,
) -> Secret:
    """``secret(path, version)``: the read is named as computed unless the template writes
    the path (and the version, unless ``version_known``: one inject worked out) literally."""
    if not isinstance(path, str) or not path.strip("/"):
        raise _MissingKey("secret() needs a path like 'secret/infrastructure/postgres'")
    _no_dot_segments(path, names)
    if version is not None and (not isinstance(version, int) or isinstance(version, bool) or version < 1):
        raise _MissingKey(f"secret({shown_path(path, names)}): version must be a positive integer")
    request = KvRead.of(path, version)
    if not (is_literal(path, names) and (version is None or version_known or is_literal(version, names))):
        request = computed_in_template(request)
    return _fetch(cache, used, request)


def _literal_value(value: Any, names: Names) -> bool:
    """True when a parameter is written in the template: a literal string or number, a
    boolean or none (one bit: no secret hides in it), or a list or mapping of literals."""
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, list | tuple):
        return all(_literal_value(item, names) for item in value)
    if isinstance(value, Mapping):
        return all(is_literal(k, names) and _literal_value(v, names) for k, v in value.items())
    return is_literal(value, names)


def _no_dot_segments(path: str, names: Names) -> None:
    # As in references: a path is what a person types after `bao kv get`, never relative,
    # so a value spliced into a computed path cannot climb out of the intended prefix.
    if any(segment in (".", "..") for segment in path.split("/")):
        raise _MissingKey(f"secret path {shown_path(path, names)} contains '.' or '..'")


def _fetch(cache: ReadCache, used: set[Request], request: Request) -> Secret:
    try:
        found = cache.get(request)
    except InjectError as exc:
        if request.computed and request.path in str(exc):  # a reader that quoted it anyway
            raise _with_message(exc, f"reading {request.label} failed ({type(exc).__name__})") from None
        raise
    used.add(request)
    return found


def _meta(secret: Secret) -> dict[str, Any]:
    return {
        "path": secret.path,
        "version": secret.version,
        "created_time": secret.created_time,
        "lease_id": secret.lease_id,
        "lease_duration": secret.lease_duration_s,
        "renewable": secret.renewable,
        "expires_at": secret.expires_at,
    }


def _masked(message: str, cache: ReadCache) -> str:
    """Jinja and our own messages can quote a key that came from a secret: mask every
    value this render has seen (and every value the process has registered)."""
    return redact(message, also=secret_strings(cache.secrets.values()))


def _located(exc: InjectError, name: str, cache: ReadCache) -> InjectError:
    """``exc`` with the template and line in front of its message: the same class (so the
    exit code and the loop's transient/permanent decision stay) and the same attributes
    (``PermissionDenied.token_rejected``, a 429's ``retry_after_s``...)."""
    message = str(exc)
    if not message.startswith(f"template '{name}'"):
        line = _template_line(exc, name)
        message = f"template '{name}'" + (f" line {line}" if line else "") + f": {message}"
    return _with_message(exc, _masked(message, cache))


def _with_message(exc: InjectError, message: str) -> InjectError:
    """A copy of ``exc`` (same class and attributes) with another message."""
    copied = type(exc).__new__(type(exc))
    copied.__dict__.update(exc.__dict__)
    copied.args = (message,)
    return copied


def _describe(name: str, exc: BaseException) -> str:
    line = _template_line(exc, name)
    where = f"template '{name}'" + (f" line {line}" if line else "")
    if isinstance(exc, _MissingKey | _FilterError | BudgetExceeded):
        return f"{where}: {exc}"
    if isinstance(exc, jinja2.UndefinedError):
        return f"{where}: {exc.message}"
    if isinstance(exc, SecurityError):
        return f"{where}: unsafe operation refused by the sandbox: {exc}"
    if isinstance(exc, RecursionError | MemoryError | OverflowError):
        return f"{where}: template too large or too deeply nested ({type(exc).__name__})"
    # Python's own messages can quote the value (int('...')): name the kind only.
    return f"{where}: {type(exc).__name__} while rendering (run with --debug for details)"


def _template_line(exc: BaseException, filename: str) -> int | None:
    tb: types.TracebackType | None = exc.__traceback__
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line
