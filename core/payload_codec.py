"""Encryption of every payload llmflow sends to Temporal (job inputs, step results, outputs).

Job inputs carry addresses, phone numbers and customer data. With `LLMFLOW_PAYLOAD_KEY` set,
the data converter of every client (gateway, worker, CLI) gets an `EncryptionCodec`: each
payload is serialized, compressed with zlib when it is over `COMPRESS_OVER` bytes (and that
makes it smaller), then sealed with AES-256-GCM. Temporal's history and visibility then hold
only ciphertext; the gateway's `/codec` endpoints (api/routers/codec.py) decode it for the Web
UI and the `temporal` CLI. Workflow code never sees the codec: the SDK applies it outside the
sandbox, so determinism and replay are unaffected.

An encoded payload's metadata says what it is:
- `encoding`: `binary/encrypted`;
- `encryption-key-id`: the id of the key that sealed it;
- `compression`: `zlib` when the plaintext was compressed before sealing.
Its data is a 12-byte random nonce followed by the AES-GCM ciphertext and tag. The key id and
the compression marker are authenticated too (associated data), so neither can be altered
without the payload failing to decode.

Keys: `LLMFLOW_PAYLOAD_KEY` (32 random bytes, base64) seals, under `LLMFLOW_PAYLOAD_KEY_ID`
(by default an id derived from the key). `LLMFLOW_PAYLOAD_OLD_KEYS`, comma-separated `id:key`
entries (a bare `key` gets the derived id), only open payloads. To rotate, make the current key
an old one and set a new current key; drop an old key once no history that needs it is kept.
Payloads that are not encrypted (histories from before the key was set) always decode as they
are. Without any key the data converter is exactly `pydantic_data_converter`.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import os
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, PayloadCodec

from core.settings import Settings

KEY_ENV = "LLMFLOW_PAYLOAD_KEY"
KEY_ID_ENV = "LLMFLOW_PAYLOAD_KEY_ID"
OLD_KEYS_ENV = "LLMFLOW_PAYLOAD_OLD_KEYS"

ENCODING = b"binary/encrypted"
META_ENCODING = "encoding"
META_KEY_ID = "encryption-key-id"
META_COMPRESSION = "compression"
ZLIB = b"zlib"
# Payloads larger than this are compressed before they are sealed (when that saves bytes).
COMPRESS_OVER = 1024
NONCE_BYTES = 12
KEY_BYTES = 32
# What the associated data starts with: a payload sealed by another scheme never opens here.
AAD_PREFIX = b"llmflow-payload-v1"
KEY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
KEY_HOWTO = (
    'make one with: python -c "import base64, os; print(base64.b64encode(os.urandom(32)).decode())"'
)


class PayloadKeyError(ValueError):
    """LLMFLOW_PAYLOAD_KEY / _KEY_ID / _OLD_KEYS are malformed. The message never quotes a key."""


class PayloadDecodeError(ValueError):
    """An encrypted payload that cannot be opened: unknown key id, or altered/corrupt data."""


def decode_key(text: str, where: str) -> bytes:
    """32 bytes from standard or url-safe base64, padded or not."""
    raw = text.strip()
    try:
        padded = raw + "=" * (-len(raw) % 4)
        key = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise PayloadKeyError(f"{where} is not base64; {KEY_HOWTO}") from None
    if len(key) != KEY_BYTES:
        raise PayloadKeyError(
            f"{where} must be {KEY_BYTES} bytes (AES-256), base64-encoded; it is {len(key)} "
            f"bytes; {KEY_HOWTO}"
        )
    return key


def derived_key_id(key: bytes) -> str:
    """The id of a key given without one: a short, non-reversible fingerprint of it."""
    return "k-" + hashlib.sha256(b"llmflow payload key id\x00" + key).hexdigest()[:12]


def _check_key_id(key_id: str, where: str) -> str:
    if not KEY_ID.fullmatch(key_id):
        raise PayloadKeyError(
            f"{where} must be 1-64 letters, digits, '_', '.' or '-' (starting with a letter "
            "or digit)"
        )
    return key_id


@dataclass(frozen=True)
class PayloadKeyring:
    """The key that seals (None: decode only) and every key that opens, by id."""

    current_id: str | None
    keys: dict[str, bytes] = field(repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> PayloadKeyring | None:
        """None when no payload key is configured at all (encryption off)."""
        keys: dict[str, bytes] = {}
        current_id: str | None = None
        raw_key = (
            settings.llmflow_payload_key.get_secret_value().strip()
            if (settings.llmflow_payload_key)
            else ""
        )
        if raw_key:
            key = decode_key(raw_key, KEY_ENV)
            current_id = _check_key_id(
                (settings.llmflow_payload_key_id or "").strip() or derived_key_id(key),
                KEY_ID_ENV,
            )
            keys[current_id] = key
        elif (settings.llmflow_payload_key_id or "").strip():
            raise PayloadKeyError(f"{KEY_ID_ENV} is set but {KEY_ENV} is not")
        raw_old = (
            settings.llmflow_payload_old_keys.get_secret_value()
            if settings.llmflow_payload_old_keys
            else ""
        )
        for position, entry in enumerate(raw_old.split(","), start=1):
            entry = entry.strip()
            if not entry:
                continue
            where = f"{OLD_KEYS_ENV} entry {position}"
            key_id, sep, key_text = entry.partition(":")
            if sep:
                key = decode_key(key_text, where)
                key_id = _check_key_id(key_id.strip(), f"the id of {where}")
            else:
                key = decode_key(entry, where)
                key_id = derived_key_id(key)
            if keys.get(key_id, key) != key:
                raise PayloadKeyError(
                    f"{where}: key id {key_id!r} is already used by a different key"
                )
            keys[key_id] = key
        if not keys:
            return None
        return cls(current_id=current_id, keys=keys)


def _aad(key_id: bytes, compression: bytes) -> bytes:
    return b"\x00".join((AAD_PREFIX, key_id, compression))


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM over each (zlib-compressed, when large) serialized payload."""

    def __init__(self, keyring: PayloadKeyring, *, compress_over: int = COMPRESS_OVER) -> None:
        self.keyring = keyring
        self.compress_over = compress_over
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keyring.keys.items()}

    @property
    def encrypts(self) -> bool:
        """False for a decode-only keyring (old keys without a current one)."""
        return self.keyring.current_id is not None

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encode_one(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decode_one(p) for p in payloads]

    def encode_one(self, payload: Payload) -> Payload:
        key_id = self.keyring.current_id
        if key_id is None or is_encrypted(payload):
            return payload
        plain = payload.SerializeToString()
        compression = b""
        if len(plain) > self.compress_over:
            packed = zlib.compress(plain, 6)
            if len(packed) < len(plain):
                plain, compression = packed, ZLIB
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[key_id].encrypt(nonce, plain, _aad(key_id.encode(), compression))
        metadata = {META_ENCODING: ENCODING, META_KEY_ID: key_id.encode()}
        if compression:
            metadata[META_COMPRESSION] = compression
        return Payload(metadata=metadata, data=nonce + sealed)

    def decode_one(self, payload: Payload) -> Payload:
        if not is_encrypted(payload):
            return payload  # written before encryption was turned on, or by another codec
        key_id = payload.metadata.get(META_KEY_ID, b"").decode("utf-8", "replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            known = ", ".join(sorted(self._ciphers)) or "none"
            raise PayloadDecodeError(
                f"payload is encrypted with key id {key_id!r}, which is not configured "
                f"(known: {known}); add that key to {OLD_KEYS_ENV} as {key_id}:<key>"
            )
        compression = payload.metadata.get(META_COMPRESSION, b"")
        if compression not in (b"", ZLIB):
            raise PayloadDecodeError(
                f"payload names an unknown compression {compression.decode('utf-8', 'replace')!r}"
            )
        data = payload.data
        if len(data) < NONCE_BYTES + 16:
            raise PayloadDecodeError(
                f"encrypted payload (key id {key_id!r}) is truncated: {len(data)} bytes"
            )
        try:
            plain = cipher.decrypt(
                data[:NONCE_BYTES], data[NONCE_BYTES:], _aad(key_id.encode(), compression)
            )
        except InvalidTag:
            raise PayloadDecodeError(
                f"encrypted payload (key id {key_id!r}) failed authentication: it was altered "
                f"or corrupted, or sealed with a different key under the same id"
            ) from None
        if compression == ZLIB:
            try:
                plain = zlib.decompress(plain)
            except zlib.error as exc:
                raise PayloadDecodeError(f"encrypted payload does not decompress: {exc}") from None
        inner = Payload()
        try:
            inner.ParseFromString(plain)
        except Exception as exc:  # protobuf DecodeError
            raise PayloadDecodeError(
                f"decrypted payload is not a Temporal payload: {exc}"
            ) from None
        return inner


def is_encrypted(payload: Payload) -> bool:
    return payload.metadata.get(META_ENCODING) == ENCODING


def encryption_configured(settings: Settings) -> bool:
    """Whether any payload key is set (to seal, or only to open), without validating it."""
    return any(
        secret is not None and secret.get_secret_value().strip()
        for secret in (settings.llmflow_payload_key, settings.llmflow_payload_old_keys)
    )


def payload_codec(settings: Settings) -> EncryptionCodec | None:
    """The codec the settings ask for; None when no payload key is configured.
    Raises PayloadKeyError on a malformed key setting."""
    keyring = PayloadKeyring.from_settings(settings)
    return EncryptionCodec(keyring) if keyring is not None else None


def data_converter(settings: Settings) -> DataConverter:
    """The data converter of every llmflow client: `pydantic_data_converter`, with the
    encryption codec when a payload key is configured."""
    codec = payload_codec(settings)
    if codec is None:
        return pydantic_data_converter
    return dataclasses.replace(pydantic_data_converter, payload_codec=codec)


def check_payload_key_config(settings: Settings) -> None:
    """Fail at start, in one line, on a malformed payload key setting."""
    PayloadKeyring.from_settings(settings)
