"""Fakes for the loop tier: a clock, a scripted queue, held workers, processes, commands and
a server. The supervisor under test is the real one; only its edges are fake."""

from __future__ import annotations

import queue
import random
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tests.unit.fakeclock import FakeClock
from vault_inject.cli.app import prepare
from vault_inject.client.vault import Login
from vault_inject.config.settings import CliOptions, build_config
from vault_inject.errors import UnreachableError
from vault_inject.files.write import Commit, FileWrite
from vault_inject.identity import Identity
from vault_inject.loop.apply import Applier
from vault_inject.loop.lifecycle import Lifecycle
from vault_inject.loop.sources import FilesChanged, WorkDone
from vault_inject.loop.supervisor import Collaborators, Supervisor
from vault_inject.model import Request, Secret
from vault_inject.observe.health import Snapshot
from vault_inject.process.controller import ChildController
from vault_inject.process.signals import Signal
from vault_inject.render.engine import Engine

PATH = "secret/app"


class Script:
    """The loop's queue: events scheduled at fake times; waiting advances the clock."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.due: list[tuple[float, int, object]] = []
        self._n = 0
        self.calls = 0

    def at(self, when: float, event: object) -> None:
        """Deliver ``event`` at fake time ``when`` (relative times via ``in_``)."""
        self._n += 1
        self.due.append((when, self._n, event))
        self.due.sort(key=lambda item: (item[0], item[1]))

    def in_(self, delay_s: float, event: object) -> None:
        self.at(self.clock.now + delay_s, event)

    def put(self, item: object) -> None:
        self.at(self.clock.now, item)

    def do(self, delay_s: float, action: Callable[[], None]) -> None:
        """Run ``action`` at that fake time (release a held job, change the server...)."""
        self.in_(delay_s, _Action(action))

    def get(self, block: bool = True, timeout: float | None = None) -> object:
        self.calls += 1
        if self.calls > MAX_TURNS:
            raise AssertionError("the loop spins without waiting")
        deadline = self.clock.now + (3600.0 if timeout is None else timeout)
        while self.due and self.due[0][0] <= deadline:
            when, _, event = self.due.pop(0)
            self.clock.now = max(self.clock.now, when)
            if isinstance(event, _Action):
                event.action()
                continue
            if isinstance(event, _Finish):
                event.workers.jobs.pop(event.name, None)
                return event.done
            return event
        self.clock.now = deadline
        if self.clock.now > LIMIT:
            raise AssertionError("the loop never finished (fake time ran out)")
        raise queue.Empty


LIMIT = 1_000_000.0
MAX_TURNS = 20_000


@dataclass(frozen=True)
class _Action:
    action: Callable[[], None]


class Workers:
    """Jobs run when released (``held`` names) or at once; results go on the script."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.held: set[str] = set()
        self.jobs: dict[str, Callable[[], object]] = {}
        self.started: list[str] = []

    def busy(self, name: str) -> bool:
        return name in self.jobs

    def start(self, name: str, job: Callable[[], object]) -> bool:
        if name in self.jobs:
            return False
        self.started.append(name)
        self.jobs[name] = job
        if name not in self.held:
            self.release(name)
        return True

    def release(self, name: str, after_s: float = 0.0) -> None:
        job = self.jobs[name]
        try:
            done = WorkDone(name, value=job())
        except BaseException as exc:
            done = WorkDone(name, error=exc)
        self.script.in_(after_s, _Finish(self, name, done))


@dataclass(frozen=True)
class _Finish:
    """Marks a held job finished when the loop takes its result (as a real worker does)."""

    workers: Workers
    name: str
    done: WorkDone


class Procs:
    """Processes: spawned pids, the signals each group got, exits and leftovers set by tests."""

    def __init__(self) -> None:
        self.next_pid = 100
        self.spawned: list[int] = []
        self.signals: list[tuple[int, int, float]] = []  # (pgid or pid, signum, when)
        self.exits: dict[int, int] = {}
        self.lingering: set[int] = set()  # process groups with members left
        self.clock: FakeClock | None = None

    def spawn(self, argv: Sequence[str], env: Mapping[str, str], identity: Identity) -> int:
        self.next_pid += 1
        self.spawned.append(self.next_pid)
        return self.next_pid

    def signal_group(self, pgid: int, signum: int) -> None:
        self.signals.append((pgid, signum, self.clock.now if self.clock else 0.0))

    def signal_pid(self, pid: int, signum: int) -> None:
        self.signals.append((pid, signum, self.clock.now if self.clock else 0.0))

    def descendants(self, pid: int) -> frozenset[int]:
        return frozenset()

    def alive(self, pgid: int, pids: frozenset[int]) -> bool:
        return pgid in self.lingering

    def exited(self, pid: int) -> int | None:
        return self.exits.pop(pid, None)

    def got(self, signum: int) -> list[int]:
        return [pid for pid, sig, _ in self.signals if sig == signum]


class Commands:
    """Shell commands: what ran, with an exit code per command text."""

    def __init__(self) -> None:
        self.ran: list[str] = []
        self.codes: dict[str, int] = {}
        self.killed = False

    def run(self, command: str, *, env: Mapping[str, str], timeout_s: float, what: str) -> int:
        self.ran.append(command)
        return self.codes.get(command, 0)

    def run_all(self, commands: Sequence[tuple[str, str, float]], *, env: Mapping[str, str]) -> None:
        for what, command, timeout_s in commands:
            self.run(command, env=env, timeout_s=timeout_s, what=what)

    def kill_all(self) -> None:
        self.killed = True


class Files:
    """Destinations in memory; a commit remembers what to put back."""

    def __init__(self) -> None:
        self.content: dict[str, str] = {}
        self.fail = False
        self.rollbacks = 0
        self.clock: FakeClock | None = None
        self.written_at: list[tuple[float, str]] = []  # (when, destination) of every changed file

    def write_all(self, writes: list[FileWrite]) -> Commit:
        if self.fail:
            from vault_inject.errors import FileWriteError

            raise FileWriteError("cannot write /out: No space left on device")
        before = dict(self.content)
        changed = [w.destination for w in writes if self.content.get(w.destination) != w.content]
        for write in writes:
            self.content[write.destination] = write.content
        self.written_at += [(self.clock.now if self.clock else 0.0, dest) for dest in changed]
        files = self

        class _Commit(Commit):
            def rollback(self) -> None:
                files.content = before
                files.rollbacks += 1

        return _Commit(changed=changed)


class Server:
    """KV versions of one path, leases, tokens; ``down`` makes every call an outage."""

    def __init__(self) -> None:
        self.version = 1
        self.versions: dict[str, int] = {}  # per-path versions; others follow ``version``
        self.down = False
        self.renewals: list[str] = []
        self.tokens_set: list[str] = []
        self.token = "t0"

    def fetch(self, request: Request) -> Secret:
        if self.down:
            raise UnreachableError("http://127.0.0.1:1 did not answer")
        path = request.path
        version = self.versions.get(path, self.version)
        return Secret(path=path, data={"k": f"v{version}"}, version=version, kv_version=2)

    # Lifecycle's client
    def set_token(self, token: str) -> None:
        self.tokens_set.append(token)

    def renew_self(self, increment_s: int | None = None) -> Login:
        self.renewals.append("token")
        return Login(token=self.token, ttl_s=3600, renewable=True)

    def renew_lease(self, lease_id: str, increment_s: int) -> Any:
        raise AssertionError("no leases in these tests")

    def lease_alive(self, lease_id: str) -> bool:
        return True

    def revoke_lease(self, lease_id: str, *, budget_s: float | None = None) -> None:
        pass

    def revoke_self(self, *, budget_s: float | None = None) -> None:
        pass

    retry_timeout_s = 0.0


class Authenticator:
    """Logs in by handing out numbered tokens."""

    can_relogin = True
    owns_token = True

    def __init__(self, server: Server) -> None:
        self.server = server
        self.logins = 0

    def login(self, client: Any) -> Login:
        self.logins += 1
        self.server.token = f"t{self.logins}"
        return Login(token=self.server.token, ttl_s=3600, renewable=True)


@dataclass
class Rig:
    """A supervisor wired to fakes, with a first render already done."""

    toml: dict[str, Any] = field(default_factory=dict)
    argv: Sequence[str] | None = ("app",)
    clock: FakeClock = field(default_factory=FakeClock)
    rand: Callable[[], float] = field(default_factory=lambda: random.Random(0).random)

    def __post_init__(self) -> None:
        self.script = Script(self.clock)
        self.workers = Workers(self.script)
        self.procs = Procs()
        self.procs.clock = self.clock
        self.commands = Commands()
        self.files = Files()
        self.files.clock = self.clock
        self.published: list[Snapshot] = []
        self.server = Server()
        self.auth = Authenticator(self.server)
        data = {
            "template": [{"contents": "{{ secret('secret/app').k }}", "destination": "/out/app.conf"}],
            **self.toml,
        }
        self.config = build_config(CliOptions(), {}, data, config_path="inject.toml", cwd="/srv")
        job = prepare(self.config, {})
        self.engine = Engine(job, self.server)
        rendered = self.engine.first_render()
        self.files.content.update(rendered.files)
        self.new_tokens: list[str] = []
        life = Lifecycle(
            self.server,  # type: ignore[arg-type]
            authenticator=self.auth,
            grant=None,
            on_new_token=self.new_tokens.append,
            clock=self.clock,
        )
        self.controller = None
        if self.argv:
            self.controller = ChildController(
                self.procs,
                argv=self.argv,
                identity=Identity(),
                env=lambda: {},
                kill_signal=self.config.kill_signal,
                kill_timeout_s=self.config.kill_timeout_s,
                clock=self.clock,
            )
        self.parts = Collaborators(
            events=self.script,
            workers=self.workers,  # type: ignore[arg-type]
            life=life,
            applier=Applier(
                write=self.files.write_all,
                commands=self.commands,  # type: ignore[arg-type]
                identity=Identity(),
            ),
            poll_read=self.server.fetch,
            refresh_read=self.server.fetch,
            reap=lambda: None,
            child=self.controller,
            auth_file="/run/token",
            publish=self.published.append,
        )
        self.make_supervisor()

    def make_supervisor(self) -> None:
        """(Re)build the supervisor from ``parts`` (after a test changed them)."""
        self.supervisor = Supervisor(
            config=self.config, engine=self.engine, parts=self.parts, clock=self.clock, rand=self.rand
        )

    @property
    def child_pid(self) -> int:
        return self.procs.spawned[-1]

    def exit_child(self, code: int, *, pid: int | None = None) -> None:
        """The child exits: its status is there to reap, and SIGCHLD arrives."""
        self.procs.exits[pid or self.child_pid] = code
        self.script.put(Signal(signal.SIGCHLD))

    def file_changed(self, path: str, delay_s: float = 0.0) -> None:
        self.script.in_(delay_s, FilesChanged(frozenset({path})))
