"""The state file's format: a header, then AES-256-GCM over the state, bound to the config.

``magic(8) | format(1) | kdf(1) | salt(16) | nonce(12) | ciphertext+tag``. The associated
data is the header followed by the digest of the settings the state belongs to (the server
and the login: ``client.handover.binding``), so a state made for another server or identity,
a changed header, a flipped bit, a wrong key or a truncated file all fail the tag check and
nothing of it is used. ``kdf`` 0: the key is 32 raw bytes; 1: a passphrase through scrypt
with the header's salt. A format newer than ``FORMAT`` is refused as such (an older inject
never guesses at a newer layout).

Nothing here touches a file (``statefile`` does); ``cryptography`` is loaded only when a
state is configured.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

MAGIC = b"INJSTATE"
FORMAT = 1
KDF_RAW, KDF_SCRYPT = 0, 1
KEY_BYTES = 32
SALT_BYTES = 16
NONCE_BYTES = 12
HEADER_BYTES = len(MAGIC) + 2 + SALT_BYTES + NONCE_BYTES
# scrypt at n=2**15, r=8 (32 MiB, tens of milliseconds): derived once per salt and kept.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1


class Refused(Exception):
    """The state cannot be used; the message says why in one line (never a key or value)."""


@dataclass
class Key:
    """The key material: 32 raw bytes, or a passphrase (derived per salt, cached)."""

    raw: bytes | None = None
    passphrase: bytes | None = field(default=None, repr=False)
    _derived: dict[bytes, bytes] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, material: bytes) -> Key:
        """Exactly 32 bytes are a raw key; anything else (surrounding whitespace removed) a
        passphrase."""
        if len(material) == KEY_BYTES:
            return cls(raw=material)
        phrase = material.strip()
        if not phrase:
            raise Refused("the state key is empty")
        return cls(passphrase=phrase)

    @property
    def kdf(self) -> int:
        """How the header says the key was made."""
        return KDF_RAW if self.raw is not None else KDF_SCRYPT

    def for_salt(self, salt: bytes) -> bytes:
        """The AES key for a file with this salt."""
        if self.raw is not None:
            return self.raw
        if salt not in self._derived:
            self._derived[salt] = hashlib.scrypt(
                self.passphrase or b"",
                salt=salt,
                n=SCRYPT_N,
                r=SCRYPT_R,
                p=SCRYPT_P,
                maxmem=64 * 1024 * 1024,
                dklen=KEY_BYTES,
            )
        return self._derived[salt]


def seal(key: Key, binding: bytes, plaintext: bytes, *, salt: bytes | None = None) -> bytes:
    """The whole file for ``plaintext`` (a fresh nonce; ``salt`` kept from the file read,
    so a passphrase is derived once)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    salt = salt if salt is not None and key.kdf == KDF_SCRYPT else _salt(key)
    header = MAGIC + bytes((FORMAT, key.kdf)) + salt + os.urandom(NONCE_BYTES)
    nonce = header[-NONCE_BYTES:]
    return header + AESGCM(key.for_salt(salt)).encrypt(nonce, plaintext, header + binding)


def _salt(key: Key) -> bytes:
    return os.urandom(SALT_BYTES) if key.kdf == KDF_SCRYPT else bytes(SALT_BYTES)


def salt_of(data: bytes) -> bytes | None:
    """The salt in a file's header (to seal the next version with the same derived key)."""
    return data[len(MAGIC) + 2 : len(MAGIC) + 2 + SALT_BYTES] if len(data) >= HEADER_BYTES else None


def unseal(key: Key, binding: bytes, data: bytes) -> bytes:
    """The plaintext of a sealed file; Refused saying why (not a state, a newer format,
    another kind of key, or: wrong key, another config, or changed)."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if len(data) < HEADER_BYTES + 16 or not data.startswith(MAGIC):
        raise Refused("not an inject state file (or truncated)")
    version, kdf = data[len(MAGIC)], data[len(MAGIC) + 1]
    if version > FORMAT:
        raise Refused(f"written by a newer inject (format {version}; this one reads up to {FORMAT})")
    if version < 1 or kdf not in (KDF_RAW, KDF_SCRYPT):
        raise Refused("not an inject state file (unknown format or key kind)")
    if kdf != key.kdf:
        raise Refused(
            "sealed with a "
            + ("raw 32-byte key" if kdf == KDF_RAW else "passphrase")
            + ", but the key given is "
            + ("a passphrase" if key.kdf == KDF_SCRYPT else "a raw 32-byte key")
        )
    header = data[:HEADER_BYTES]
    salt, nonce = salt_of(data) or b"", header[-NONCE_BYTES:]
    try:
        return AESGCM(key.for_salt(salt)).decrypt(nonce, data[HEADER_BYTES:], header + binding)
    except InvalidTag:
        raise Refused(
            "cannot be decrypted: a wrong key, another server or login, or a changed file"
        ) from None
