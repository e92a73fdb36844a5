# vault-inject as a container entrypoint.
#
#   docker build -t vault-inject .
#   docker run --rm -e VAULT_ADDR=https://vault.example:8200 -e VAULT_TOKEN \
#     -e DB_PASS=vault:secret/infrastructure/postgres#password \
#     vault-inject sh -c 'echo "DB_PASS has ${#DB_PASS} characters"'
#
# `docker run IMAGE CMD...` means `inject -- CMD...`: inject is PID 1, renders, starts CMD
# as its child, forwards signals, reaps zombies and exits with CMD's code. Options go in
# the environment (INJECT_CONFIG, INJECT_USER, VAULT_ADDR, ...) or in /app/inject.toml.
#
# BASE_IMAGE is any Debian-like image with Python 3.11+ at a fixed path (the venv in
# /opt/inject points at it), the same for both stages. CI builds a local stand-in with
# the same shape (Debian bookworm, Python 3.11) because it cannot pull images.
ARG BASE_IMAGE=python:3.12-slim

# --- build: the project's wheel, then a venv with it and its runtime dependencies -------
FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
# The build backend lives in its own venv, outside what is shipped.
RUN python3 -m venv /opt/build \
 && /opt/build/bin/pip install --quiet "hatchling>=1.18"
# Runtime dependencies first (from pyproject.toml alone), so editing src/ does not
# download them again. The shipped venv has no pip: the build venv's pip installs into it.
WORKDIR /src
COPY pyproject.toml ./
RUN python3 -m venv --without-pip /opt/inject \
 && python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' > /tmp/requirements.txt \
 && /opt/build/bin/pip --python /opt/inject/bin/python install --quiet --requirement /tmp/requirements.txt
COPY README.md LICENSE ./
COPY src ./src
RUN /opt/build/bin/pip wheel --quiet --no-deps --no-build-isolation --wheel-dir /wheels . \
 && /opt/build/bin/pip --python /opt/inject/bin/python install --quiet --no-deps /wheels/vault_inject-*.whl \
 && /opt/inject/bin/inject --version

# --- final: the base image, the venv, an unprivileged user ---------------------------
FROM ${BASE_IMAGE}
# `app` (uid/gid 10001) is for the child: `-e INJECT_USER=app` (or `user = "app"` under
# [child] in inject.toml) keeps inject as root, able to write files owned by app and
# unreadable by everyone else, while the app runs unprivileged and cannot read inject's
# token. `docker run --user app` runs everything as app instead (then leave INJECT_USER
# unset). /run/secrets is where rendered files can go.
RUN groupadd --gid 10001 app \
 && useradd --uid 10001 --gid app --home-dir /app --no-create-home \
      --shell /usr/sbin/nologin app \
 && install -d -o app -g app -m 0750 /run/secrets \
 && install -d -o app -g app -m 0755 /app

# Only `inject` goes on PATH: `python3` and `pip` stay the base image's, so an app built
# on this image installs and runs its own dependencies as usual, apart from inject's.
COPY --from=build /opt/inject /opt/inject
# root's cache directory for compiled templates ships empty and private (0700): inject
# runs as root (INJECT_USER switches only the child), and a render fills it.
RUN ln -s /opt/inject/bin/inject /usr/local/bin/inject \
 && install -d -m 0700 /root/.cache /root/.cache/vault-inject

ENV PYTHONUNBUFFERED=1
WORKDIR /app
ENTRYPOINT ["/opt/inject/bin/inject", "--"]
# No default command: `docker run IMAGE` alone says what to give (exit 2).
CMD []

# Last, so a new revision does not invalidate the layers above.
ARG BASE_IMAGE
ARG VERSION=0.1.0
ARG REVISION=""
LABEL org.opencontainers.image.title="vault-inject" \
      org.opencontainers.image.description="Container entrypoint that renders Vault/OpenBao secrets into files and env vars, runs the app as its child (PID 1) and keeps the secrets fresh" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"
