# api-brain renders production.yml (templates/production.yml.j2): besides its own keys
# (secret-reader) it needs the database and cache credentials, and only those two of
# the infrastructure secrets (not secret/infrastructure/cloudflare).
path "secret/data/infrastructure/postgres" {
  capabilities = ["read"]
}

path "secret/data/infrastructure/redis" {
  capabilities = ["read"]
}
