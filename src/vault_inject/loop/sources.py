"""Change producers. Each turns one kind of outside change into events on one queue:

* signal handlers (``inbox``) -> ``Signal``;
* ``Workers`` run anything slow (server calls, commands, file reads) on daemon threads,
  one job per name at a time -> ``WorkDone`` with the job's result or error;
* ``read_all`` is the poll job: one read per secret, concurrently -> ``PollDone``;
* ``FileWatcher`` (a thread around ``watchfiles.watch`` on *directories*, since an
  atomic rename breaks a single-file watch) -> ``FilesChanged``.

The supervisor's loop is the only consumer, so all decisions happen in one thread and
the loop never waits on anything but its queue.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import InjectError, UnreachableError
from ..fanout import fan_out
from ..model import READ_WORKERS, Request, Secret
from ..process import Signal

log = logging.getLogger(__name__)

ReadFn = Callable[[Request], Secret]  # VaultClient.fetch of one worker's client


@dataclass
class PollDone:
    """One poll finished: the secrets read, per-secret errors, and the outage that stopped it."""

    fresh: dict[Request, Secret] = field(default_factory=dict)
    failed: dict[Request, InjectError] = field(default_factory=dict)
    outage: UnreachableError | None = None


@dataclass(frozen=True)
class FilesChanged:
    """Watched files (template sources, config, token file) changed on disk."""

    paths: frozenset[str]


@dataclass(frozen=True)
class WorkDone:
    """A job run by ``Workers`` finished, with its result or the exception it raised."""

    name: str
    value: Any = None
    error: BaseException | None = None


Event = Signal | FilesChanged | WorkDone


class EventQueue(Protocol):
    """The loop's one queue (``queue.SimpleQueue``; a scripted fake in the unit tests)."""

    def put(self, item: Any) -> None: ...

    def get(self, block: bool = True, timeout: float | None = None) -> Any: ...


class Workers:
    """Runs slow work off the loop: one daemon thread per job, one job per name at a time.

    Daemon threads: a job stalled on a hung server must never hold inject's exit."""

    def __init__(self, events: EventQueue) -> None:
        self._events = events
        self._busy: set[str] = set()
        self._lock = threading.Lock()

    def busy(self, name: str) -> bool:
        """True while a job of that name runs."""
        with self._lock:
            return name in self._busy

    def start(self, name: str, job: Callable[[], object]) -> bool:
        """Run ``job`` on a worker; False (nothing started) when one of that name still runs."""
        with self._lock:
            if name in self._busy:
                return False
            self._busy.add(name)
        threading.Thread(target=self._run, args=(name, job), name=f"inject-{name}", daemon=True).start()
        return True

    def _run(self, name: str, job: Callable[[], object]) -> None:
        done = WorkDone(name)
        try:
            done = WorkDone(name, value=job())
        except BaseException as exc:  # reported to the loop, never lost with the thread
            done = WorkDone(name, error=exc)
        finally:
            with self._lock:
                self._busy.discard(name)
            self._events.put(done)


def read_all(read: ReadFn, keys: Sequence[Request]) -> PollDone:
    """Read ``keys`` (one request per distinct path, READ_WORKERS at a time); every result,
    per-key error and outage is collected, nothing raised."""
    done = PollDone()

    def read_one(key: Request) -> None:
        try:
            done.fresh[key] = read(key)
        except UnreachableError as exc:
            done.outage = exc
        except InjectError as exc:
            done.failed[key] = exc
        except Exception as exc:  # never let a worker die silently
            done.failed[key] = InjectError(f"reading '{key.label}' failed: {type(exc).__name__}")

    fan_out(list(keys), read_one, workers=READ_WORKERS, name="inject-read")
    return done


class FileWatcher:
    """Watches the directories of some files and reports changes to those files."""

    def __init__(self, files: Iterable[str], events: EventQueue) -> None:
        self._files = {os.path.abspath(f) for f in files if f}
        self._events = events
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start watching (no-op when there is nothing to watch)."""
        directories = sorted({os.path.dirname(f) for f in self._files if os.path.isdir(os.path.dirname(f))})
        if not directories:
            return
        self._thread = threading.Thread(
            target=self._run, args=(directories,), name="inject-watch", daemon=True
        )
        self._thread.start()

    def _run(self, directories: list[str]) -> None:
        import watchfiles  # only long-running commands pay for this import

        try:
            for changes in watchfiles.watch(
                *directories,
                stop_event=self._stop,
                debounce=200,
                step=50,
                recursive=False,
                raise_interrupt=False,
                watch_filter=None,
            ):
                hits = frozenset(path for _, path in changes if os.path.abspath(path) in self._files)
                if hits:
                    self._events.put(FilesChanged(paths=hits))
        except Exception as exc:  # a watcher failure must not take the app down
            log.warning("file watching stopped: %s", type(exc).__name__)

    def stop(self) -> None:
        """Stop the watcher thread."""
        self._stop.set()
