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

# The default policy lets a token renew its leases (sys/leases/renew); revoking them is
# not in it. inject revokes its database lease when it stops, so the role disappears from
# PostgreSQL at once instead of at the end of its TTL.
path "sys/leases/revoke" {
  capabilities = ["update"]
}
