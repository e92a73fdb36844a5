"""The cyclic garbage collector during start-up: this module alone turns it off and on.

Start-up imports and builds what lives as long as the process (modules, classes, the
config); the collector would keep rescanning all of it as it grows, for nothing. So the
console script calls ``pause`` first thing, and ``resume`` turns the collector on again
where the command's work begins: before the first render (a render's memory budget must
see freed cycles) and before the plain PID 1 starts supervising its child (a long run).
``resume`` first freezes what start-up built (moves it out of the collector's
generations), so later collections do not walk it. Both are idempotent, and ``resume`` is
harmless where ``pause`` never ran (tests, the library).
"""

from __future__ import annotations

import gc


def pause() -> None:
    """Collector off for start-up (the console script's first step)."""
    gc.disable()


def resume() -> None:
    """Collector on again, what start-up built frozen first: the work begins."""
    if gc.isenabled():
        return
    gc.freeze()
    gc.enable()
