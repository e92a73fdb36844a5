"""Change producers. Each turns one kind of outside change into events on one queue:

* signal handlers -> ``Signal`` (put from the handler: ``SimpleQueue.put`` is reentrant);
* ``Poller`` (a thread) -> ``PollDone`` with the freshly read secrets, or the error;
* ``FileWatcher`` (a thread around ``watchfiles.watch`` on *directories*, since an
  atomic rename breaks a single-file watch) -> ``FilesChanged``.

The supervisor's loop is the only consumer, so all decisions happen in one thread.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from .errors import InjectError, UnreachableError
from .model import READ_WORKERS, Secret
from .render import SecretKey

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Signal:
    """A signal inject received."""

    signum: int


@dataclass
class PollDone:
    """One poll finished: the secrets read, per-secret errors, and the outage that stopped it."""

    purpose: str = "poll"  # "poll": the KV version check; "refresh": lease/cert re-reads
    fresh: dict[SecretKey, Secret] = field(default_factory=dict)
    failed: dict[SecretKey, InjectError] = field(default_factory=dict)
    outage: UnreachableError | None = None


@dataclass(frozen=True)
class FilesChanged:
    """Watched files (template sources, config, token file) changed on disk."""

    paths: frozenset[str]


Event = Signal | PollDone | FilesChanged
EventQueue = queue.SimpleQueue[Event]


class Poller:
    """Reads a list of secrets in a background thread, one poll at a time."""

    def __init__(
        self, read: Callable[[str, int | None], Secret], events: EventQueue, *, purpose: str = "poll"
    ) -> None:
        self._read = read
        self._events = events
        self._purpose = purpose
        self._busy = threading.Lock()

    @property
    def busy(self) -> bool:
        """True while a poll is in flight."""
        return self._busy.locked()

    def start(self, keys: Sequence[SecretKey]) -> bool:
        """Begin polling ``keys``; False when a poll is already running."""
        if not self._busy.acquire(blocking=False):
            return False
        threading.Thread(target=self._run, args=(list(keys),), name="inject-poll", daemon=True).start()
        return True

    def _run(self, keys: list[SecretKey]) -> None:
        done = PollDone(purpose=self._purpose)
        try:
            self._read_all(keys, done)
        finally:
            self._busy.release()
            self._events.put(done)

    def _read_all(self, keys: list[SecretKey], done: PollDone) -> None:
        """One request per distinct path, READ_WORKERS at a time, on daemon threads: a
        ThreadPoolExecutor's workers are joined at interpreter exit, so a read stalled on a
        hung server would hold inject's exit (after TERM) for the whole request timeout."""
        pending = iter(keys)
        lock = threading.Lock()

        def work() -> None:
            while True:
                with lock:
                    key = next(pending, None)
                if key is None:
                    return
                self._read_one(key, done)

        if len(keys) <= 1:
            work()
            return
        workers = [
            threading.Thread(target=work, name=f"inject-{self._purpose}-{n}", daemon=True)
            for n in range(min(READ_WORKERS, len(keys)))
        ]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join()

    def _read_one(self, key: SecretKey, done: PollDone) -> None:
        try:
            done.fresh[key] = self._read(*key)
        except UnreachableError as exc:
            done.outage = exc
        except InjectError as exc:
            done.failed[key] = exc
        except Exception as exc:  # never let the thread die silently
            done.failed[key] = InjectError(f"reading '{key[0]}' failed: {type(exc).__name__}")


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
