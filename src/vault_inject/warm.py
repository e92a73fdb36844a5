"""``python -m vault_inject.warm``: fill inject's cache directory ahead of time, for an image.

A container starts from its image's filesystem every time, so what inject keeps between
runs in ``~/.cache/vault-inject`` (``regexcache``: ~15 ms of every start,
``dataclasscache``: ~9 ms) would be made again at every container start and thrown away
with the container. Run once at image build time (the Dockerfile does), this creates the
directory (0700, inject's user) and stores the regular expressions and dataclass methods
that the command line, the config, the server client and a template compile need; every
container then starts with them. Nothing else is stored: compiled templates are keyed by
their source, which the image does not have.
"""

from __future__ import annotations

import os
import sys

from . import lazyimports
from .cachedir import CacheDir, default_dir
from .entry import start_caches


def main() -> int:
    """Create the cache directory and store what a render compiles; 0, or 1 with a line
    saying why there is no usable cache directory."""
    directory = default_dir(os.environ)
    opened = CacheDir.open(directory, "start-up")  # creates it, 0700
    if opened is None:
        where = directory or "INJECT_CACHE_DIR is empty, or no HOME"
        print(f"inject warm: no usable cache directory ({where})", file=sys.stderr)
        return 1
    opened.close()
    lazyimports.install()  # as the command line: what it never runs is not stored either
    caches = start_caches()  # what the command line installs (the directory was just made)
    try:
        import difflib  # noqa: F401 - click builds a "did you mean" for every short option
        import tomllib

        import click  # noqa: F401 - (not .cli: only the entry point imports the command line)

        # imported for the regexes and dataclasses they compile: render, the loop, the child alone
        from . import alone, app, auth, engine, files, launch, transport, vault, wiring  # noqa: F401
        from .render import Renderer

        tomllib.loads('[vault]\naddress = "http://127.0.0.1:8200"  # a config file\n')
        Renderer({}).compile("warm.tpl", "{{ secret('secret/app').password | default('') }}\n")
    finally:
        for cache in caches:
            cache.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
