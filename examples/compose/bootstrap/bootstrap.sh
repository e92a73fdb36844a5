#!/bin/sh
# One-shot setup of the example's OpenBao dev server. Runs in the OpenBao image, as root,
# with BAO_ADDR and the root token in BAO_TOKEN (compose.yaml, service `bootstrap`):
#
#   1. the seed guide's secret inventory (SEC-06, "Secret Inventory"), with fake values;
#   2. least-privilege policies: `secret-reader` (each service reads only its own
#      secret/services/<name>) and `api-brain` (the two infrastructure secrets it renders);
#   3. an AppRole per service (api-brain, n8n), its role_id and secret_id written 0400
#      into that service's own volume, never printed;
#   4. a check that each role reads what it needs and is denied the rest.
#
# Running it again is safe: existing secrets are kept (no new versions), policies and
# roles are rewritten, and each role gets a new secret_id.
set -eu
: "${BAO_ADDR:?set BAO_ADDR}" "${BAO_TOKEN:?set BAO_TOKEN}"
umask 077
HERE=$(dirname "$0")
APPROLE_DIR=${APPROLE_DIR:-/approle}  # one subfolder (volume) per role

i=0
until bao status >/dev/null 2>&1; do
    i=$((i + 1))
    if [ "$i" -gt 120 ]; then
        echo "bootstrap: no OpenBao at $BAO_ADDR after 60s" >&2
        exit 1
    fi
    sleep 0.5
done

# seed PATH KEY=VALUE...: write PATH unless it already holds a secret.
seed() {
    path=$1
    shift
    if bao kv get "$path" >/dev/null 2>&1; then
        echo "bootstrap: kept    $path"
    else
        bao kv put "$path" "$@" >/dev/null
        echo "bootstrap: created $path"
    fi
}

# --- 1. the inventory (fake values; never put real secrets in this file) ---------------
seed secret/infrastructure/postgres username=sin_solver_app password="fake-pg-pass: not secret & 'quoted'"
seed secret/infrastructure/redis password=fake-redis-password-compose-only
seed secret/infrastructure/cloudflare tunnel_token=fake-cloudflare-tunnel-token-compose-only
seed secret/services/n8n encryption_key=ZmFrZS1uOG4tZW5jcnlwdGlvbi1rZXktY29tcG9zZQ== \
    jwt_secret=ZmFrZS1uOG4tand0LXNlY3JldC1jb21wb3Nl
seed secret/services/api-brain jwt_secret=ZmFrZS1hcGktYnJhaW4tand0LXNlY3JldC1jb21wb3Nl \
    encryption_key=ZmFrZS1hcGktYnJhaW4tZW5jcnlwdGlvbi1rZXk=
for service in steel skyvern captcha survey; do
    seed "secret/services/$service" api_key="fake-$service-api-key-compose-only"
done
for provider in openai anthropic groq gemini tavily exa; do
    seed "secret/external/$provider" api_key="fake-$provider-api-key-compose-only"
done

# --- 2. policies ----------------------------------------------------------------------
if ! bao auth list | grep -q '^approle/'; then
    bao auth enable approle >/dev/null
fi
accessor=$(bao read -field=accessor sys/auth/approle)
sed "s/APPROLE_ACCESSOR/$accessor/" "$HERE/policies/secret-reader.hcl" | bao policy write secret-reader - >/dev/null
bao policy write api-brain "$HERE/policies/api-brain.hcl" >/dev/null
echo "bootstrap: policies secret-reader, api-brain"

# --- 3. one AppRole per service -------------------------------------------------------
# role NAME POLICIES: short-lived tokens (1h, at most 4h, as the guide's "Least
# Privilege" asks); inject logs in again with the same secret_id when a token cannot be
# renewed, so the secret_id itself does not expire in this demo.
role() {
    bao write "auth/approle/role/$1" token_policies="$2" \
        token_ttl=1h token_max_ttl=4h secret_id_ttl=0 secret_id_num_uses=0 >/dev/null
    dir=$APPROLE_DIR/$1
    bao read -field=role_id "auth/approle/role/$1/role-id" >"$dir/.role_id"
    bao write -f -field=secret_id "auth/approle/role/$1/secret-id" >"$dir/.secret_id"
    chmod 0400 "$dir/.role_id" "$dir/.secret_id"
    mv -f "$dir/.role_id" "$dir/role_id"
    mv -f "$dir/.secret_id" "$dir/secret_id"
    echo "bootstrap: approle $1 (policies $2): role_id and secret_id in its volume"
}
role api-brain secret-reader,api-brain
role n8n secret-reader

# --- 4. check least privilege ---------------------------------------------------------
# expect ROLE PATH allowed|denied
failed=0
expect() {
    dir=$APPROLE_DIR/$1
    token=$(bao write -field=token auth/approle/login role_id=@"$dir/role_id" secret_id=@"$dir/secret_id")
    if BAO_TOKEN=$token bao kv get "$2" >/dev/null 2>&1; then got=allowed; else got=denied; fi
    BAO_TOKEN=$token bao token revoke -self >/dev/null
    if [ "$got" = "$3" ]; then
        echo "bootstrap: ok    $1 $got $2"
    else
        echo "bootstrap: WRONG $1 $got $2 (expected $3)" >&2
        failed=1
    fi
}
expect api-brain secret/services/api-brain allowed
expect api-brain secret/infrastructure/postgres allowed
expect api-brain secret/infrastructure/cloudflare denied
expect api-brain secret/services/n8n denied
expect api-brain secret/external/openai denied
expect n8n secret/services/n8n allowed
expect n8n secret/services/api-brain denied
expect n8n secret/infrastructure/postgres denied
[ "$failed" = 0 ] || exit 1
echo "bootstrap: done"
