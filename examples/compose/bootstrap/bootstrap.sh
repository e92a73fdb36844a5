#!/bin/sh
# One-shot setup of the example's OpenBao dev server. Runs in the OpenBao image, as root,
# with BAO_ADDR and the root token in BAO_TOKEN (compose.yaml, service `bootstrap`):
#
#   1. the seed guide's secret inventory (SEC-06, "Secret Inventory"), with fake values;
#   2. least-privilege policies: `secret-reader` (each service reads only its own
#      secret/services/<name>), `api-brain` (the two infrastructure secrets it renders)
#      and `reports` (database credentials and its own certificate);
#   3. dynamic PostgreSQL credentials: the database secrets engine and its `readonly`
#      role (SEC-06, "Dynamic Secrets (Database)");
#   4. TLS certificates: a PKI engine with its own root CA and a role for `reports`;
#   5. an AppRole per service (api-brain, n8n, reports), its role_id and secret_id
#      written 0400 into that service's own volume, never printed;
#   6. a check that each role reads what it needs and is denied the rest, and that its
#      tokens live 1 h and renew up to 4 h at most (SEC-06, "Least Privilege").
#
# Running it again is safe: existing secrets are kept (no new versions), the CA is kept,
# policies, roles and the database connection are rewritten, and each AppRole gets a new
# secret_id. POSTGRES_PASSWORD is the database superuser's, for OpenBao only.
set -eu
: "${BAO_ADDR:?set BAO_ADDR}" "${BAO_TOKEN:?set BAO_TOKEN}" "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"
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
bao policy write reports "$HERE/policies/reports.hcl" >/dev/null
echo "bootstrap: policies secret-reader, api-brain, reports"

# enable TYPE: mount a secrets engine at its type's name unless it is there.
enable() {
    if ! bao secrets list | grep -q "^$1/"; then
        bao secrets enable "$1" >/dev/null
    fi
}

# --- 3. dynamic database credentials ----------------------------------------------------
# OpenBao logs in to PostgreSQL as its superuser (tier 1, "DB admin") and creates one
# LOGIN role per lease; the role expires with the lease and is dropped when the lease is
# revoked. The guide's TTLs are 24 h / 48 h; the example's are seconds (DB_CREDS_TTL,
# DB_CREDS_MAX_TTL), so renewals and new credentials can be watched. The superuser's
# password goes through stdin as JSON (escaped), never on a command line.
enable database
password_json=$(printf '%s' "$POSTGRES_PASSWORD" | sed 's/[\\"]/\\&/g')
printf '{"plugin_name": "postgresql-database-plugin", "allowed_roles": "readonly",
  "connection_url": "postgresql://{{username}}:{{password}}@postgres:5432/postgres?sslmode=disable",
  "username": "postgres", "password": "%s"}\n' "$password_json" |
    bao write database/config/postgresql - >/dev/null
bao write database/roles/readonly db_name=postgresql \
    creation_statements="CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';" \
    creation_statements='GRANT pg_read_all_data TO "{{name}}";' \
    default_ttl="${DB_CREDS_TTL:-24h}" max_ttl="${DB_CREDS_MAX_TTL:-48h}" >/dev/null
echo "bootstrap: database/roles/readonly (pg_read_all_data; ttl ${DB_CREDS_TTL:-24h}, max ${DB_CREDS_MAX_TTL:-48h})"

# --- 4. TLS certificates from PKI -------------------------------------------------------
# A root CA kept inside OpenBao (its key never leaves it) and a role that issues short
# certificates for the names `reports`, `localhost` and 127.0.0.1 only. Clients trust the
# CA from pki/ca/pem.
enable pki
bao secrets tune -max-lease-ttl=87600h pki >/dev/null
bao write pki/config/urls issuing_certificates=http://openbao:8200/v1/pki/ca >/dev/null
if bao read pki/cert/ca >/dev/null 2>&1; then
    echo "bootstrap: kept    pki root CA"
else
    bao write pki/root/generate/internal common_name="SIN-Solver compose example CA" \
        key_type=ec key_bits=256 ttl=87600h >/dev/null
    echo "bootstrap: created pki root CA"
fi
bao write pki/roles/reports allowed_domains=reports,localhost allow_bare_domains=true \
    allow_subdomains=false allow_ip_sans=true key_type=ec key_bits=256 max_ttl=720h >/dev/null
echo "bootstrap: pki/roles/reports (reports, localhost, 127.0.0.1; at most 30 days)"

# --- 5. one AppRole per service -------------------------------------------------------
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
role reports reports

# --- 6. check least privilege and token TTLs ------------------------------------------
login() {
    dir=$APPROLE_DIR/$1
    bao write -field=token auth/approle/login role_id=@"$dir/role_id" secret_id=@"$dir/secret_id"
}
# expect ROLE PATH allowed|denied: a KV path (kv get), or any other path (read).
failed=0
expect() {
    token=$(login "$1")
    case "$2" in
        secret/*) set -- "$1" "$2" "$3" kv get ;;
        *) set -- "$1" "$2" "$3" read ;;
    esac
    if BAO_TOKEN=$token bao "$4" ${5:+"$5"} "$2" >/dev/null 2>&1; then got=allowed; else got=denied; fi
    # Revoking the token also revokes what it read (the check's database role is dropped).
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
expect n8n database/creds/readonly denied
expect reports database/creds/readonly allowed
expect reports secret/infrastructure/postgres denied
expect reports secret/services/n8n denied

# Tokens: 1 h, renewable, never past 4 h however much is asked.
for name in api-brain n8n reports; do
    token=$(login "$name")
    ttl=$(BAO_TOKEN=$token bao token lookup -field=ttl)
    renewed=$(BAO_TOKEN=$token bao token renew -increment=5h -format=json 2>/dev/null |
        sed -n 's/.*"lease_duration": *\([0-9]*\).*/\1/p' | tail -n 1)  # the auth block's, last
    BAO_TOKEN=$token bao token revoke -self >/dev/null
    if [ "$ttl" -le 3600 ] && [ "$ttl" -gt 3500 ] && [ "${renewed:-0}" -gt 3600 ] && [ "$renewed" -le 14400 ]; then
        echo "bootstrap: ok    $name token ttl ${ttl}s, renewed for 5h: granted ${renewed}s (max 4h)"
    else
        echo "bootstrap: WRONG $name token ttl ${ttl}s, renewed for 5h: granted ${renewed:-nothing}s (want 1h, max 4h)" >&2
        failed=1
    fi
done
[ "$failed" = 0 ] || exit 1
echo "bootstrap: done"
