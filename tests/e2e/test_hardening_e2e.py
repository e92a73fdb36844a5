"""Hardening, end to end against the real inject and a real OpenBao server: atomic files
under SIGKILL, full and read-only filesystems, hostile templates and values, and secrecy
(no token in the child's /proc, nothing written anywhere unasked, no response bodies)."""

from __future__ import annotations

import contextlib
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.e2e.helpers_e2e import error_line, temp_files, write
from tests.e2e.supervise_helpers import SignalChild
from tests.support import (
    Bao,
    Running,
    forbid,
    holds_for,
    inject_argv,
    inject_env,
    run_inject,
    secret_value,
    supervise,
    wait_for,
)
from vault_inject.files import write as files

# --- atomicity under SIGKILL --------------------------------------------------------------

CRASH_LOOP_S = 12.0
BIG_BLOCK = "".join(f"{n:07d} the quick brown fox jumps over the lazy dog\n" for n in range(30_000))  # 1.5 MB
READ_PAUSE_S = 0.001  # readers leave the CPU to the writers between reads


class Contents:
    """Every content the destination may legitimately hold (one per secret value), and what a
    reader saw. A reader must only ever see one of them, byte for byte."""

    def __init__(self) -> None:
        self.valid: dict[str, bytes] = {}
        self.lock = threading.Lock()
        self.reads = 0
        self.seen: set[str] = set()
        self.bad: list[str] = []

    def add(self, value: str) -> None:
        """Allow the content rendered from ``value`` (before the server can return it)."""
        with self.lock:
            self.valid[value] = expected_big(value).encode()

    def check(self, data: bytes) -> None:
        """Record one read; anything other than a whole valid content is a failure."""
        first = data.split(b"\n", 1)[0].decode(errors="replace").removeprefix("v=")
        with self.lock:
            self.reads += 1
            if self.valid.get(first) == data:
                self.seen.add(first)
            elif len(self.bad) < 5:
                self.bad.append(f"read {len(data)} bytes that are no whole rendered file")


def expected_big(value: str) -> str:
    """What the big template renders to for one secret value."""
    return f"v={value}\n{BIG_BLOCK}end={value}\n"


def _read_forever(path: Path, contents: Contents, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue
        contents.check(data)
        time.sleep(READ_PAUSE_S)


def _rotate_forever(bao: Bao, path: str, contents: Contents, stop: threading.Event) -> None:
    while not stop.wait(random.uniform(0.03, 0.12)):
        value = secret_value("big")
        contents.add(value)
        bao.kv_put(path, v=value)


@contextlib.contextmanager
def background(stop: threading.Event, *threads: threading.Thread) -> Iterator[None]:
    """Run daemon threads for the duration of the block; then set ``stop`` and join them."""
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)


def _wait_for_temp_file(directory: Path, *, timeout_s: float) -> bool:
    """Poll until a writer's temp file exists in ``directory`` (True) or the time is up."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if temp_files(directory):
            return True
        time.sleep(0.0005)
    return False


def _oldest_temp_s(directory: Path) -> float:
    """Age of the oldest temp file in ``directory`` (0 when there is none)."""
    ages = [0.0]
    for name in temp_files(directory):
        with contextlib.suppress(FileNotFoundError):
            ages.append(time.time() - (directory / name).stat().st_mtime)
    return max(ages)


def _age_temp_files(directory: Path) -> int:
    """Make leftover temp files look abandoned long ago (older than STALE_TEMP_S); how many."""
    leftovers = temp_files(directory)
    past = time.time() - 60
    for name in leftovers:
        with contextlib.suppress(FileNotFoundError):
            os.utime(directory / name, (past, past))
    return len(leftovers)


def _run_and_kill(bao: Bao, argv: list[str], cwd: Path, out_dir: Path, delay_s: float | None) -> None:
    """Start inject; SIGKILL it after ``delay_s``, or (None) as soon as it is writing a temp file."""
    with supervise(argv, env=inject_env(bao), cwd=cwd, ready=None) as running:
        if delay_s is not None:
            time.sleep(delay_s)
        else:
            _wait_for_temp_file(out_dir, timeout_s=1.5)
        running.process.send_signal(signal.SIGKILL)
        running.wait()


def test_sigkill_during_rerenders_never_exposes_a_partial_file(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """`inject watch` re-rendering a 1.5 MB file while its secret rotates is SIGKILLed at random moments
    (and mid-write) for 12 s: a concurrent reader only ever sees a whole old or whole new file, and
    the next run removes every temp file the killed ones left behind."""
    path = f"{prefix}/big"
    write(
        tmp_path / "big.j2", f"v={{{{ secret('{path}').v }}}}\n{BIG_BLOCK}end={{{{ secret('{path}').v }}}}\n"
    )
    contents, stop = Contents(), threading.Event()
    first = secret_value("big")
    contents.add(first)
    bao.kv_put(path, v=first)
    out_dir = tmp_path / "out"
    destination = out_dir / "app.conf"
    argv = inject_argv("watch", "--poll-interval", "100ms", "-t", f"big.j2:{destination}")
    kills, rng = 0, random.Random()
    threads = [
        threading.Thread(target=_read_forever, args=(destination, contents, stop), daemon=True),
        threading.Thread(target=_rotate_forever, args=(bao, path, contents, stop), daemon=True),
    ]
    with background(stop, *threads):
        deadline = time.monotonic() + CRASH_LOOP_S
        while time.monotonic() < deadline:
            # Every other kill lands while a temp file is being written.
            _run_and_kill(bao, argv, tmp_path, out_dir, rng.uniform(0.05, 0.8) if kills % 2 else None)
            kills += 1
        for _ in range(10):  # end on a kill that abandoned a temp file, for the sweep below
            if temp_files(out_dir):
                break
            _run_and_kill(bao, argv, tmp_path, out_dir, None)
            kills += 1
    assert contents.bad == [], contents.bad
    assert kills >= 10
    assert len(contents.seen) >= 3, (
        f"only {len(contents.seen)} distinct versions seen in {contents.reads} reads"
    )
    abandoned = _age_temp_files(out_dir)
    assert abandoned, "no kill landed while a temp file existed"
    final = run_inject("render", "-t", f"big.j2:{destination}", env=inject_env(bao), cwd=tmp_path)
    assert final.returncode == 0, final.stderr
    assert temp_files(out_dir) == [], f"{abandoned} abandoned temp file(s) were not swept"
    assert destination.read_bytes() in contents.valid.values()


# A writer that does nothing but rewrite one file through inject's own write path, forever.
HAMMER = r"""
import sys
from vault_inject.files import write as files

destination, size = sys.argv[1], int(sys.argv[2])
n = 0
while True:
    mark = f"{n:012d}"
    files.write_all([files.FileWrite(destination=destination, content=mark + "\n" + mark[-1] * size)])
    n += 1
"""


def _whole(data: bytes, size: int) -> bool:
    head, _, body = data.partition(b"\n")
    return len(head) == 12 and head.isdigit() and body == head[-1:] * size


def test_hundreds_of_sigkills_of_a_writer_never_expose_a_partial_file(tmp_path: Path) -> None:
    """Inject's write path (files.write_all of a 1 MB file, in a loop) SIGKILLed hundreds of times at
    random moments: a concurrent reader only ever sees a whole file, and abandoned temp files are
    swept by the next write."""
    size = 1024 * 1024
    destination = tmp_path / "out" / "app.conf"
    script = write(tmp_path / "hammer.py", HAMMER)
    bad: list[int] = []
    reads = [0]
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            with contextlib.suppress(FileNotFoundError):
                data = destination.read_bytes()
                reads[0] += 1
                if not _whole(data, size):
                    bad.append(len(data))
            time.sleep(READ_PAUSE_S)

    kills, oldest_s, rng = 0, 0.0, random.Random()
    with background(stop, threading.Thread(target=reader, daemon=True)):
        deadline = time.monotonic() + CRASH_LOOP_S
        while time.monotonic() < deadline:
            process = subprocess.Popen([sys.executable, str(script), str(destination), str(size)])
            time.sleep(rng.uniform(0.01, 0.15))
            process.kill()
            process.wait()
            kills += 1
            oldest_s = max(oldest_s, _oldest_temp_s(destination.parent))
    assert bad == [], f"{len(bad)} partial reads, e.g. {bad[:3]} bytes"
    assert kills >= 50  # about 150 on a 2-core machine
    assert reads[0] >= 100
    aged = _age_temp_files(destination.parent)
    # A killed writer's temp file lives until a later write finds it older than STALE_TEMP_S.
    assert oldest_s < files.STALE_TEMP_S + 2.0, f"a temp file survived {oldest_s:.1f}s"
    files.write_all([files.FileWrite(destination=str(destination), content="final\n")])
    assert temp_files(destination.parent) == [], f"{aged} aged temp file(s) were not swept"


# --- full and read-only filesystems -------------------------------------------------------

TMPFS_SIZE = "64k"


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs mounted for this test (skipped where mount is not permitted), unmounted after."""
    mountpoint = tmp_path / "small"
    mountpoint.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0700", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {mounted.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def _remount(mountpoint: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(mountpoint)], check=True)


def _fill_or_freeze(fault: str, mountpoint: Path) -> str:
    """Make the next write to ``mountpoint`` fail; the strerror inject should report."""
    if fault == "read-only":
        _remount(mountpoint, "ro")
        return "Read-only file system"
    return "No space left on device"


def _small_render(bao: Bao, prefix: str, tmp_path: Path) -> tuple[str, str]:
    """A template of one secret; the secret's path and its first (small) value."""
    path = f"{prefix}/app"
    value = secret_value("small")
    bao.kv_put(path, v=value)
    write(tmp_path / "t.j2", f"v={{{{ secret('{path}').v }}}}\n")
    return path, value


def _bigger_than_the_fs(fault: str) -> str:
    # For "full": a value larger than the whole tmpfs; for "read-only": any new value.
    return secret_value("big") + ("x" * 100_000 if fault == "full" else "")


@pytest.mark.parametrize("fault", ["full", "read-only"])
def test_render_to_full_or_read_only_fs_exits_6_and_keeps_the_old_file(
    bao: Bao, prefix: str, tmp_path: Path, small_fs: Path, fault: str
) -> None:
    """`inject render` into a full (or read-only) filesystem exits 6 naming the file and the cause;
    the previous file is intact and no temp file is left."""
    path, old = _small_render(bao, prefix, tmp_path)
    destination = small_fs / "app.conf"
    first = run_inject("render", "-t", f"t.j2:{destination}", env=inject_env(bao), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    bao.kv_put(path, v=_bigger_than_the_fs(fault))
    reason = _fill_or_freeze(fault, small_fs)
    result = run_inject("render", "-t", f"t.j2:{destination}", env=inject_env(bao), cwd=tmp_path)
    assert result.returncode == 6
    line = error_line(result)
    assert str(destination) in line
    assert reason in line
    assert destination.read_text() == f"v={old}\n"
    assert temp_files(small_fs) == []


@contextlib.contextmanager
def _polling_into(bao: Bao, tmp_path: Path, destination: Path, app: SignalChild) -> Iterator[Running]:
    """inject polling every 100ms, rendering t.j2 into ``destination``, with ``app`` started once."""
    argv = inject_argv("--poll-interval", "100ms", "-t", f"t.j2:{destination}", "--", *app.argv())
    with supervise(argv, env=inject_env(bao), cwd=tmp_path) as running:
        app.wait_starts(1)
        yield running


@pytest.mark.parametrize("fault", ["full", "read-only"])
def test_full_or_read_only_fs_while_running_leaves_the_child_alone(
    bao: Bao, prefix: str, tmp_path: Path, small_fs: Path, fault: str
) -> None:
    """Under `inject -- app`, a re-render that cannot be written (disk full, read-only) is logged
    naming the file; the old file stays, no temp file is left, and the child is not restarted or
    signalled; inject keeps running."""
    path, old = _small_render(bao, prefix, tmp_path)
    destination, app = small_fs / "app.conf", SignalChild.create(tmp_path)
    with _polling_into(bao, tmp_path, destination, app) as running:
        pid = app.pids()[0]
        reason = _fill_or_freeze(fault, small_fs)
        bao.kv_put(path, v=_bigger_than_the_fs(fault))
        logged = running.wait_log(reason)
        assert str(destination) in logged[0]
        assert "child not told" in logged[0]

        def untouched() -> None:  # a few more polls: still nothing may reach the child
            assert running.poll() is None
            assert app.pids() == [pid]
            assert app.signals(pid) == []

        holds_for(untouched, duration_s=0.5, what="inject running, the child not told")
        assert destination.read_text() == f"v={old}\n"
        assert temp_files(small_fs) == []


def test_failed_write_is_retried_when_the_filesystem_recovers(
    bao: Bao, prefix: str, tmp_path: Path, small_fs: Path
) -> None:
    """A re-render that could not be written (read-only fs) is written once the filesystem is
    writable again, with no further secret change, and only then is the child restarted."""
    path, _ = _small_render(bao, prefix, tmp_path)
    destination, app = small_fs / "app.conf", SignalChild.create(tmp_path)
    with _polling_into(bao, tmp_path, destination, app) as running:
        first_pid = app.pids()[0]
        reason = _fill_or_freeze("read-only", small_fs)
        new = secret_value("new")
        bao.kv_put(path, v=new)
        running.wait_log(reason)
        assert app.pids() == [first_pid]
        _remount(small_fs, "rw")
        wait_for(lambda: destination.read_text() == f"v={new}\n", timeout_s=10, what="the retried write")
        app.wait_starts(2, timeout_s=5)
        assert len(running.lines(reason)) == 1, "the same failure is logged once, not at every retry"


# --- hostile values, paths and templates --------------------------------------------------

# A child that writes one env var's raw bytes (never printed) to a file.
DUMP_ENV = "import os, sys; open(sys.argv[2], 'wb').write(os.environb[sys.argv[1].encode()])"


def _all_files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() or p.is_symlink()}


def test_secret_values_never_choose_where_files_go(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """Values like `../../x`, `/etc/x` and keys named `../y` land in the rendered text, verbatim; the
    files written are exactly the configured destinations."""
    work = tmp_path / "work"
    hostile = {"a": "../../escaped", "b": f"{tmp_path}/absolute", "../c": "../../../../tmp/evil"}
    bao.kv_put(f"{prefix}/app", **hostile)
    write(
        work / "t.j2",
        f"{{% for k, v in secret('{prefix}/app').items() %}}{{{{ k }}}}={{{{ v }}}}\n{{% endfor %}}",
    )
    before = _all_files(tmp_path)
    result = run_inject(
        "-t", "t.j2:out/app.conf", "-e", f"A=vault:{prefix}/app#a", "--", sys.executable, "-c", DUMP_ENV,
        "A", "a.env",
        env=inject_env(bao), cwd=work,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert _all_files(tmp_path) - before == {"work/out/app.conf", "work/a.env"}
    rendered = (work / "out" / "app.conf").read_text().splitlines()
    assert sorted(rendered) == sorted(f"{k}={v}" for k, v in hostile.items())
    assert (work / "a.env").read_text() == "../../escaped"


def test_dotdot_in_a_configured_destination_is_the_operators_choice(
    bao: Bao, prefix: str, tmp_path: Path
) -> None:
    """A destination written with `..` in the config or `-t` is a path like any other (resolved once,
    at start); a reference path with `..` is refused."""
    _small_render(bao, prefix, tmp_path / "work")
    result = run_inject(
        "render", "-t", "t.j2:sub/../../sibling/app.conf", env=inject_env(bao), cwd=tmp_path / "work"
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "sibling" / "app.conf").is_file()
    refused = run_inject(
        "render", "-e", f"X=vault:{prefix}/../other#v", env=inject_env(bao), cwd=tmp_path / "work"
    )
    assert refused.returncode == 2
    assert "'..'" in error_line(refused)


def test_world_writable_destination_directory_is_warned_about_once(
    bao: Bao, prefix: str, tmp_path: Path
) -> None:
    """Rendering two files into a 0777 directory (no sticky bit) that the templates allow with
    `allow_shared_dir` works and logs one warning naming it (refused without: test_hostile_volume_e2e)."""
    _small_render(bao, prefix, tmp_path)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    entry = '[[template]]\nsource = "t.j2"\ndestination = "shared/{}.conf"\nallow_shared_dir = true\n'
    write(tmp_path / "inject.toml", entry.format("a") + entry.format("b"))
    result = run_inject("render", env=inject_env(bao), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "world-writable" in line]
    assert len(warnings) == 1, result.stderr
    assert str(shared) in warnings[0]
    assert (shared / "a.conf").exists()
    assert (shared / "b.conf").exists()


def test_template_source_that_is_not_utf8_is_a_usage_error(bao: Bao, tmp_path: Path) -> None:
    """A template file holding bytes that are not UTF-8 exits 2 naming the file, no traceback."""
    (tmp_path / "latin1.j2").write_bytes(b"caf\xe9 {{ 1 }}\n")
    result = run_inject("render", "-t", "latin1.j2:out.txt", env=inject_env(bao), cwd=tmp_path)
    assert result.returncode == 2
    line = error_line(result)
    assert "latin1.j2" in line
    assert "UTF-8" in line
    assert not (tmp_path / "out.txt").exists()


def test_environment_bytes_that_are_not_utf8(bao: Bao, tmp_path: Path) -> None:
    """A non-UTF-8 variable of inject's environment reaches the child's env byte for byte, while
    writing it into a file is refused naming the file (exit 6) with nothing written."""
    env = inject_env(bao, {"RAW": os.fsdecode(b"caf\xe9\xff")})
    result = run_inject(
        "-e", "COPY={{ env('RAW') }}", "--", sys.executable, "-c", DUMP_ENV, "COPY", "copy.bin",
        env=env, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "copy.bin").read_bytes() == b"caf\xe9\xff"
    write(tmp_path / "t.j2", "raw={{ env('RAW') }}\n")
    refused = run_inject("render", "-t", "t.j2:out.txt", env=env, cwd=tmp_path)
    assert refused.returncode == 6
    line = error_line(refused)
    assert "out.txt" in line
    assert "UTF-8" in line
    assert not (tmp_path / "out.txt").exists()


def test_newlines_in_env_values_are_passed_as_is(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """A secret holding newlines, CR and tabs (a PEM key, say) reaches the child's env unchanged."""
    value = f"-----BEGIN KEY-----\n{secret_value('pem')}\r\n\tend\n"
    forbid(value.strip())
    bao.kv_put(f"{prefix}/pem", key=value)
    result = run_inject(
        "-e", f"KEY=vault:{prefix}/pem#key", "--", sys.executable, "-c", DUMP_ENV, "KEY", "key.bin",
        env=inject_env(bao), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "key.bin").read_bytes() == value.encode()


def test_one_megabyte_secret_renders_to_a_file_and_is_refused_as_env(
    bao: Bao, prefix: str, tmp_path: Path
) -> None:
    """A 1 MB secret value renders into a file exactly; as an env var (over Linux's 128 KiB per
    variable) it exits 3 naming the variable, and the child is not started."""
    value = secret_value("mb") + secrets.token_hex(512 * 1024)
    forbid(value)
    bao.kv_put(f"{prefix}/big", v=value)
    write(tmp_path / "t.j2", f"{{{{ secret('{prefix}/big').v }}}}")
    result = run_inject("render", "-t", "t.j2:out.txt", env=inject_env(bao), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.txt").read_text() == value
    marker = tmp_path / "child-ran"
    refused = run_inject(
        "-e", f"BIG=vault:{prefix}/big#v", "--", "touch", str(marker), env=inject_env(bao), cwd=tmp_path
    )
    assert refused.returncode == 3
    line = error_line(refused)
    assert "env BIG" in line
    assert "128 KiB" in line
    assert not marker.exists()


def _reads_per_path(audit_log: Path, prefix: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in audit_log.read_text().splitlines():
        entry = json.loads(line)
        request = entry.get("request") or {}
        api_path = request.get("path", "")
        if (
            entry.get("type") == "request"
            and request.get("operation") == "read"
            and api_path.startswith(prefix)
        ):
            counts[api_path] = counts.get(api_path, 0) + 1
    return counts


# A child that checks its environment against an expected JSON map and writes only a verdict.
CHECK_ENV = """
import json, os, sys
expected = json.load(open(sys.argv[1]))
wrong = [name for name, value in expected.items() if os.environ.get(name) != value]
open(sys.argv[2], "w").write(json.dumps({"checked": len(expected), "wrong": wrong[:5]}))
"""


def test_ten_thousand_env_refs_read_each_path_once(audited: tuple[Bao, Path], tmp_path: Path) -> None:
    """10,000 env references (5,000 `-e`, 5,000 in [env]) over 4 paths: the child gets every value,
    each path is read once, and it takes seconds, not minutes."""
    bao, audit_log = audited
    prefix = f"secret/t-{secrets.token_hex(5)}"
    data = {n: {f"k{i}": secret_value(f"p{n}k{i}") for i in range(25)} for n in range(4)}
    for n, keys in data.items():
        bao.kv_put(f"{prefix}/p{n}", **keys)
    expected: dict[str, str] = {}
    config = ["[env]"]
    cli: list[str] = []
    for i in range(10_000):
        name, path, key = f"V{i:05d}", f"{prefix}/p{i % 4}", f"k{i % 25}"
        expected[name] = data[i % 4][key]
        if i % 2:
            config.append(f'{name} = "vault:{path}#{key}"')
        else:
            cli += ["-e", f"{name}=vault:{path}#{key}"]
    write(tmp_path / "inject.toml", "\n".join(config) + "\n")
    (tmp_path / "expected.json").write_text(json.dumps(expected))
    started = time.monotonic()
    result = run_inject(
        *cli, "--", sys.executable, "-c", CHECK_ENV, "expected.json", "verdict.json",
        env=inject_env(bao), cwd=tmp_path,
    )  # fmt: skip
    elapsed_s = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((tmp_path / "verdict.json").read_text()) == {"checked": 10_000, "wrong": []}
    reads = _reads_per_path(audit_log, prefix.replace("secret/", "secret/data/", 1))
    assert sorted(reads.values()) == [1, 1, 1, 1], reads
    assert elapsed_s < 30, f"10,000 env refs took {elapsed_s:.1f}s"


@pytest.mark.parametrize(
    "template",
    [
        "{% macro r(n) %}{{ r(n + 1) }}{% endmacro %}{{ r(0) }}",
        "{{ " + "(" * 3000 + "1" + ")" * 3000 + " }}",
        "{% if true %}" * 500 + "x" + "{% endif %}" * 500,
    ],
    ids=["macro-recursion", "nested-parens", "nested-blocks"],
)
def test_deep_recursion_in_a_template_is_a_clean_render_error(
    bao: Bao, tmp_path: Path, template: str
) -> None:
    """Unbounded macro recursion or absurd nesting exits 3 with one line naming the template, no
    traceback, no file and no child."""
    write(tmp_path / "deep.j2", template)
    marker = tmp_path / "child-ran"
    result = run_inject(
        "-t", "deep.j2:out.txt", "--", "touch", str(marker), env=inject_env(bao), cwd=tmp_path
    )
    assert result.returncode == 3
    assert "deep.j2" in error_line(result)
    assert not (tmp_path / "out.txt").exists()
    assert not marker.exists()


ESCAPES = {
    "cycler-globals": "{{ cycler.__init__.__globals__.os.popen('touch pwned').read() }}",
    "lipsum-globals": "{{ lipsum.__globals__['os'].system('touch pwned') }}",
    "joiner-globals": "{{ joiner.__init__.__globals__.os.system('touch pwned') }}",
    "namespace-globals": "{{ namespace.__init__.__globals__.os.system('touch pwned') }}",
    "subclasses": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "function-globals": "{{ env.__globals__['__builtins__']['open']('/etc/passwd').read() }}",
    "import-via-secret": "{{ secret.__globals__['__builtins__']['__import__']('os').system('touch pwned') }}",
    "format-string": "{{ '{0.__globals__[__builtins__]}'.format(env) }}",
    "format-filter": "{{ '%s'|format(env.__globals__) }}",
    "attr-filter": "{{ (env|attr('__globals__'))['__builtins__']['open']('pwned', 'w') }}",
    "self-context": "{{ self._TemplateReference__context }}",
    "include-passwd": "{% include '/etc/passwd' %}",
    "import-passwd": "{% import '/etc/passwd' as p %}{{ p }}",
    "mutate-list": "{% set l = [] %}{{ l.append(1) }}",
    "huge-range": "{{ range(10**9) | list }}",
    "huge-repeat": "{{ 'a' * 10**10 }}",
    "huge-power": "{{ 10 ** (10 ** 8) }}",
}


@pytest.mark.parametrize("template", ESCAPES.values(), ids=ESCAPES.keys())
def test_sandbox_escape_through_real_inject_fails_without_side_effects(
    bao: Bao, tmp_path: Path, template: str
) -> None:
    """Each known Jinja sandbox escape exits 3 with one line: no file created or written, no
    /etc/passwd content printed, no command run, no child started."""
    write(tmp_path / "evil.j2", template)
    before = _all_files(tmp_path)
    marker = tmp_path / "child-ran"
    result = run_inject(
        "-t", "evil.j2:out.txt", "--", "touch", str(marker), env=inject_env(bao), cwd=tmp_path, timeout_s=30
    )
    assert result.returncode == 3, result.stderr
    line = error_line(result)
    assert "evil.j2" in line
    assert "root:" not in result.stderr + result.stdout
    assert _all_files(tmp_path) == before


# --- secrecy ------------------------------------------------------------------------------


def _approle_login_material(bao: Bao, directory: Path, policy: str) -> tuple[str, str]:
    """An approle mount and role reading with ``policy``; role_id/secret_id files in ``directory``
    and an [auth] config there. Returns (role_id, secret_id), both added to the leak check."""
    mount = f"approle-{secrets.token_hex(4)}"
    bao.api("POST", f"sys/auth/{mount}", json={"type": "approle"})
    bao.api("POST", f"auth/{mount}/role/app", json={"token_policies": [policy]})
    role_id = forbid(bao.api("GET", f"auth/{mount}/role/app/role-id").json()["data"]["role_id"])
    secret_id = forbid(bao.api("POST", f"auth/{mount}/role/app/secret-id").json()["data"]["secret_id"])
    write(directory / "role_id", role_id + "\n")
    write(directory / "secret_id", secret_id + "\n")
    write(
        directory / "inject.toml",
        f'[auth]\nmethod = "approle"\nmount = "{mount}"\nrole_id_file = "role_id"\nsecret_id_file = "secret_id"\n',
    )
    return role_id, secret_id


def _live_tokens(bao: Bao, values: list[str]) -> list[str]:
    """Which of ``values`` the server accepts as a token (so a leak of one inject obtained by
    login, which the test never sees, is still caught)."""
    live = []
    for value in values:
        if len(value) < 20 or any(c.isspace() or c in "/=:" for c in value):
            continue
        response = bao.session.post(
            f"{bao.address}/v1/auth/token/lookup",
            json={"token": value},
            headers={"X-Vault-Token": bao.token},
            timeout=10,
        )
        if response.status_code == 200:
            live.append(value)
    return live


def _environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = [entry.split(b"=", 1) for entry in raw.split(b"\0") if b"=" in entry]
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}


@pytest.mark.parametrize("mode", ["supervised", "exec"])
def test_child_proc_environ_has_no_token_or_auth_material(
    bao: Bao, prefix: str, tmp_path: Path, mode: str
) -> None:
    """With VAULT_TOKEN, BAO_TOKEN, VAULT_ROLE_ID and VAULT_SECRET_ID in inject's environment and an
    AppRole login, the running child's /proc/PID/environ holds none of them, no live token at all
    (not even the one the login produced), and its cmdline and open files reveal nothing either."""
    password = secret_value()
    bao.kv_put(f"{prefix}/app", password=password)
    policy = f"read-{secrets.token_hex(4)}"
    bao.policy(policy, f'path "secret/data/{prefix.removeprefix("secret/")}/*" {{ capabilities = ["read"] }}')
    role_id, secret_id = _approle_login_material(bao, tmp_path, policy)
    vault_token, bao_token = (forbid(bao.token_with("default")) for _ in range(2))
    env = inject_env(
        bao,
        {"BAO_TOKEN": bao_token, "VAULT_ROLE_ID": role_id, "VAULT_SECRET_ID": secret_id},
        token=vault_token,
    )
    app = SignalChild.create(tmp_path)
    extra = ["--no-watch"] if mode == "exec" else []
    argv = inject_argv(*extra, "-e", f"DB_PASSWORD=vault:{prefix}/app#password", "--", *app.argv())
    with supervise(argv, env=env, cwd=tmp_path, ready=None) as running:
        pid = app.wait_starts(1)[0]["pid"]
        child_env = _environ_of(pid)
        assert child_env["DB_PASSWORD"] == password  # the render worked
        assert {"VAULT_TOKEN", "BAO_TOKEN", "VAULT_ROLE_ID", "VAULT_SECRET_ID"} & set(child_env) == set()
        raw = Path(f"/proc/{pid}/environ").read_bytes() + Path(f"/proc/{pid}/cmdline").read_bytes()
        for value in (vault_token, bao_token, role_id, secret_id):
            assert value.encode() not in raw
        assert _live_tokens(bao, list(child_env.values())) == []
        links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        assert not [
            link for link in links if link.startswith("socket:") or link.endswith(("role_id", "secret_id"))
        ]
        if mode == "supervised":
            assert secret_id.encode() not in Path(f"/proc/{running.pid}/cmdline").read_bytes()


# The app reads its parent's /proc environ: count of VAULT_TOKEN entries it could see, then
# whether it can read its own (exec makes the child dumpable again).
PEEK_AT_PARENT = r"""
{ tr '\0' '\n' < "/proc/$PPID/environ"; } 2>/dev/null | grep -c '^VAULT_TOKEN=' > "$1"
cat /proc/self/environ > /dev/null && echo self-readable >> "$1"
"""


def test_app_cannot_read_the_token_from_injects_proc_environ(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """The app runs as inject's own (non-root) user, yet cannot read VAULT_TOKEN from
    /proc/<inject>/environ: inject makes itself non-dumpable before reading any secret."""
    bao.kv_put(f"{prefix}/app", password=secret_value())
    policy = f"read-{secrets.token_hex(4)}"
    bao.policy(policy, f'path "secret/data/{prefix.removeprefix("secret/")}/*" {{ capabilities = ["read"] }}')
    token = forbid(bao.token_with("default", policy))
    shared = Path(tempfile.mkdtemp(prefix="inject-peek-", dir="/tmp"))  # reachable by any user
    shared.chmod(0o777)
    as_user = [] if os.geteuid() else ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    try:
        result = run_inject(
            "-e", f"P=vault:{prefix}/app#password", "--", "sh", "-c", PEEK_AT_PARENT, "peek", str(shared / "result"),
            env=inject_env(bao, token=token), cwd=shared, timeout_s=30, wrapper=as_user,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert (shared / "result").read_text().split() == ["0", "self-readable"]
    finally:
        shutil.rmtree(shared)


SCRATCH_DIRS = ("/tmp", "/var/tmp", "/dev/shm")
MAX_SCANNED_BYTES = 64 * 1024 * 1024


def _entries(directories: tuple[str, ...]) -> set[str]:
    found = set()
    for directory in directories:
        with contextlib.suppress(OSError):
            found |= {os.path.join(directory, name) for name in os.listdir(directory)}
    return found


def _files_containing(roots: list[Path], needles: list[bytes]) -> list[str]:
    """Regular files under ``roots`` (symlinks not followed) holding any of ``needles``."""
    hits = []
    for root in roots:
        paths = (
            [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()]
        )
        for path in paths:
            with contextlib.suppress(OSError):
                if path.stat().st_size <= MAX_SCANNED_BYTES and any(n in path.read_bytes() for n in needles):
                    hits.append(str(path))
    return hits


def test_token_and_values_land_only_where_asked(bao: Bao, prefix: str, tmp_path: Path) -> None:
    """After render, check, plan and a run with a child: the rendered value is only in the one
    destination, the token is in no file at all (cwd, HOME, TMPDIR, new entries of /tmp, /var/tmp,
    /dev/shm), TMPDIR stays empty and HOME holds only the compiled-template cache; plan prints no value."""
    password = secret_value()
    bao.kv_put(f"{prefix}/app", password=password)
    token = forbid(bao.token_with("root"))
    home, scratch, work = tmp_path / "home", tmp_path / "tmpdir", tmp_path / "work"
    for directory in (home, scratch, work):
        directory.mkdir()
    write(work / "t.j2", f"password={{{{ secret('{prefix}/app').password }}}}\n")
    env = inject_env(bao, {"HOME": str(home), "TMPDIR": str(scratch)}, token=token)
    before = _entries(SCRATCH_DIRS)
    common = ["-t", "t.j2:out/app.conf", "-e", f"P=vault:{prefix}/app#password"]
    for command, tail in (
        ("render", []),
        ("check", []),
        ("plan", []),
        ("run", ["--", sys.executable, "-c", "pass"]),
    ):
        result = run_inject(command, *common, *tail, env=env, cwd=work)
        assert result.returncode == 0, result.stderr
        assert password not in result.stdout
        assert token not in result.stdout
    new_entries = [Path(p) for p in _entries(SCRATCH_DIRS) - before]
    assert (work / "out" / "app.conf").read_text() == f"password={password}\n"
    # HOME holds nothing but the compiled-template cache (code from the template sources,
    # never a value: the last two asserts look inside every file, that cache included).
    assert [p.relative_to(home) for p in home.iterdir()] == [Path(".cache")]
    assert [p.name for p in (home / ".cache").iterdir()] == ["vault-inject"]
    assert list(scratch.iterdir()) == []
    everywhere = [tmp_path, *new_entries]
    assert _files_containing(everywhere, [token.encode()]) == []
    assert _files_containing(everywhere, [password.encode()]) == [str(work / "out" / "app.conf")]


# --- response bodies ----------------------------------------------------------------------


class FakeVault(BaseHTTPRequestHandler):
    """Answers every request with the class's ``status`` and ``body`` (``{token}`` becomes the
    X-Vault-Token the client sent, as a server echoing its request would)."""

    status = 500
    body = ""
    content_type = "application/json"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        payload = self.body.replace("{token}", self.headers.get("X-Vault-Token", "")).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", self.content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_LIST = _answer

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test reads inject's output, not the server's."""


@contextlib.contextmanager
def fake_vault(status: int, body: str, content_type: str = "application/json") -> Iterator[str]:
    """A local HTTP server answering ``status`` with ``body`` to everything; yields its address."""
    handler = type("Handler", (FakeVault,), {"status": status, "body": body, "content_type": content_type})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _inject_against(address: str, token: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_", "INJECT_"))},
        "VAULT_ADDR": address,
        "VAULT_TOKEN": token,
        "HOME": "/nonexistent-home",
    }
    return run_inject(
        "render", "--retry-timeout", "1s", "-e", "X=vault:secret/app#password", env=env, cwd=tmp_path
    )


BODIES = {
    "json-errors": ('{{"errors": ["{marker}"]}}', "application/json"),
    "json-data": ('{{"data": {{"password": "{marker}"}}, "errors": []}}', "application/json"),
    "html": ("<html><body><h1>{marker}</h1></body></html>", "text/html"),
    "text": ("upstream said {marker}", "text/plain"),
}
RETRIED_STATUSES = (412, 429, 500, 502, 503)  # retried until --retry-timeout: fewer bodies


def _body_cases() -> Iterator[object]:
    for status in (400, 401, 403, 404, 405, *RETRIED_STATUSES):
        kinds = ("json-errors", "html") if status in RETRIED_STATUSES else tuple(BODIES)
        for kind in kinds:
            template, content_type = BODIES[kind]
            yield pytest.param(status, template, content_type, id=f"{status}-{kind}")


@pytest.mark.parametrize(("status", "template", "content_type"), list(_body_cases()))
def test_server_response_bodies_never_reach_the_log(
    tmp_path: Path, status: int, template: str, content_type: str
) -> None:
    """Whatever a server answers (JSON errors, data, HTML, text) for any error status, inject exits
    with one line that names the status but carries none of the body."""
    marker = f"body-{secrets.token_hex(8)}"  # checked here, not by the session guard (see the xfail)
    token = forbid(f"hvs.{secrets.token_hex(16)}")
    with fake_vault(status, template.format(marker=marker), content_type) as address:
        result = _inject_against(address, token, tmp_path)
    assert result.returncode in (4, 5), result.stderr
    line = error_line(result)
    assert marker not in result.stderr, line
    assert token not in result.stderr


@pytest.mark.parametrize("status", [400, 403, 500])
def test_a_server_echoing_the_token_or_forging_lines_cannot_print_them(tmp_path: Path, status: int) -> None:
    """A server that echoes the request's token, or puts newlines in its errors to forge log lines,
    gets neither into inject's output: one line, token masked."""
    token = forbid(f"hvs.{secrets.token_hex(16)}")
    body = json.dumps({"errors": ["token {token} is not allowed", "\ninject: forged line\n"]})
    with fake_vault(status, body) as address:
        result = _inject_against(address, token, tmp_path)
    assert result.returncode in (4, 5), result.stderr
    error_line(result)  # exactly one line
    assert token not in result.stderr
