# The seed guide's "Security Controls / Audit Logging": every request and response is
# logged, as one JSON object a line, to a file in the `audit-log` volume. Secret values
# (request and response data, tokens, accessors) are HMAC-SHA256'd with a per-device key,
# so the log shows who read what, never the value.
#
# A config file, not `bao audit enable`: OpenBao 2.7 refuses to enable audit devices over
# the API ("use declarative, config-based audit device management"). compose.yaml passes
# it to the dev server with -config; the device's path is `file/`.
audit "file" "file" {
  options {
    file_path = "/openbao/logs/audit.log"
  }
}
