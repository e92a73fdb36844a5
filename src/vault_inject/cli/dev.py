"""``inject dev``: run like ``inject`` against an embedded OpenBao dev server."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence

from ..config import Config
from . import app, devserver

log = logging.getLogger(__name__)


def cmd_dev(config: Config, environ: Mapping[str, str], secrets_file: str | None, argv: Sequence[str]) -> int:
    """Start the dev server, load the secrets file, then render and run ``argv`` (if any)."""
    path = secrets_file or (
        devserver.DEFAULT_SECRETS_FILE if os.path.isfile(devserver.DEFAULT_SECRETS_FILE) else None
    )
    seed_data = devserver.load_secrets_file(path) if path else {}
    app.prepare(config, environ)  # report config and template errors before starting a server
    with devserver.dev_server() as server:
        devserver.seed(server, seed_data)
        log.info("loaded %d secret(s) from %s", len(seed_data), path or "nothing")
        dev_config = dataclasses.replace(
            config,
            address=server.address,
            addresses=(server.address,),  # never a real cluster's nodes with the dev token
            token_file=server.token_file,
            auth_method="token",
            namespace="",
            no_watch=False,
            # the child's output shows in a terminal: its secret values are concealed unless
            # mask_output = false says otherwise
            mask_output=config.mask_output is not False,
        )
        env = {k: v for k, v in environ.items() if k not in ("VAULT_TOKEN", "BAO_TOKEN")}
        env["VAULT_ADDR"] = server.address
        env.pop("INJECT_ADDRESSES", None)  # it would win over VAULT_ADDR in the child's library
        # A runtime-fetch app (``vault_inject.Secrets``) in the child finds the throwaway
        # server's token file here; the token itself stays out of the environment.
        env["INJECT_TOKEN_FILE"] = server.token_file
        if argv:
            return app.cmd_run(dev_config, env, argv)
        log.info("dev server at %s; token in %s; Ctrl-C to stop", server.address, server.token_file)
        return app.cmd_watch(dev_config, env)
