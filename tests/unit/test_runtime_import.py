"""Importing the library is light: ``import vault_inject`` (and naming ``Secrets``) loads
neither the CLI (click) nor the file watcher, nor the HTTP client until a Secrets is made."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import vault_inject

HEAVY = ("click", "watchfiles", "hvac", "requests", "jinja2", "psutil")


def loaded_after(code: str) -> dict[str, bool]:
    """Which HEAVY modules are in sys.modules after running ``code`` in a fresh interpreter."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps({{m: m in sys.modules for m in {HEAVY!r}}}))"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    loaded: dict[str, bool] = json.loads(result.stdout)
    return loaded


def test_import_vault_inject_loads_no_cli_watcher_or_http_client() -> None:
    """`import vault_inject` leaves click, watchfiles, hvac, requests, jinja2 and psutil unloaded."""
    assert loaded_after("import vault_inject") == dict.fromkeys(HEAVY, False)


def test_naming_secrets_loads_no_cli_or_watcher() -> None:
    """`from vault_inject import Secrets, InjectError` still loads no click, watchfiles or hvac."""
    loaded = loaded_after("from vault_inject import Secrets, InjectError, Lease")
    assert not loaded["click"]
    assert not loaded["watchfiles"]
    assert not loaded["hvac"]


def test_the_public_names_are_exported() -> None:
    """Every name in __all__ resolves, and an unknown attribute is an AttributeError."""
    for name in vault_inject.__all__:
        assert getattr(vault_inject, name) is not None
    assert issubclass(vault_inject.SecretNotFound, vault_inject.InjectError)
    with pytest.raises(AttributeError):
        _ = vault_inject.NoSuchThing  # type: ignore[attr-defined]
