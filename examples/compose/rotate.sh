#!/usr/bin/env bash
# Rotate a service's keys in the running example stack, the way the secrets guide's
# scripts/rotate-api-keys.sh does (SEC-06, "API Keys (Semi-Automated)"), minus its
# `docker-compose ... restart`: inject notices the new KV version and restarts
# (api-brain) or signals (n8n) the app by itself, and this script watches that happen.
#
#   ./rotate.sh api-brain        # inject restarts the app process: new pid, same container
#   ./rotate.sh n8n              # the sidecar re-renders n8n.env and sends SIGHUP: same pid
#
# Needs docker compose and curl. BAO_ROOT_TOKEN as for `docker compose up` (default root);
# ROTATE_TIMEOUT (seconds, default 60) bounds the wait.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

SERVICE=${1:-api-brain}
TIMEOUT=${ROTATE_TIMEOUT:-60}
case "$SERVICE" in
    api-brain | n8n) ;;
    *)
        echo "usage: $0 api-brain|n8n" >&2
        exit 2
        ;;
esac

# The bao CLI inside the openbao container, as root: the only place the root token is used.
bao() {
    docker compose exec -T -e BAO_ADDR=http://127.0.0.1:8200 -e BAO_TOKEN="${BAO_ROOT_TOKEN:-root}" \
        openbao bao "$@"
}
# The service's /status (one line of JSON) and one number or word from it.
status() { curl -fsS --max-time 5 "http://$(docker compose port "$SERVICE" 8080)/status"; }
field() { sed -n "s/.*\"$1\": *\"\{0,1\}\([^\",}]*\).*/\1/p"; }
started_at() { docker inspect -f '{{.State.StartedAt}}' "$(docker compose ps -q "$SERVICE")"; }
new_key() { head -c 32 /dev/urandom | base64 | tr -d '\n'; }

OLD_VERSION=$(bao read -field=current_version "secret/metadata/services/$SERVICE")
BEFORE=$(status)
CONTAINER_STARTED=$(started_at)
echo "Rotating API keys for: $SERVICE"
echo "Current version: $OLD_VERSION (the app has v$(field secret_version <<<"$BEFORE"), pid $(field pid <<<"$BEFORE"))"

# Write the new version. The keys go through stdin as JSON, never on a command line.
printf '{"encryption_key": "%s", "jwt_secret": "%s"}\n' "$(new_key)" "$(new_key)" |
    bao kv put "secret/services/$SERVICE" - >/dev/null
NEW_VERSION=$(bao read -field=current_version "secret/metadata/services/$SERVICE")
echo "New version: $NEW_VERSION"

# No restart: wait for the app to report the new version.
start=$SECONDS
until NOW=$(status 2>/dev/null) && [ "$(field secret_version <<<"$NOW")" = "$NEW_VERSION" ]; do
    if ((SECONDS - start >= TIMEOUT)); then
        echo "$SERVICE still does not show v$NEW_VERSION after ${TIMEOUT}s; see: docker compose logs $SERVICE" >&2
        exit 1
    fi
    sleep 0.5
done
if [ "$SERVICE" = n8n ]; then
    how="reloaded by SIGHUP from the sidecar ($(field reloads <<<"$BEFORE") -> $(field reloads <<<"$NOW") reloads, pid $(field pid <<<"$NOW"))"
else
    how="restarted by inject (pid $(field pid <<<"$BEFORE") -> $(field pid <<<"$NOW"))"
fi
echo "$SERVICE has v$NEW_VERSION after $((SECONDS - start))s: $how"
if [ "$(started_at)" = "$CONTAINER_STARTED" ]; then
    echo "container $SERVICE not restarted (started $CONTAINER_STARTED)"
else
    echo "container $SERVICE was restarted: that should not happen" >&2
    exit 1
fi

# Keep the old version for rollback (bao kv rollback -version=$OLD_VERSION ...).
echo "$(date -u +%FT%TZ): version $OLD_VERSION of $SERVICE kept for rollback; delete it in 7 days"
echo "Rotation completed for $SERVICE"
