"""The console script: signal handlers first, then the command line.

Kept apart from ``commands`` (click) so that the handlers are in place before click and the rest of
inject are even imported (a PID 1 without a handler loses the signal). ``inject -- CMD``
and ``inject render -c FILE`` skip click altogether (``launch.plain_command``).
"""

from __future__ import annotations

import contextlib
import os
import sys

EXIT_STDOUT_FAILED = 120  # what Python exits with when stdout cannot be flushed at exit


def main() -> None:
    """``inject``: install the signal handlers, then parse and run."""
    from ..process import signals
    from . import collector

    signals.install()
    collector.pause()  # on again where the command's work begins (``collector.resume``)
    try:
        _dispatch(sys.argv[1:])
        code = 0
    except SystemExit as exc:
        code = exit_code(exc)
    exit_without_teardown(code)


def _dispatch(args: list[str]) -> None:
    from .launch import plain_command, run_plain

    plain = plain_command(args)
    if plain is not None:
        # `inject -- CMD` (the image's entrypoint), `inject render -c inject.toml` (an init
        # container): nothing else for click to parse; launch runs it as click would,
        # without importing click.
        run_plain(*plain)
        return
    from .commands import main as cli_main

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

    The rule, for whoever adds to inject: nothing may depend on interpreter teardown. No
    ``atexit`` handler, no ``__del__`` or ``weakref.finalize`` that must run, no non-daemon
    thread to join: every thread is a daemon, and files, leases, the token and children are
    finished explicitly before the command returns. The one duty teardown would do for us,
    flushing the log handlers, is done here (``logging.shutdown``), then stdout and stderr.
    Teardown (clearing every module, freeing every object) is work every container start and
    every ``inject render`` would otherwise pay after its work is done.
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
