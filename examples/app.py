"""A tiny stand-in for a real service: proves it received its secrets, never prints them.

It reads what ``examples/inject.toml`` makes inject render:

* ``run/production.yml`` (the seed's Pattern 2 config: database, redis, api sections),
* ``run/app.env`` (service and provider keys as ``KEY=value`` lines),
* the env vars ``DATABASE_URL`` and ``REDIS_PASSWORD``,

and prints, for each secret, its name, length and a short sha256 prefix (enough to
compare two copies, useless to an attacker for a real high-entropy secret). Exits 0
when everything is present, 1 naming what is missing. Standard library only.

``APP_RUN_DIR`` overrides where the files are looked for (default: ``run/`` beside
``examples/``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import stat
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

RUN_DIR = Path(os.environ.get("APP_RUN_DIR") or Path(__file__).resolve().parent.parent / "run")
CONFIG_KEYS = {
    "database": ("host", "port", "username", "password", "database"),
    "redis": ("host", "port", "password"),
    "api": ("jwt_secret", "encryption_key"),
}
ENV_FILE_KEYS = (
    "N8N_ENCRYPTION_KEY",
    "N8N_JWT_SECRET",
    "API_BRAIN_JWT_SECRET",
    "API_BRAIN_ENCRYPTION_KEY",
    "STEEL_API_KEY",
    "SKYVERN_API_KEY",
    "CAPTCHA_API_KEY",
    "SURVEY_API_KEY",
    "CLOUDFLARE_TUNNEL_TOKEN",
    "POSTGRES_USER",
    "POSTGRES_PASSWORD",
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "GROQ_API_KEY",
    "GEMINI_API_KEY",
    "TAVILY_API_KEY",
    "EXA_API_KEY",
)
ENV_VARS = ("DATABASE_URL", "REDIS_PASSWORD")
PLAIN_SETTINGS = frozenset(
    {"database.host", "database.port", "database.database", "redis.host", "redis.port"}
)
TOKEN_VARS = ("VAULT_TOKEN", "BAO_TOKEN")


def fingerprint(value: str) -> str:
    """Length and sha256 prefix of a value: enough to compare, never the value."""
    digest = hashlib.sha256(value.encode()).hexdigest()[:8]
    return f"len={len(value):<3} sha256={digest}"


def parse_simple_yaml(text: str) -> dict[str, dict[str, str]]:
    """The two-level ``section:`` / ``  key: value`` YAML our template writes."""
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, _, value = line.strip().partition(":")
        if not line.startswith(" "):
            current = sections.setdefault(key, {})
        elif current is not None:
            value = value.strip()
            current[key] = json.loads(value) if value.startswith('"') else value
    return sections


def parse_env_file(text: str) -> dict[str, str]:
    """``KEY=value`` lines, values shell-quoted (as the ``shell_quote`` filter writes them)."""
    values = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, _, raw = line.partition("=")
        words = shlex.split(raw)
        values[key.strip()] = words[0] if words else ""
    return values


def read_file(name: str, missing: list[str]) -> str:
    """The text of ``RUN_DIR/name`` (and its mode line), or '' after noting it is missing."""
    path = RUN_DIR / name
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        missing.append(f"{path} ({exc.strerror})")
        return ""
    print(f"{path}: mode {stat.S_IMODE(path.stat().st_mode):04o}")
    return text


def show(label: str, value: str) -> None:
    """One line per value: plain settings (host, port) as they are, all else as a fingerprint."""
    print(f"  {label:<34} {value if label in PLAIN_SETTINGS else fingerprint(value)}")


def check_config(missing: list[str]) -> dict[str, dict[str, str]]:
    """production.yml: every section and key present and non-empty."""
    text = read_file("production.yml", missing)
    config = parse_simple_yaml(text)
    for section, keys in CONFIG_KEYS.items():
        for key in keys if text else ():
            value = config.get(section, {}).get(key, "")
            if value:
                show(f"{section}.{key}", value)
            else:
                missing.append(f"production.yml {section}.{key}")
    return config


def check_env_file(missing: list[str]) -> None:
    """app.env: every expected variable present and non-empty."""
    text = read_file("app.env", missing)
    values = parse_env_file(text)
    for name in ENV_FILE_KEYS if text else ():
        if values.get(name):
            show(name, values[name])
        else:
            missing.append(f"app.env {name}")


def check_environment(config: dict[str, dict[str, str]], missing: list[str]) -> None:
    """The env vars inject set, and that they agree with the file (compared, not printed)."""
    print("environment:")
    for name in ENV_VARS:
        if os.environ.get(name):
            show(name, os.environ[name])
        else:
            missing.append(f"env {name}")
    url = urlsplit(os.environ.get("DATABASE_URL", ""))
    database = config.get("database", {})
    if url.password is not None and database.get("password"):
        same = unquote(url.password) == database["password"]
        print(f"  DATABASE_URL password matches production.yml: {'yes' if same else 'NO'}")
        if not same:
            missing.append("DATABASE_URL and production.yml disagree on the password")
    for name in TOKEN_VARS:
        state = "present (inject should have removed it)" if name in os.environ else "not visible"
        print(f"  {name:<34} {state}")


def main() -> int:
    """Check everything; 0 when all secrets arrived, 1 naming what did not."""
    missing: list[str] = []
    config = check_config(missing)
    check_env_file(missing)
    check_environment(config, missing)
    if missing:
        print("app: MISSING: " + "; ".join(missing), file=sys.stderr)
        return 1
    print("app: all secrets present (values not shown)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
