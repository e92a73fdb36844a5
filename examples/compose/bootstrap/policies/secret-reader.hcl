# secret-reader: the seed guide's policy (SEC-06, "Access Control"), narrowed to least
# privilege. Every service reads its own secret/services/<name>, where <name> is the
# AppRole it logged in with (the AppRole alias metadata `role_name`), and nothing else
# under services/. bootstrap.sh replaces APPROLE_ACCESSOR with the approle/ mount's
# accessor before writing the policy.
path "secret/data/services/{{identity.entity.aliases.APPROLE_ACCESSOR.metadata.role_name}}" {
  capabilities = ["read"]
}

# No service reads the external provider keys (tier 3).
path "secret/data/external/*" {
  capabilities = ["deny"]
}
