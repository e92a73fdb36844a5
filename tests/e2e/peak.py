"""Run a command under an address-space cap and print its exit code, its own peak RSS and CPU time.

``python -m tests.e2e.peak LIMIT_BYTES -- ARGV...`` prints ``<exit code> <peak bytes> <CPU s>``
(user + system time of the command alone).

Why a separate process: a child's ``ru_maxrss`` counts the memory of the process that forked
or vforked it, up to its exec (Linux keeps the high-water mark across exec). Measured straight
from the test runner, a 10 MB inject showed the runner's own 270 MB after some other tests.
This small, freshly started interpreter forks the command instead, so the figure is the
command's own (plus at most this process's few MB).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys


def main(argv: list[str]) -> int:
    limit = int(argv[0])
    command = argv[argv.index("--") + 1 :]

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    child = subprocess.Popen(command, preexec_fn=cap)  # the caller kills our group past its deadline
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)  # reaped: Popen must not wait again
    print(child.returncode, usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime)  # KiB on Linux
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
