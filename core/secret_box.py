"""Per-job webhook secrets at rest, sealed with Fernet under LLMFLOW_SECRET_KEY.

A stored value says what it is:
- `fernet:<token>`: sealed (Fernet: AES-128-CBC with HMAC-SHA256, from `cryptography`);
- `plain:<secret>`: written without a key, which only development and test allow;
- no prefix: a row written before secrets were sealed, read as the secret itself.

LLMFLOW_SECRET_KEY holds one or more comma-separated Fernet keys. The first seals, every one
opens, so a key is rotated by putting a new one first and dropping the old one once no row
sealed under it can still be delivered.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from core.settings import Settings

log = logging.getLogger(__name__)

KEY_ENV = "LLMFLOW_SECRET_KEY"
SEALED_PREFIX = "fernet:"
PLAIN_PREFIX = "plain:"
KEY_HOWTO = (
    'make one with: python -c "from cryptography.fernet import Fernet; '
    'print(Fernet.generate_key().decode())"'
)


class SecretKeyError(ValueError):
    """An LLMFLOW_SECRET_KEY entry is not a Fernet key."""


class ProductionWithoutSecretKey(RuntimeError):
    pass


class SecretUnavailable(RuntimeError):
    """A sealed value the configured keys can't open: none configured, or none of them matches."""


def parse_keys(raw: str | None) -> list[Fernet]:
    keys = []
    for position, entry in enumerate((raw or "").split(","), start=1):
        entry = entry.strip()
        if not entry:
            continue
        try:
            keys.append(Fernet(entry))
        except ValueError:  # binascii.Error (bad base64) is a ValueError too
            # The entry itself stays out of the message: it may be a real key with a typo.
            raise SecretKeyError(
                f"{KEY_ENV} entry {position} is not a Fernet key "
                f"(32 url-safe base64-encoded bytes); {KEY_HOWTO}"
            ) from None
    return keys


def raw_keys(settings: Settings) -> str | None:
    value = settings.llmflow_secret_key
    return value.get_secret_value() if value is not None else None


def is_sealed(stored: str) -> bool:
    return stored.startswith(SEALED_PREFIX)


def seal(secret: str, cipher: MultiFernet | None) -> str:
    if cipher is None:
        return PLAIN_PREFIX + secret
    return SEALED_PREFIX + cipher.encrypt(secret.encode()).decode("ascii")


def open_sealed(stored: str, cipher: MultiFernet | None) -> str:
    if stored.startswith(SEALED_PREFIX):
        if cipher is None:
            raise SecretUnavailable(
                f"the stored webhook secret is encrypted but {KEY_ENV} is not set"
            )
        try:
            # No ttl: a row lives as long as its job and delivery, however long that is.
            return cipher.decrypt(stored.removeprefix(SEALED_PREFIX).encode("ascii")).decode()
        except (InvalidToken, UnicodeError):
            raise SecretUnavailable(
                f"none of the {KEY_ENV} keys opens the stored webhook secret "
                "(was the key it was sealed with removed?)"
            ) from None
    if stored.startswith(PLAIN_PREFIX):
        return stored.removeprefix(PLAIN_PREFIX)
    return stored


class SecretBox:
    """Seals secrets for the job_secrets table and opens what it holds."""

    def __init__(self, keys: Sequence[Fernet] = ()) -> None:
        self._cipher = MultiFernet(list(keys)) if keys else None

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        return cls(parse_keys(raw_keys(settings)))

    @property
    def encrypts(self) -> bool:
        return self._cipher is not None

    def seal(self, secret: str) -> str:
        return seal(secret, self._cipher)

    def open(self, stored: str) -> str:
        return open_sealed(stored, self._cipher)

    def reseal(self, stored: str) -> str:
        """A copy of a stored value for another job, sealed under the current first key. A value
        these keys can't open is copied as it is: its delivery then fails with the reason."""
        try:
            return self.seal(self.open(stored))
        except SecretUnavailable:
            return stored


def check_secret_key_config(settings: Settings) -> None:
    """Refuse to start on a malformed key anywhere, and without a key in production: every
    job submitted with webhook_secret would otherwise be stored in clear text."""
    keys = parse_keys(raw_keys(settings))
    if keys:
        return
    if settings.environment == "production":
        raise ProductionWithoutSecretKey(
            f"ENVIRONMENT=production requires {KEY_ENV} (comma-separated Fernet keys, the first "
            f"encrypts); refusing to store per-job webhook secrets in clear text; {KEY_HOWTO}"
        )
    if settings.environment == "development":
        log.warning("%s is not set: per-job webhook secrets are stored unencrypted", KEY_ENV)
