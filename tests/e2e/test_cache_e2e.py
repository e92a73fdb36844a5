"""The compiled-template cache against a child that wants inject to run its code.

inject loads code from its cache directory. In the documented mode where inject and the
app run as the same user (``docker run --user app``), the app can write that directory; a
poisoned entry would run inside inject, next to its token. So a same-user run has no
cache; as root with ``--user`` the cache is root's and the app cannot touch it. The user
here is uid 65534 (``nobody``) through setpriv; the server is the real OpenBao."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.helpers_e2e import AS_NOBODY, NOBODY, write
from tests.support import Bao, inject_env, run_inject, secret_value


def _runs_as_the_app() -> bool:
    """Whether this interpreter runs as uid 65534 (one installed under a private directory,
    such as a pyenv build in /root that loads its libpython from there, does not)."""
    probe = subprocess.run(
        [*AS_NOBODY, sys.executable, "-c", "pass"], capture_output=True, timeout=30, check=False
    )
    return probe.returncode == 0


pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the app is another user: needs root")
inject_as_the_app = pytest.mark.skipif(
    os.geteuid() != 0 or not _runs_as_the_app(),
    reason="runs inject as the app's user: needs an interpreter that user can run",
)

# The app's interpreter: the system's (the test venv's may sit where only root can look).
APP_PYTHON = shutil.which("python3", path="/usr/bin:/bin") or sys.executable

# The app's attack: every entry in $HOME/.cache/vault-inject becomes code that writes
# inject's token (or "ran") to MARKER, in the entry's own format (a digest first or not).
POISON = r"""
import hashlib, marshal, os, pathlib, sys
marker = sys.argv[1]
evil = compile(f"import os\nopen({marker!r}, 'w').write(os.environ.get('VAULT_TOKEN', 'ran'))\n", "t.j2", "exec")
payload = marshal.dumps((evil, ()))
cache = pathlib.Path(os.environ["HOME"], ".cache", "vault-inject")
found = [entry for entry in cache.iterdir() if entry.is_file()] if cache.is_dir() else []
for entry in found:
    data = entry.read_bytes()
    digested = hashlib.sha256(data[32:]).digest() == data[:32]
    entry.write_bytes(hashlib.sha256(payload).digest() + payload if digested else payload)
print(len(found))
"""


def _as_app(code: str, *args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run Python ``code`` with inject's interpreter as the app's user."""
    return subprocess.run(
        [*AS_NOBODY, sys.executable, "-c", code, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _app_home(volume: Path) -> tuple[Path, Path]:
    """A work directory and a HOME (0700) that belong to the app's user."""
    work, home = volume / "work", volume / "home"
    for directory in (work, home):
        directory.mkdir(mode=0o700)
        os.chown(directory, NOBODY, NOBODY)
    return work, home


def _template(bao: Bao, prefix: str, work: Path) -> str:
    """A template reading a fresh secret; the value it renders."""
    value = secret_value()
    bao.kv_put(f"{prefix}/app", password=value)
    template = write(work / "t.j2", f"{{{{ secret('{prefix}/app').password }}}}\n")
    os.chown(template, NOBODY, NOBODY)
    return value


@inject_as_the_app
def test_a_same_user_app_cannot_make_inject_run_its_code(bao: Bao, prefix: str, volume: Path) -> None:
    """inject and the app both run as one user: the app rewrites whatever is in inject's
    cache directory, yet the next start of inject runs none of it (there is no cache for
    a same-user run), renders the secret and writes no token anywhere."""
    work, home = _app_home(volume)
    value = _template(bao, prefix, work)
    marker = work / "pwned"  # where the app (and so its code in inject) can write
    env = inject_env(bao, {"HOME": str(home)})
    args = ("-t", f"t.j2:{work}/out.txt")
    first = run_inject(
        *args, "--", APP_PYTHON, "-c", POISON, str(marker), env=env, cwd=work, wrapper=AS_NOBODY
    )
    assert first.returncode == 0, first.stderr
    again = run_inject("render", *args, env=env, cwd=work, wrapper=AS_NOBODY)
    assert not marker.exists(), "inject ran code the app wrote into its cache"
    assert again.returncode == 0, again.stderr
    assert (work / "out.txt").read_text() == value + "\n"
    assert not (home / ".cache").exists()  # nothing was cached for the app to rewrite


FORGE = r"""
import sys
from vault_inject.render import compilecache, renderer, sandbox
directory, marker, source = sys.argv[1:]
cache = compilecache.CompileCache.open(directory, compilecache.header(renderer.__file__, sandbox.__file__))
evil = compile(f"open({marker!r}, 'w').write('ran')\n", "t.j2", "exec")
cache.store("t.j2", source, evil, ())
"""


@inject_as_the_app
def test_an_entry_forged_with_injects_own_code_is_never_loaded(bao: Bao, prefix: str, volume: Path) -> None:
    """The app forges a perfect entry for the template (inject's own cache code, its
    header and digest, as its user); a same-user inject still never loads it."""
    work, home = _app_home(volume)
    value = _template(bao, prefix, work)
    marker = work / "pwned"  # where the app (and so its code in inject) can write
    cache = home / ".cache" / "vault-inject"
    source = (work / "t.j2").read_text()
    env = inject_env(bao, {"HOME": str(home)})
    forged = _as_app(FORGE, str(cache), str(marker), source, env=env, cwd=work)
    assert forged.returncode == 0, forged.stderr
    assert len(list(cache.iterdir())) == 1
    result = run_inject("render", "-t", f"t.j2:{work}/out.txt", env=env, cwd=work, wrapper=AS_NOBODY)
    assert not marker.exists(), "inject ran a forged cache entry"
    assert result.returncode == 0, result.stderr
    assert (work / "out.txt").read_text() == value + "\n"


def test_as_root_with_user_the_cache_is_roots_and_the_app_cannot_write_it(
    bao: Bao, prefix: str, volume: Path
) -> None:
    """inject as root, the app as nobody (``--user``): the cache is used (an entry per
    template, root's, 0600, in a 0700 directory), and the app's attempt to rewrite it fails."""
    work, _ = _app_home(volume)
    value = _template(bao, prefix, work)
    source = volume / "t.j2"  # root's: as root inject reads no template another user could change
    os.rename(work / "t.j2", source)
    os.chown(source, 0, 0)
    root_home = volume / "root-home"
    root_home.mkdir(mode=0o700)
    marker = work / "pwned"  # where the app (and so its code in inject) can write
    env = inject_env(bao, {"HOME": str(root_home)})
    args = ("-t", f"{source}:{work}/out.txt", "--user", "nobody")
    poisoner = f"import os; os.environ['HOME'] = {str(root_home)!r}\n" + POISON
    first = run_inject(*args, "--", APP_PYTHON, "-c", poisoner, str(marker), env=env, cwd=work)
    assert first.returncode == 1
    assert "PermissionError" in first.stderr
    cache = root_home / ".cache" / "vault-inject"
    (entry,) = cache.iterdir()
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    assert (entry.stat().st_uid, stat.S_IMODE(entry.stat().st_mode)) == (0, 0o600)
    again = run_inject("render", *args, env=env, cwd=work)
    assert again.returncode == 0, again.stderr
    assert not marker.exists()
    assert (work / "out.txt").read_text() == value + "\n"
