"""Encryption of secrets stored in the database (upstream API keys in worker headers and URLs).

``cryptography``'s MultiFernet: AES-128-CBC with HMAC-SHA256, keys from MMM_SECRET_KEYS. The
first key encrypts, every key decrypts, so a key is rotated by putting a new one first, running
``manage.py rotate_secrets`` and then dropping the old one.

``cryptography`` is imported on first use, not with this module: its bindings (OpenSSL built in)
are about 6.7 MiB of every process that loads them, and a gateway worker whose rows hold no
secret (a self-hosted fleet without keys) never needs them.
"""

import base64
import functools
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

if TYPE_CHECKING:
    from cryptography.fernet import MultiFernet
    from cryptography.hazmat.primitives.ciphers.aead import AESSIV

__all__ = [
    "InvalidToken",  # noqa: F822 (provided by __getattr__, so that naming it loads cryptography)
    "decrypt",
    "decrypt_deterministic",
    "encrypt",
    "encrypt_deterministic",
    "key_is_derived",
    "rotate",
]


def _invalid_token() -> type[Exception]:
    from cryptography.fernet import InvalidToken

    return InvalidToken


def __getattr__(name: str):
    # ``encryption.InvalidToken`` (in ``except`` clauses) loads cryptography only when asked for.
    if name == "InvalidToken":
        return _invalid_token()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def key_is_derived() -> bool:
    """True when no MMM_SECRET_KEYS is set and the key comes from SECRET_KEY (local use)."""
    return not settings.MMM_SECRET_KEYS


@functools.cache
def _box(keys: tuple[str, ...], secret_key: str) -> "MultiFernet":
    from cryptography.fernet import Fernet, MultiFernet
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    if not keys:
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"mmm upstream secrets").derive(
            secret_key.encode()
        )
        return MultiFernet([Fernet(base64.urlsafe_b64encode(derived))])
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except ValueError:
        raise ImproperlyConfigured(
            "MMM_SECRET_KEYS must be Fernet keys (32 url-safe base64-encoded bytes), comma-separated; "
            'make one with: python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
        ) from None


def box() -> "MultiFernet":
    return _box(tuple(settings.MMM_SECRET_KEYS), settings.SECRET_KEY)


def encrypt(text: str) -> str:
    return box().encrypt(text.encode()).decode("ascii")


def decrypt(token: str) -> str:
    """Raises InvalidToken when no configured key opens ``token``."""
    return box().decrypt(token.encode("ascii")).decode()


def rotate(token: str) -> str:
    """``token`` encrypted again with the first key."""
    return box().rotate(token.encode("ascii")).decode("ascii")


# Deterministic encryption (AES-SIV, RFC 5297) for secrets in columns that are looked up by
# equality, such as the query string of a worker's URL, which is part of its identity: the same
# text always gives the same token, so the column still works in WHERE and UNIQUE. It shows that
# two values are equal, and nothing else. The first key encrypts; all keys decrypt; after a
# rotation `manage.py rotate_secrets` re-encrypts, so lookups (first key) find every row again.


@functools.cache
def _sivs(keys: tuple[str, ...], secret_key: str) -> tuple["AESSIV", ...]:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESSIV
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    sources = [key.encode() for key in keys] or [secret_key.encode()]
    return tuple(
        AESSIV(HKDF(algorithm=hashes.SHA256(), length=64, salt=None, info=b"mmm lookup secrets").derive(source))
        for source in sources
    )


def _siv_boxes() -> tuple["AESSIV", ...]:
    return _sivs(tuple(settings.MMM_SECRET_KEYS), settings.SECRET_KEY)


def encrypt_deterministic(text: str) -> str:
    token = _siv_boxes()[0].encrypt(text.encode(), None)
    return base64.urlsafe_b64encode(token).decode("ascii").rstrip("=")


def decrypt_deterministic(token: str) -> str:
    """Raises InvalidToken when no configured key opens ``token``."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except ValueError:
        raise _invalid_token() from None
    for siv in _siv_boxes():
        try:
            return siv.decrypt(raw, None).decode()
        except Exception:  # cryptography.exceptions.InvalidTag: not this key
            continue
    raise _invalid_token()
