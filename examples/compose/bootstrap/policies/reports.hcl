# reports: dynamic read-only PostgreSQL credentials and a TLS certificate for itself, and
# nothing of the KV inventory.
path "database/creds/readonly" {
  capabilities = ["read"]
}

# Its own role only: the certificate's names are limited by the role (reports, localhost,
# 127.0.0.1), so it cannot get a certificate for another service's name.
path "pki/issue/reports" {
  capabilities = ["update"]
}

# Nothing for revocation: the default policy lets a token renew its leases
# (sys/leases/renew) and revoke itself (auth/token/revoke-self). inject logged in with
# AppRole, so when it stops it revokes its own token, and every lease that token created
# (the database role disappears from PostgreSQL at once instead of at the end of its TTL).
