"""Helpers shared by the end-to-end tests: files, one-line error checks, ports, scoped
tokens, a server with an audit device, a test CA with a server and a client certificate.
(Servers and runs of inject: ``tests.support``.)"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

from tests.support import Bao, bao_server, forbid, secret_value

REPO = Path(__file__).resolve().parents[2]

# Another user, for attacks from outside inject's user (setpriv: uid/gid 65534, no groups).
NOBODY = 65534
AS_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]

# A child that prints the sorted *names* (never the values) of its environment as JSON.
PRINT_ENV_NAMES = "import json, os; print(json.dumps(sorted(os.environ)))"


def write(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` (parents created) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def secret_template(bao: Bao, path: str, workdir: Path, name: str = "a.j2") -> str:
    """A new value of ``path``'s key ``v`` and a template ``workdir/name`` that renders just it; the value."""
    value = secret_value()
    bao.kv_put(path, v=value)
    write(workdir / name, f"{{{{ secret('{path}').v }}}}")
    return value


RETRYING = re.compile(r"inject: (still )?retrying .* did not answer ")


TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ")


def without_time(line: str) -> str:
    """A text log line without its leading UTC timestamp (``inject: ...`` as it reads)."""
    return TIMESTAMP.sub("", line, count=1)


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one line inject printed on stderr for a failure, without its timestamp; fails on a
    traceback or more lines (the progress notes of a call that is retrying aside: they come
    before the failure)."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if not RETRYING.search(line)]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{result.stderr}"
    return without_time(lines[0])


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def refuses_connections(port: int) -> bool:
    """True when nothing accepts TCP connections on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return False
    except OSError:
        return True


def reader_token(bao: Bao, *kv_paths: str) -> str:
    """A token that may read exactly these KV v2 paths (``secret/...`` as a person types it).

    It also carries the ``default`` policy, which lets a token look itself up."""
    rules = "\n".join(
        f'path "secret/data/{p.removeprefix("secret/")}" {{ capabilities = ["read"] }}' for p in kv_paths
    )
    name = f"read-{uuid.uuid4().hex[:10]}"
    bao.policy(name, rules)
    return forbid(bao.token_with(name, "default"))


def read_lines(path: Path) -> list[str]:
    """The lines of ``path``, or [] while it does not exist yet."""
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


def temp_files(directory: Path) -> list[str]:
    """Leftover inject temp files in ``directory`` (there must never be any)."""
    if not directory.exists():
        return []
    return [name for name in os.listdir(directory) if name.startswith(".inject-")]


@contextlib.contextmanager
def audited_server(workdir: Path) -> Iterator[tuple[Bao, Path]]:
    """A second real dev server with a file audit device declared in its config file.

    OpenBao refuses ``sys/audit/<name>`` over the API ("use declarative, config-based
    audit device management"), so the device is declared in HCL instead.
    """
    log_file = workdir / "audit.log"
    config = write(
        workdir / "audit.hcl",
        f'audit "file" "e2e" {{\n  options {{\n    file_path = "{log_file}"\n  }}\n}}\n',
    )
    with bao_server(workdir, f"-config={config}") as server:
        yield server, log_file


def measured(
    argv: list[str], *, env: Mapping[str, str], cwd: Path, limit_bytes: int, timeout_s: float = 60
) -> tuple[int, int, str, float]:
    """Run ``argv`` under an address-space cap: exit code, its own peak RSS in bytes, stderr,
    and its CPU seconds (through ``tests/e2e/peak.py``: see there why not straight from here)."""
    with open(cwd / "measured.stderr", "w+b") as stderr:
        runner = subprocess.Popen(
            [sys.executable, "-m", "tests.e2e.peak", str(limit_bytes), "--", *argv],
            env={**env, "PYTHONPATH": str(REPO)},
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,  # a timeout kills the command with its runner
        )
        try:
            out, _ = runner.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(runner.pid, signal.SIGKILL)
            runner.wait()
            raise AssertionError(f"{argv[-3:]} still running after {timeout_s}s") from None
        stderr.seek(0)
        output = stderr.read().decode(errors="replace")
    code, peak, cpu_s = out.split()
    return int(code), int(peak), output, float(cpu_s)


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_certificates(directory: Path) -> None:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA."""
    d = str(directory)
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        f"{d}/ca.key",
        "-out",
        f"{d}/ca.pem",
        "-days",
        "1",
        "-subj",
        "/CN=inject-test-ca",
    )
    for name, extra in (("server", "subjectAltName=IP:127.0.0.1"), ("client", "extendedKeyUsage=clientAuth")):
        write(directory / f"{name}.ext", extra + "\n")
        _openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            f"{d}/{name}.key",
            "-out",
            f"{d}/{name}.csr",
            "-subj",
            f"/CN={name}",
        )
        _openssl(
            "x509",
            "-req",
            "-in",
            f"{d}/{name}.csr",
            "-CA",
            f"{d}/ca.pem",
            "-CAkey",
            f"{d}/ca.key",
            "-CAcreateserial",
            "-out",
            f"{d}/{name}.pem",
            "-days",
            "1",
            "-extfile",
            f"{d}/{name}.ext",
        )
