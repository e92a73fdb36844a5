"""api-brain: a tiny web service that runs as inject's child (compose.yaml, `api-brain`).

It reads what inject gave it when it started:

* ``/run/secrets/production.yml``, rendered from the repo's templates/production.yml.j2;
* the env vars ``REDIS_PASSWORD`` (a ``vault:`` reference) and
  ``API_BRAIN_SECRET_VERSION`` (a template using ``secret_meta``),

and serves a page that shows, for each secret, a short sha256 fingerprint and the KV
version, never a value. When a secret gets a new version, inject restarts this process
(``on_change = "restart"``): the page then shows a new pid and the new fingerprints,
while the container itself keeps running.

``GET /`` is the page, ``GET /status`` the same as JSON (rotate.sh reads it),
``GET /healthz`` answers 200. Standard library only.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

from quiet_http import QuietHandler

CONFIG = Path(os.environ.get("APP_CONFIG", "/run/secrets/production.yml"))
PORT = int(os.environ.get("APP_PORT", "8080"))
# Plain settings shown as they are; every other key in the file is a secret.
PLAIN = {"host", "port", "database"}
# Files this process must NOT be able to read (inject's own credentials).
FORBIDDEN = ("/run/approle/secret_id", "/run/approle/role_id")


def fingerprint(value: str) -> str:
    """A short sha256 prefix: enough to see a value change, useless to guess it."""
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()[:12]


def parse_config(text: str) -> dict[str, dict[str, str]]:
    """The two-level ``section:`` / ``  key: value`` YAML the template writes."""
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, _, value = line.strip().partition(":")
        if not line.startswith(" "):
            current = sections.setdefault(key, {})
            continue
        value = value.strip()
        current[key] = json.loads(value) if value.startswith('"') else value
    return sections


def readable(path: str) -> bool:
    """True when this process can open ``path`` (it should not, for inject's credentials)."""
    try:
        with open(path, "rb"):
            return True
    except OSError:
        return False


def snapshot() -> dict[str, object]:
    """What this process has: versions and fingerprints, never values."""
    config = parse_config(CONFIG.read_text(encoding="utf-8"))
    shown = {
        f"{section}.{key}": value if key in PLAIN else fingerprint(value)
        for section, keys in config.items()
        for key, value in keys.items()
    }
    redis_password = os.environ.get("REDIS_PASSWORD", "")
    return {
        "service": "api-brain",
        "secret_version": int(os.environ.get("API_BRAIN_SECRET_VERSION", "0")),
        "pid": os.getpid(),
        "uid": os.getuid(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config_file": str(CONFIG),
        "config": shown,
        "env": {"REDIS_PASSWORD": fingerprint(redis_password) if redis_password else "MISSING"},
        "vault_token_visible": any(name in os.environ for name in ("VAULT_TOKEN", "BAO_TOKEN")),
        "approle_files_readable": any(readable(path) for path in FORBIDDEN),
        "redis_password_matches_config": redis_password == config.get("redis", {}).get("password"),
    }


def page(state: dict[str, object]) -> str:
    """The status as a small HTML page."""
    rows = "".join(
        f"<tr><td>{name}</td><td><code>{value}</code></td></tr>"
        for name, value in {**state["config"], **state["env"]}.items()  # type: ignore[dict-item]
    )
    return (
        "<!doctype html><title>api-brain</title>"
        "<h1>api-brain</h1>"
        f"<p>secret/services/api-brain version <b>{state['secret_version']}</b>; "
        f"pid {state['pid']} (uid {state['uid']}) started {state['started_at']}.</p>"
        f"<table>{rows}</table>"
        f"<p>VAULT_TOKEN visible: {state['vault_token_visible']}; "
        f"inject's AppRole files readable: {state['approle_files_readable']}.</p>"
        "<p>Values are never shown: each is a sha256 fingerprint.</p>\n"
    )


class Handler(QuietHandler):
    state: ClassVar[dict[str, object]] = {}

    def do_GET(self) -> None:  # http.server's name
        if self.path == "/healthz":
            self._send(200, "text/plain", "ok\n")
        elif self.path == "/status":
            self._send(200, "application/json", json.dumps(self.state) + "\n")
        elif self.path == "/":
            self._send(200, "text/html; charset=utf-8", page(self.state))
        else:
            self._send(404, "text/plain", "not found\n")


def main() -> int:
    """Serve until SIGTERM (from inject on restart, or docker stop), then exit 0."""
    Handler.state = snapshot()
    server = ThreadingHTTPServer(("0.0.0.0", PORT), Handler)  # noqa: S104 - inside a container
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(
        f"api-brain: pid {os.getpid()} serving :{PORT}, "
        f"secret/services/api-brain v{Handler.state['secret_version']}",
        flush=True,
    )
    server.serve_forever()
    print(f"api-brain: pid {os.getpid()} stopping", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
