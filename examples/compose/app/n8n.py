"""n8n: a stand-in for a service that knows nothing about Vault (compose.yaml, `n8n`).

Like nginx, it reads a config file at start and again on SIGHUP, and that is all it
does about secrets. The sidecar `n8n-secrets` (``inject watch``) renders that file,
``/run/secrets/n8n.env``, into a volume both containers mount, and, sharing this
container's PID namespace (``pid: "service:n8n"``), runs ``kill -HUP 1`` after each
change. This process is PID 1 here, so it installs a real SIGHUP handler (the kernel
drops signals that a PID 1 does not handle).

``GET /`` shows the KV version and fingerprints of what was loaded (never values) and
how often it reloaded; ``GET /status`` is the same as JSON; ``GET /healthz`` answers 200
once the file has been loaded. Standard library only.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import signal
import sys
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path
from types import FrameType

from quiet_http import QuietHandler

ENV_FILE = Path(os.environ.get("N8N_ENV_FILE", "/run/secrets/n8n.env"))
PORT = int(os.environ.get("N8N_PORT", "8080"))
SECRET_KEYS = ("N8N_ENCRYPTION_KEY", "N8N_JWT_SECRET")

_lock = threading.RLock()  # re-entrant: a SIGHUP may arrive while a reload holds it
_state: dict[str, object] = {"service": "n8n", "pid": os.getpid(), "loaded": False, "reloads": 0}


def fingerprint(value: str) -> str:
    """A short sha256 prefix: enough to see a value change, useless to guess it."""
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()[:12]


def parse_env_file(text: str) -> dict[str, str]:
    """``KEY=value`` lines with shell-quoted values (the ``shell_quote`` filter)."""
    values = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, raw = line.partition("=")
            words = shlex.split(raw)
            values[key.strip()] = words[0] if words else ""
    return values


def load(reason: str) -> None:
    """Read the env file and keep only versions and fingerprints of it."""
    values = parse_env_file(ENV_FILE.read_text(encoding="utf-8"))
    with _lock:
        _state.update(
            loaded=True,
            secret_version=int(values.get("N8N_SECRET_VERSION", "0")),
            keys={key: fingerprint(values[key]) if values.get(key) else "MISSING" for key in SECRET_KEYS},
            loaded_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            loaded_by=reason,
        )
        if reason == "SIGHUP":
            _state["reloads"] = int(_state["reloads"]) + 1  # type: ignore[call-overload]
    print(f"n8n: loaded {ENV_FILE} ({reason}): v{_state['secret_version']}", flush=True)


def on_hup(_signum: int, _frame: FrameType | None) -> None:
    try:
        load("SIGHUP")
    except OSError as exc:
        print(f"n8n: reload failed, keeping the old config: {exc}", flush=True)


def wait_for_file() -> None:
    """The sidecar writes the file after both containers started: wait for it once."""
    while not ENV_FILE.exists():
        time.sleep(0.2)
    load("start")


def page(state: dict[str, object]) -> str:
    """The status as a small HTML page."""
    if not state["loaded"]:
        return f"<!doctype html><title>n8n</title><p>waiting for {ENV_FILE}</p>\n"
    rows = "".join(f"<tr><td>{k}</td><td><code>{v}</code></td></tr>" for k, v in state["keys"].items())  # type: ignore[attr-defined]
    return (
        "<!doctype html><title>n8n</title><h1>n8n</h1>"
        f"<p>secret/services/n8n version <b>{state['secret_version']}</b>, loaded {state['loaded_at']} "
        f"({state['loaded_by']}); reloads by SIGHUP: {state['reloads']}; pid {state['pid']}.</p>"
        f"<table>{rows}</table><p>Values are never shown: each is a sha256 fingerprint.</p>\n"
    )


class Handler(QuietHandler):
    def do_GET(self) -> None:  # http.server's name
        with _lock:
            state = dict(_state)
        if self.path == "/healthz":
            self._send(
                200 if state["loaded"] else 503, "text/plain", "ok\n" if state["loaded"] else "waiting\n"
            )
        elif self.path == "/status":
            self._send(200, "application/json", json.dumps(state) + "\n")
        elif self.path == "/":
            self._send(200, "text/html; charset=utf-8", page(state))
        else:
            self._send(404, "text/plain", "not found\n")


def main() -> int:
    """Serve; reload on SIGHUP; exit 0 on SIGTERM (docker stop)."""
    server = ThreadingHTTPServer(("0.0.0.0", PORT), Handler)  # noqa: S104 - inside a container
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    signal.signal(signal.SIGHUP, on_hup)
    threading.Thread(target=wait_for_file, daemon=True).start()
    print(f"n8n: pid {os.getpid()} serving :{PORT}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
