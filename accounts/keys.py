"""Issuing client keys and recognising them on the request path.

A key reads ``mmm_<prefix>_<secret>``: the prefix finds the row, the SHA-256 of the whole key
is compared in constant time, and the key itself is stored nowhere. Each process keeps what it
looked up for MMM_API_KEY_CACHE_SECONDS, so a request does not wait on the database and a
revocation is in effect everywhere within that time; while the database is away, a key seen
before keeps working on its last good entry (KeyCache).
"""

import hmac
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError
from django.utils import timezone

from accounts.caller import Caller
from accounts.models import ApiKey, secret_digest
from mmm import background, database
from mmm.api_errors import ApiError
from mmm.breaker import redis_breaker

logger = logging.getLogger("mmm.accounts")

_KEY_SHAPE = re.compile(r"^mmm_([a-z0-9]{8})_[A-Za-z0-9_-]{43}$")
# last_used_at is for people ("is this key still used?"): a minute's precision is plenty, and
# a write per request would put the database on the hot path.
LAST_USED_WRITE_SECONDS = 60.0


def key_prefix(presented: str | None) -> str:
    """The public prefix of a key of the right shape (for logs of refused requests), else ""."""
    match = _KEY_SHAPE.match(presented or "")
    return match.group(1) if match else ""


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


class KeyStoreUnavailable(ApiError):
    status_code = 503
    default_code = "key_store_unavailable"

    def __init__(self):
        super().__init__(
            "the API key store (the database) is unreachable and this key was not seen recently; try again shortly"
        )


@dataclass(frozen=True)
class Entry:
    loaded_at: float  # monotonic
    digest: str  # SHA-256 of the key; "" for an unknown prefix
    caller: Caller | None  # None: unknown, revoked or expired


class KeyCache:
    """prefix -> what the database said about it, per process, with a shared second level.

    An entry is trusted for MMM_API_KEY_CACHE_SECONDS; the background refresh reloads the keys
    in use before then, so a request waits on the database only for a key it has not seen.
    When the database cannot be reached, the last good entry keeps serving for up to
    MMM_API_KEY_STALE_SECONDS; one this process never saw is looked for in the shared cache
    (Redis, when set), which every process writes what it loaded to.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, wall_clock: Callable[[], float] = time.time):
        self._clock = clock
        self._wall_clock = wall_clock
        self._entries: dict[str, Entry] = {}
        self._used_at: dict[str, float] = {}
        self._last_written: dict[int, float] = {}
        self._loading: dict[str, _Pending] = {}
        self._used_keys: set[int] = set()  # used since the background refresh last wrote last_used_at
        self._lock = threading.Lock()

    def caller_for(self, presented: str) -> Caller | None:
        """The caller a presented key stands for, or None if it is unknown, revoked or expired.

        Raises KeyStoreUnavailable when the database cannot say and nothing recent is known.
        """
        match = _KEY_SHAPE.match(presented)
        if not match:
            return None
        prefix = match.group(1)
        entry = self._entries.get(prefix)
        if entry is None or (
            self._clock() - entry.loaded_at >= settings.MMM_API_KEY_CACHE_SECONDS
            and not self._refreshed_off_path(entry)
        ):
            entry = self._reload_or_stale(prefix, entry)
        if (
            entry.caller is None
            or not hmac.compare_digest(entry.digest, secret_digest(presented))
            or entry.caller.is_expired()
        ):
            return None
        self._used_at[prefix] = self._clock()
        self._note_use(entry.caller)
        return entry.caller

    def clear(self) -> None:
        """Forget every key (after a change made in this process)."""
        with self._lock:
            self._entries.clear()
            self._used_at.clear()
            self._last_written.clear()

    def refresh(self) -> int:
        """Reload every key used within the stale window, in one query (the background refresh)."""
        horizon = self._clock() - max(settings.MMM_API_KEY_STALE_SECONDS, settings.MMM_API_KEY_CACHE_SECONDS)
        prefixes = [prefix for prefix, used in list(self._used_at.items()) if used >= horizon]
        for prefix in [prefix for prefix, used in list(self._used_at.items()) if used < horizon]:
            self._used_at.pop(prefix, None)
        used, self._used_keys = self._used_keys, set()
        if used:
            try:
                with database.watching():
                    ApiKey.objects.filter(pk__in=used).update(last_used_at=timezone.now())
            except DatabaseError:
                self._used_keys |= used  # bookkeeping only: the next refresh tries again
                raise
            finally:
                database.give_back_connection()
        if not prefixes:
            return 0
        loaded_at = self._clock()
        try:
            with database.watching():
                found = {key.prefix: key for key in ApiKey.objects.filter(prefix__in=prefixes)}
        finally:
            database.give_back_connection()
        for prefix in prefixes:
            entry = _entry_for(found.get(prefix), loaded_at)
            self._store(prefix, entry)
            # Off the request path only: a cache that does not answer must not slow a request.
            self._share(prefix, entry)
        return len(prefixes)

    def _refreshed_off_path(self, entry: Entry) -> bool:
        """Whether the background refresh (mmm.background) reloads this entry, so the request
        may use it as it is: it reloads every key in use twice per MMM_API_KEY_CACHE_SECONDS
        while the database answers, and while it does not the last good entry serves anyway."""
        return (
            background.running()
            and entry.caller is not None
            and self._clock() - entry.loaded_at < settings.MMM_API_KEY_STALE_SECONDS
        )

    def _reload_or_stale(self, prefix: str, entry: Entry | None) -> Entry:
        try:
            return self._load(prefix)
        except DatabaseError as exc:
            entry = entry or self._shared_entry(prefix)
            if entry is None or self._clock() - entry.loaded_at >= settings.MMM_API_KEY_STALE_SECONDS:
                logger.warning("key %s… could not be checked: %s", prefix, exc)
                raise KeyStoreUnavailable() from None
            return entry

    def _load(self, prefix: str) -> Entry:
        """One query per prefix at a time: requests that arrive together with a key this
        process has not seen share it (and its failure), so a burst is one connection."""
        with self._lock:
            pending = self._loading.get(prefix)
            leading = pending is None
            if leading:
                pending = self._loading[prefix] = _Pending()
        if not leading:
            pending.done.wait()
            if pending.error is not None:
                raise pending.error
            return pending.entry
        try:
            pending.entry = self._query(prefix)
            return pending.entry
        except Exception as exc:
            pending.error = exc
            raise
        except BaseException:  # the leading greenlet was killed: the others must not wait for ever
            pending.error = database.DatabaseUnavailable("the key lookup was interrupted")
            raise
        finally:
            with self._lock:
                self._loading.pop(prefix, None)
            pending.done.set()

    def _query(self, prefix: str) -> Entry:
        loaded_at = self._clock()
        try:
            with database.request_path(what="API key lookup"):
                key = ApiKey.objects.filter(prefix=prefix).first()
        finally:
            database.give_back_connection()
        # An unknown prefix is remembered too, so guessed keys cost one query per prefix and TTL.
        entry = _entry_for(key, loaded_at)
        self._store(prefix, entry)
        return entry

    def _store(self, prefix: str, entry: Entry) -> None:
        with self._lock:
            if len(self._entries) > 10_000:  # random prefixes must not grow memory without end
                self._entries.clear()
            self._entries[prefix] = entry

    def _share(self, prefix: str, entry: Entry) -> None:
        try:
            cache.set(
                _shared_key(prefix),
                (self._wall_clock(), entry.digest, entry.caller),
                timeout=max(int(settings.MMM_API_KEY_STALE_SECONDS), 1),
            )
        except Exception as exc:
            logger.debug("could not share key %s…: %s", prefix, exc)

    def _shared_entry(self, prefix: str) -> Entry | None:
        if redis_breaker.is_open():
            return None  # Redis failed a moment ago: do not wait on it again
        try:
            shared = cache.get(_shared_key(prefix))
        except Exception:
            return None
        if shared is None:
            return None
        written_at, digest, caller = shared
        # Its age in this process's monotonic clock, so the stale limit applies as to a local entry.
        return Entry(loaded_at=self._clock() - max(self._wall_clock() - written_at, 0.0), digest=digest, caller=caller)

    def _note_use(self, caller: Caller) -> None:
        now = self._clock()
        if now - self._last_written.get(caller.api_key_id, -LAST_USED_WRITE_SECONDS) < LAST_USED_WRITE_SECONDS:
            return
        self._last_written[caller.api_key_id] = now
        if background.running():
            self._used_keys.add(caller.api_key_id)  # written by the background refresh
            return
        if database.breaker.is_open():
            return  # bookkeeping only: it waits for the next minute
        try:
            with database.request_path(what="key use"):
                ApiKey.objects.filter(pk=caller.api_key_id).update(last_used_at=timezone.now())
        except DatabaseError as exc:  # bookkeeping only: the request goes on
            logger.warning("could not record the use of %s: %s", caller, exc)
        finally:
            database.give_back_connection()


@dataclass
class _Pending:
    done: threading.Event = field(default_factory=threading.Event)
    entry: Entry | None = None
    error: BaseException | None = None


def _entry_for(key: ApiKey | None, loaded_at: float) -> Entry:
    return Entry(
        loaded_at=loaded_at,
        digest=key.secret_hash if key else "",
        caller=caller_from_key(key) if key and key.is_usable else None,
    )


def _shared_key(prefix: str) -> str:
    return f"apikey:{prefix}"


key_cache = KeyCache()
