"""The console script: signal handlers first, then the command line.

Kept apart from ``cli`` so that the handlers are in place before click and the rest of
inject are even imported (a PID 1 without a handler loses the signal).
"""

from __future__ import annotations


def main() -> None:
    """``inject``: install the signal handlers, then parse and run."""
    from . import inbox

    inbox.install()
    from .cli import main as cli_main

    cli_main()
