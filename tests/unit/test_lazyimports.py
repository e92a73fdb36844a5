"""The lazy import of hvac.api: inject's HTTP path never runs it, anything that does use it
gets the real module, and only the command line installs the finder. Each check runs in a
fresh interpreter (the finder changes imports for a whole process)."""

from __future__ import annotations

import subprocess
import sys


def run(code: str) -> str:
    """What ``code`` prints in a fresh interpreter."""
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return proc.stdout.strip()


def test_inject_talks_to_the_server_without_running_hvac_api() -> None:
    """The wire (hvac's adapter over requests) is built and used without hvac.api running;
    hvac.Client, which needs it, then gets the real module."""
    out = run(
        "import sys\n"
        "from vault_inject import lazyimports\n"
        "lazyimports.install()\n"
        "from vault_inject import transport\n"
        "wire = transport._HvacWire(transport.ServerSettings(address='http://127.0.0.1:9'), 't')\n"
        "try:\n"
        "    wire.exchange('GET', '/v1/sys/health', what='x', params=None, json=None, timeout_s=2)\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__)\n"
        "print(type(sys.modules['hvac.api']).__name__)\n"
        "import hvac\n"
        "client = hvac.Client(url='http://127.0.0.1:9', token='t')\n"
        "print(type(client.secrets.kv).__name__, type(sys.modules['hvac.api']).__name__)\n"
    )
    assert out.splitlines() == ["TransientError", "_LazyModule", "Kv module"]


def test_the_library_leaves_imports_alone() -> None:
    """`from vault_inject import Secrets` (and reaching the server client) installs no finder:
    hvac.api is an ordinary module there."""
    out = run(
        "import sys\n"
        "from vault_inject import Secrets, lazyimports\n"
        "from vault_inject import vault\n"
        "print(lazyimports.LazyFinder in sys.meta_path, type(sys.modules['hvac.api']).__name__)\n"
    )
    assert out == "False module"


def test_installing_twice_puts_one_finder_first() -> None:
    out = run(
        "import sys\n"
        "from vault_inject import lazyimports\n"
        "lazyimports.install(); lazyimports.install()\n"
        "print(sys.meta_path.count(lazyimports.LazyFinder), sys.meta_path[0] is lazyimports.LazyFinder)\n"
    )
    assert out == "1 True"
