"""When an OpenSSH certificate (``ssh-ed25519-cert-v01@openssh.com AAAA...``, what the SSH
engine's ``sign`` answers as ``signed_key``) stops being valid. Pure.

The certificate format (OpenSSH's PROTOCOL.certkeys): the key type, a nonce, the key's own
public fields (which depend on its type), then serial, type, key id, principals, and
``valid after`` / ``valid before`` as seconds since the epoch. Only the types OpenSSH signs
are known; anything else is None (the answer is then kept for the whole run, as any write
without a lease).
"""

from __future__ import annotations

import base64
import binascii
import struct

# The public fields before the serial, per certificate type: "s" a string or mpint (both
# length-prefixed), so only their count matters.
_PUBLIC_FIELDS = {
    "ssh-rsa-cert-v01@openssh.com": 2,  # e, n
    "ssh-dss-cert-v01@openssh.com": 4,  # p, q, g, y
    "ecdsa-sha2-nistp256-cert-v01@openssh.com": 2,  # curve, public key
    "ecdsa-sha2-nistp384-cert-v01@openssh.com": 2,
    "ecdsa-sha2-nistp521-cert-v01@openssh.com": 2,
    "ssh-ed25519-cert-v01@openssh.com": 1,  # public key
    "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com": 3,  # curve, public key, application
    "sk-ssh-ed25519-cert-v01@openssh.com": 2,  # public key, application
}
FOREVER = 2**64 - 1  # "valid before" of a certificate that never expires


def valid_before(text: object) -> float | None:
    """The epoch second an OpenSSH certificate (one line, as ``ssh-keygen`` writes it)
    stops being valid; None when ``text`` is not one, or it never expires."""
    if not isinstance(text, str):
        return None
    parts = text.split()
    if len(parts) < 2 or parts[0] not in _PUBLIC_FIELDS:
        return None
    try:
        blob = base64.b64decode(parts[1], validate=True)
        reader = _Reader(blob)
        if reader.string() != parts[0].encode():
            return None
        for _ in range(1 + _PUBLIC_FIELDS[parts[0]]):  # the nonce, then the key's fields
            reader.string()
        reader.take(8 + 4)  # serial, type
        reader.string()  # key id
        reader.string()  # valid principals
        reader.take(8)  # valid after
        (before,) = struct.unpack(">Q", reader.take(8))
    except (binascii.Error, ValueError, struct.error):
        return None
    return None if before == FOREVER else float(before)


class _Reader:
    """SSH wire-format fields from the front of a blob (ValueError past its end)."""

    def __init__(self, blob: bytes) -> None:
        self._blob = blob
        self._at = 0

    def take(self, size: int) -> bytes:
        if self._at + size > len(self._blob):
            raise ValueError("truncated")
        chunk = self._blob[self._at : self._at + size]
        self._at += size
        return chunk

    def string(self) -> bytes:
        (size,) = struct.unpack(">I", self.take(4))
        return self.take(size)
