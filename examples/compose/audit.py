"""Summarise the example's OpenBao audit log: who did what, and whether a value leaked.

    docker compose exec -T openbao cat /openbao/logs/audit.log | python3 audit.py
    ... | python3 audit.py --role reports               only one service's requests
    ... | python3 audit.py --all                        the root token's requests too
    ... | python3 audit.py --expect reports:read:database/creds/readonly
    ... | python3 audit.py --secrets values.txt         no line of values.txt in the log

One line per (service, display name, operation, path) with how many responses the server
logged for it (denied ones apart), then the AppRole logins per service with the TTL of
the tokens they gave. The service is the AppRole a token was issued for (the audit
entry's ``auth.metadata.role_name``); OpenBao's display name is ``approle`` for every
AppRole token. Requests of other tokens (the root token: bootstrap, rotate.sh) are
counted in one line unless ``--all``.

Checks (exit 1 when one fails, naming it; a value is named by a sha256 prefix only):

* ``--expect ROLE:OPERATION:PATH`` (repeatable): at least one successful response to
  that AppRole's token;
* ``--secrets FILE``: no line of FILE (blank lines skipped) occurs anywhere in the log;
* ``--max-token-ttl SECONDS``: every AppRole login gave a token of at most that TTL.

Standard library only.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import sys
from typing import Any

Entry = dict[str, Any]
Row = tuple[str, str, str, str, bool]  # service, display name, operation, path, denied


def fingerprint(value: str) -> str:
    """A short sha256 prefix: names a value without showing it."""
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()[:12]


def responses(text: str) -> list[Entry]:
    """The log's response entries (each has the request, the auth and the outcome)."""
    entries = (json.loads(line) for line in text.splitlines() if line.strip())
    return [entry for entry in entries if entry.get("type") == "response"]


def row(entry: Entry) -> Row:
    """What one response is about: whose token, which operation on which path."""
    auth = entry.get("auth") or {}
    request = entry.get("request") or {}
    return (
        str((auth.get("metadata") or {}).get("role_name", "-")),
        str(auth.get("display_name", "-")),
        str(request.get("operation", "-")),
        str(request.get("path", "-")),
        bool(entry.get("error")),
    )


def logins(entries: list[Entry]) -> list[dict[str, Any]]:
    """The auth block of every successful auth/approle/login response."""
    found = []
    for entry in entries:
        auth = (entry.get("response") or {}).get("auth")
        path = (entry.get("request") or {}).get("path")
        if path == "auth/approle/login" and isinstance(auth, dict) and not entry.get("error"):
            found.append(auth)
    return found


def summary(entries: list[Entry], role: str | None, everything: bool) -> collections.Counter[Row]:
    """Print the table; return the counts of every row (for the checks)."""
    counts = collections.Counter(row(entry) for entry in entries)
    shown = {
        key: count
        for key, count in counts.items()
        if (role is None or key[0] == role) and (everything or key[0] != "-")
    }
    print(f"{len(entries)} responses logged")
    print(f"{'service':<10} {'display name':<12} {'operation':<9} {'count':>5}  path")
    for (service, display, operation, path, denied), count in sorted(shown.items()):
        note = "  (denied)" if denied else ""
        print(f"{service:<10} {display:<12} {operation:<9} {count:>5}  {path}{note}")
    others = sum(count for key, count in counts.items() if key[0] == "-")
    if not everything and role is None and others:
        print(f"{'-':<10} {'token/root':<12} {'(any)':<9} {others:>5}  other tokens (--all lists them)")
    per_role: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for auth in logins(entries):
        per_role[str((auth.get("metadata") or {}).get("role_name", "-"))].append(auth)
    for service, grants in sorted(per_role.items()):
        if role is None or service == role:
            ttls = sorted({str(auth.get("token_ttl")) for auth in grants})
            policies = ",".join(map(str, grants[0].get("token_policies") or []))
            ttl = "/".join(ttls)
            print(f"login {service:<10} {len(grants)} tokens, token_ttl {ttl}s, policies {policies}")
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("log", nargs="?", help="the audit log (default: stdin)")
    parser.add_argument("--role", help="only this service's requests")
    parser.add_argument("--all", action="store_true", help="list the root token's requests too")
    parser.add_argument("--expect", action="append", default=[], metavar="ROLE:OPERATION:PATH")
    parser.add_argument("--secrets", metavar="FILE", help="values that must not occur in the log")
    parser.add_argument("--max-token-ttl", type=int, metavar="SECONDS")
    args = parser.parse_args(argv)
    if args.log:
        with open(args.log, encoding="utf-8") as handle:
            text = handle.read()
    else:
        text = sys.stdin.read()
    entries = responses(text)
    counts = summary(entries, args.role, args.all)

    failures = []
    for expected in args.expect:
        role, operation, path = expected.split(":", 2)
        if not any(k[0] == role and k[2] == operation and k[3] == path and not k[4] for k in counts):
            failures.append(f"no successful {operation} of {path} by {role} in the audit log")
    if args.secrets:
        with open(args.secrets, encoding="utf-8") as handle:
            values = [line.rstrip("\n") for line in handle if line.strip()]
        leaked = [fingerprint(value) for value in values if value in text]
        if leaked:
            failures.append(f"{len(leaked)} of {len(values)} values in plaintext: {', '.join(leaked)}")
        else:
            print(f"none of {len(values)} secret values occurs in plaintext")
    if args.max_token_ttl is not None:
        granted = logins(entries)
        if not granted:
            failures.append("no AppRole login in the audit log")
        for auth in granted:
            ttl = auth.get("token_ttl")
            if not isinstance(ttl, int) or not 0 < ttl <= args.max_token_ttl:
                failures.append(f"an AppRole login gave a token with ttl {ttl} (max {args.max_token_ttl})")
    for failure in failures:
        print(f"audit: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
