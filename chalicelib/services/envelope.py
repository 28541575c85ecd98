"""Envelope encryption of platform-issued secrets with a KMS key.

``seal`` asks KMS for a fresh 256-bit data key (``GenerateDataKey``, bound to an
encryption context naming the program, partner, platform and purpose), encrypts the
value with it locally and keeps only the KMS-wrapped data key next to the ciphertext.
``open_sealed`` unwraps the data key (``Decrypt``, same context) and decrypts. A table
dump therefore holds no usable secret: every value needs a KMS call that IAM and
CloudTrail control.

The local cipher is built from the standard library only (HMAC-SHA256 as a PRF in
counter mode, then encrypt-then-MAC with a separate HMAC-SHA256 key, both derived from
the data key): the Lambda runtime ships no AES implementation, and the ``cryptography``
wheel (several MB, native) would blow the deployment zip budget. Each data key
encrypts exactly one value under a random nonce.

Decrypted values are cached per process (keyed by the sealed blob) so a warm Lambda
verifies webhooks without a KMS call each time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import threading
from collections.abc import Mapping
from typing import Any

from chalicelib.domain.errors import ServiceUnavailable

ALGORITHM = "kms-dk+hmac-sha256-ctr+hmac-sha256"
_lock = threading.Lock()
_opened: dict[str, bytes] = {}


def _subkeys(data_key: bytes) -> tuple[bytes, bytes]:
    return (hmac.new(data_key, b"sarafan-envelope|enc", hashlib.sha256).digest(),
            hmac.new(data_key, b"sarafan-envelope|mac", hashlib.sha256).digest())


def _keystream_xor(key: bytes, nonce: bytes, data: bytes) -> bytes:
    out = bytearray()
    for block in range((len(data) + 31) // 32):
        out += hmac.new(key, nonce + block.to_bytes(8, "big"), hashlib.sha256).digest()
    return bytes(a ^ b for a, b in zip(data, out, strict=False))


def _aad(context: Mapping[str, str]) -> bytes:
    return "|".join(f"{k}={context[k]}" for k in sorted(context)).encode()


def _kms() -> Any:
    from chalicelib import aws

    return aws.client("kms")


def _key_id() -> str:
    from chalicelib.config import get_settings

    key_id = get_settings().kms_key_id
    if not key_id:
        raise RuntimeError("Set SARAFAN_KMS_KEY_ID (the KMS key that wraps platform secrets)")
    return key_id


def seal(plaintext: str, context: Mapping[str, str]) -> dict[str, str]:
    """Encrypt ``plaintext``; the result is JSON-ready and safe to store."""
    try:
        reply = _kms().generate_data_key(KeyId=_key_id(), KeySpec="AES_256", EncryptionContext=dict(context))
    except Exception as exc:  # botocore errors: KMS unreachable or throttled
        raise ServiceUnavailable("The key service is unavailable; retry") from exc
    data_key: bytes = reply["Plaintext"]
    enc_key, mac_key = _subkeys(data_key)
    nonce = os.urandom(16)
    ciphertext = _keystream_xor(enc_key, nonce, plaintext.encode("utf-8"))
    tag = hmac.new(mac_key, _aad(context) + nonce + ciphertext, hashlib.sha256).digest()
    b64 = base64.b64encode
    return {"alg": ALGORITHM, "wrapped_key": b64(reply["CiphertextBlob"]).decode(), "nonce": b64(nonce).decode(),
            "ciphertext": b64(ciphertext).decode(), "tag": b64(tag).decode()}


def open_sealed(sealed: Mapping[str, str], context: Mapping[str, str]) -> bytes:
    """The plaintext bytes of a sealed value (cached per process). Raises ``ValueError`` if tampered."""
    cache_key = hashlib.sha256(repr(sorted(sealed.items())).encode() + _aad(context)).hexdigest()
    hit = _opened.get(cache_key)
    if hit is not None:
        return hit
    if sealed.get("alg") != ALGORITHM:
        raise ValueError("unknown sealing algorithm")
    raw = {k: base64.b64decode(sealed[k]) for k in ("wrapped_key", "nonce", "ciphertext", "tag")}
    try:
        reply = _kms().decrypt(CiphertextBlob=raw["wrapped_key"], EncryptionContext=dict(context))
    except Exception as exc:
        name = type(exc).__name__
        if name in ("InvalidCiphertextException", "IncorrectKeyException"):
            raise ValueError("sealed value does not belong to this context") from None
        raise ServiceUnavailable("The key service is unavailable; retry") from exc
    enc_key, mac_key = _subkeys(reply["Plaintext"])
    expected = hmac.new(mac_key, _aad(context) + raw["nonce"] + raw["ciphertext"], hashlib.sha256).digest()
    if not hmac.compare_digest(expected, raw["tag"]):
        raise ValueError("sealed value was tampered with")
    plaintext = _keystream_xor(enc_key, raw["nonce"], raw["ciphertext"])
    with _lock:
        _opened[cache_key] = plaintext
    return plaintext


def reset_cache() -> None:
    with _lock:
        _opened.clear()


class KmsSealer:
    """The ``Sealer`` port (``services.ports``) in production: :func:`seal` and :func:`open_sealed` with KMS."""

    def seal(self, plaintext: str, context: Mapping[str, str]) -> dict[str, str]:
        return seal(plaintext, context)

    def open(self, sealed: Mapping[str, str], context: Mapping[str, str]) -> bytes:
        return open_sealed(sealed, context)
