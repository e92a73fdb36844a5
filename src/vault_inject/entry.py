"""The console script: signal handlers first, then the command line.

Kept apart from ``cli`` so that the handlers are in place before click and the rest of
inject are even imported (a PID 1 without a handler loses the signal). ``inject -- CMD``
and ``inject render -c FILE`` skip click altogether (``launch.plain_command``).
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .cachedir import StartCache

EXIT_STDOUT_FAILED = 120  # what Python exits with when stdout cannot be flushed at exit


def main() -> None:
    """``inject``: install the signal handlers, then parse and run."""
    from . import inbox, lazyimports

    inbox.install()
    lazyimports.install()  # hvac's API classes, which inject never uses, stay unrun (~7 ms)
    caches = start_caches()
    # Start-up only imports and builds what stays for the whole run, yet the cyclic garbage
    # collector keeps rescanning it as it grows (5-9% of the CPU of `inject render`).
    # app.gc_back_on turns it on again before the first render, whose memory budget must
    # see freed cycles, and so for the whole long-running loop.
    gc.disable()
    try:
        _dispatch(sys.argv[1:])
        code = 0
    except SystemExit as exc:
        code = exit_code(exc)
    for cache in caches:
        cache.save()  # what this run compiled, for the next start
    exit_without_teardown(code)


def start_caches() -> list[StartCache[Any, Any]]:
    """What earlier runs compiled at start-up: regular expressions (``regexcache``, ~15 ms
    a start) and dataclass methods (``dataclasscache``, ~9 ms). Installed before click,
    the config and the app are imported, which is when most of both are compiled."""
    from .dataclasscache import DataclassCache
    from .regexcache import RegexCache

    installed = (RegexCache.install(os.environ), DataclassCache.install(os.environ))
    return [cache for cache in installed if cache is not None]


def _dispatch(args: list[str]) -> None:
    from .launch import plain_command, run_plain

    plain = plain_command(args)
    if plain is not None:
        # `inject -- CMD` (the image's entrypoint), `inject render -c inject.toml` (an init
        # container): nothing else for click to parse; launch runs it as click would,
        # without importing click (~11 ms).
        run_plain(*plain)
        return
    from .cli import main as cli_main

    cli_main(args)


def exit_code(exc: SystemExit) -> int:
    """The status ``sys.exit`` would give: None is 0, an int itself, anything else is
    printed to stderr and gives 1."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def exit_without_teardown(code: int) -> None:
    """Flush what is buffered and end the process now, skipping interpreter teardown.

    Why: tearing down the interpreter (clearing every module, freeing every object) takes
    10-15 ms after the work is done, which every container start and every ``inject
    render`` would pay. Nothing inject needs happens there: every thread is a daemon
    (teardown would not wait for them either), files, leases and children are finished
    explicitly before ``cli`` returns, and the one atexit duty that matters, flushing the
    log handlers, is done here (``logging.shutdown``), then stdout and stderr.
    """
    import logging  # loaded already (log.py); imported here only to keep entry's top bare

    logging.shutdown()
    try:
        sys.stdout.flush()
    except (OSError, ValueError):  # a closed pipe: Python's own exit gives 120 then, too
        code = EXIT_STDOUT_FAILED
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
    os._exit(code)
