"""The engines that issue or transform on a request (PKI certificates, transit decryption,
a write with parameters to any engine), as hvac's API calls. Each runs within the
``call`` block ``VaultClient`` opened for it."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import logging
import time

from ..errors import SecretError, SecretNotFound
from ..log import register_secret
from ..model import PkiIssue, Secret, SecretWrite, TransitDecrypt, quoted
from .answers import Caller, dict_of, leased, register_values, url_path
from .sshcert import valid_before

log = logging.getLogger(__name__)


def issue(client: Caller, request: PkiIssue) -> Secret:
    """One certificate. (POST /<mount>/issue/<role>)"""
    mount, _, role = request.path.partition("/issue/")
    params = {name: value for name, value in request.params if value}  # an empty value: as if not given
    common_name = params.pop("common_name", "")
    body = dict_of(
        client.hvac.secrets.pki.generate_certificate(
            role, common_name, extra_params=params, mount_point=mount
        )
    )
    data = body.get("data")
    if not isinstance(data, dict) or "certificate" not in data:
        raise SecretNotFound(f"{quoted(request)} returned no certificate")
    register_values({"private_key": data.get("private_key", "")}, owner=request)
    log.debug("issued certificate %s from %s", data.get("serial_number", "?"), quoted(request))
    return Secret(
        path=request.path,
        data=data,
        lease_id=str(body.get("lease_id") or ""),
        lease_duration_s=int(body.get("lease_duration") or 0),
        expires_at=float(data.get("expiration") or 0) or None,
        issued_at=time.time(),
    )


def write(client: Caller, request: SecretWrite) -> Secret:
    """One write with parameters to any engine; its answer's data (empty when the server
    answers none), its lease, and an SSH certificate's end. (POST /<path>)"""
    body = dict_of(client.hvac.write_data(url_path(request.path), data=request.payload()))
    data = dict_of(body.get("data"))
    register_values(data, owner=request)
    log.debug("wrote %s", request.label)
    secret = leased(request.path, data, body)
    expires_at = valid_before(data.get("signed_key"))  # the SSH engine's sign
    if expires_at is None:
        return secret
    return dataclasses.replace(secret, expires_at=expires_at, issued_at=time.time())


def decrypt(client: Caller, request: TransitDecrypt) -> Secret:
    """One plaintext. (POST /<mount>/decrypt/<key>)"""
    mount, _, key = request.path.partition("/decrypt/")
    body = dict_of(
        client.hvac.secrets.transit.decrypt_data(key, ciphertext=request.ciphertext, mount_point=mount)
    )
    encoded = str(dict_of(body.get("data")).get("plaintext") or "")
    try:
        plaintext = base64.b64decode(encoded, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise SecretError(f"decryption with {quoted(request)} did not return UTF-8 text") from None
    register_secret(plaintext)
    return Secret(path=request.path, data={"plaintext": plaintext})
