"""The seed guide's Pattern 3 ("Runtime Fetch (Microservices)") on vault_inject's library.

The seed's ``SecretManager`` cached every value forever (``lru_cache``: a rotated secret
was never seen), renewed leases only if the app remembered to, and never revoked. Here
``Secrets`` keeps KV values current in the background, renews and replaces the dynamic
database credentials, and revokes them on exit::

    inject dev --secrets examples/dev-secrets.toml -- python3 examples/runtime_app.py

``inject dev`` gives the app ``VAULT_ADDR`` and ``INJECT_TOKEN_FILE`` of its throwaway
server; against a real server set ``VAULT_ADDR`` and ``VAULT_TOKEN`` (or any auth method of
inject.toml) instead. ``DB_CREDS_PATH`` (default ``database/creds/readonly``) names the
dynamic credentials; when they cannot be read (no database engine there), that part is
skipped.
``RUNTIME_APP_SECONDS`` keeps the app serving that long (default: exit at once).

Like ``examples/app.py`` it never prints a value: only lengths and short sha256 prefixes.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import threading
from typing import Any

from vault_inject import InjectError, SecretError, Secrets
from vault_inject.log import RedactingFilter

DB_CREDS_PATH = os.environ.get("DB_CREDS_PATH", "database/creds/readonly")
SERVE_S = float(os.environ.get("RUNTIME_APP_SECONDS", "0"))


def fingerprint(value: Any) -> str:
    """``len=N sha256=abcd1234``: enough to compare two copies, useless to an attacker."""
    text = str(value)
    return f"len={len(text)} sha256={hashlib.sha256(text.encode()).hexdigest()[:8]}"


class Database:
    """Stands in for a connection pool: reconnects whenever it is given new credentials."""

    def __init__(self, creds: dict[str, Any]) -> None:
        self.connect(creds)

    def connect(self, creds: dict[str, Any]) -> None:
        """(Re)connect with ``creds``, as a pool would on a credential change."""
        self.creds = creds
        print(f"database: connected as user {fingerprint(creds['username'])}", flush=True)


def on_api_brain_change(data: dict[str, Any]) -> None:
    """Runs on the library's background thread when a new version of api-brain appears."""
    print(f"api-brain rotated: jwt_secret {fingerprint(data['jwt_secret'])}", flush=True)


def setup_logging() -> None:
    """The app owns logging; inject's redaction filter masks any secret that reaches a record."""
    handler = logging.StreamHandler()
    handler.addFilter(RedactingFilter())
    logging.basicConfig(level=logging.INFO, handlers=[handler])


def main() -> int:
    """Read the seed's secrets, subscribe to changes, lease DB credentials, serve, exit cleanly."""
    setup_logging()
    try:
        with Secrets() as secrets:
            # seed: get_secret('infrastructure/postgres'), but never stale
            db_config = secrets.get("secret/infrastructure/postgres")
            api_config = secrets.get("secret/services/api-brain")
            print(f"postgres: {sorted(db_config)} password {fingerprint(db_config['password'])}")
            print(f"api-brain: {sorted(api_config)} jwt_secret {fingerprint(api_config['jwt_secret'])}")
            secrets.on_change("secret/services/api-brain", on_api_brain_change)
            try:
                lease = secrets.lease(DB_CREDS_PATH)  # seed: get_db_credentials('readonly')
            except SecretError as exc:  # no database engine there, or not allowed
                print(f"dynamic credentials skipped: {exc}")
            else:
                database = Database(lease.data)
                lease.on_change(database.connect)  # renewal is automatic; new credentials reconnect
                print(f"lease {lease.lease_id} renewed in the background until close")
            print("ready", flush=True)
            threading.Event().wait(SERVE_S)  # a real service would serve requests here
    except InjectError as exc:
        print(f"runtime_app: {exc}", file=sys.stderr)
        return 1
    print("closed: leases revoked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
