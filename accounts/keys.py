"""Issuing client keys and recognising them on the request path.

A key reads ``mmm_<prefix>_<secret>``: the prefix finds the row, the SHA-256 of the whole key
is compared in constant time, and the key itself is stored nowhere. Each process keeps what it
looked up for MMM_API_KEY_CACHE_SECONDS, so a request does not wait on the database and a
revocation is in effect everywhere within that time.
"""

import hmac
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable

from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone

from accounts.caller import Caller
from accounts.models import ApiKey, secret_digest

logger = logging.getLogger("mmm.accounts")

_KEY_SHAPE = re.compile(r"^mmm_([a-z0-9]{8})_[A-Za-z0-9_-]{43}$")
# last_used_at is for people ("is this key still used?"): a minute's precision is plenty, and
# a write per request would put the database on the hot path.
LAST_USED_WRITE_SECONDS = 60.0


def new_key() -> tuple[str, str]:
    """(prefix, key): 40 random bits of public prefix and 256 of secret."""
    prefix = "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(8))
    return prefix, f"mmm_{prefix}_{secrets.token_urlsafe(32)}"


def caller_from_key(key: ApiKey) -> Caller:
    return Caller(
        label=f"key {key.name} ({key.prefix}…)",
        scopes=frozenset(key.scopes),
        allowed_models=frozenset(key.allowed_models or ()),
        rate_limit_per_minute=key.rate_limit_per_minute,
        expires_at=key.expires_at,
        api_key_id=key.pk,
        api_key_prefix=key.prefix,
    )


class KeyCache:
    """prefix -> (loaded at, SHA-256 of the key, Caller or None when unusable), per process."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._entries: dict[str, tuple[float, str, Caller | None]] = {}
        self._last_written: dict[int, float] = {}
        self._lock = threading.Lock()

    def caller_for(self, presented: str) -> Caller | None:
        """The caller a presented key stands for, or None if it is unknown, revoked or expired."""
        match = _KEY_SHAPE.match(presented)
        if not match:
            return None
        prefix = match.group(1)
        entry = self._entries.get(prefix)
        if entry is None or self._clock() - entry[0] >= settings.MMM_API_KEY_CACHE_SECONDS:
            entry = self._load(prefix)
        _, digest, caller = entry
        if caller is None or not hmac.compare_digest(digest, secret_digest(presented)) or caller.is_expired():
            return None
        self._note_use(caller)
        return caller

    def clear(self) -> None:
        """Forget every key (after a change made in this process)."""
        with self._lock:
            self._entries.clear()
            self._last_written.clear()

    def _load(self, prefix: str) -> tuple[float, str, Caller | None]:
        loaded_at = self._clock()
        try:
            key = ApiKey.objects.filter(prefix=prefix).first()
        finally:
            _give_back_connection()
        # An unknown prefix is remembered too, so guessed keys cost one query per prefix and TTL.
        entry = (loaded_at, key.secret_hash if key else "", caller_from_key(key) if key and key.is_usable else None)
        with self._lock:
            if len(self._entries) > 10_000:  # random prefixes must not grow memory without end
                self._entries.clear()
            self._entries[prefix] = entry
        return entry

    def _note_use(self, caller: Caller) -> None:
        now = self._clock()
        if now - self._last_written.get(caller.api_key_id, -LAST_USED_WRITE_SECONDS) < LAST_USED_WRITE_SECONDS:
            return
        self._last_written[caller.api_key_id] = now
        try:
            ApiKey.objects.filter(pk=caller.api_key_id).update(last_used_at=timezone.now())
        except DatabaseError as exc:  # bookkeeping only: the request goes on
            logger.warning("could not record the use of %s: %s", caller, exc)
        finally:
            _give_back_connection()


def _give_back_connection() -> None:
    # The request may now wait minutes on an upstream; under gevent its connection would be
    # held all that time (see inference.routing.load_workers).
    if not connection.in_atomic_block:
        connection.close()


key_cache = KeyCache()
