"""The Redis client of the state shared across processes and hosts (the routing state,
budgets): a timeout on every call, no retries, and the errors that mean "Redis is away"."""


def shared_state_redis(*, url: str, timeout: float):
    """A client for ``url`` whose every call waits at most ``timeout`` seconds, once.

    No retries: redis-py's default retries a timeout up to 10 times with backoff, which turned a
    0.5 s timeout into seconds per call while Redis was frozen.
    """
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        decode_responses=True,
        retry=Retry(NoBackoff(), 0),
    )


def redis_away_errors() -> tuple[type[BaseException], ...]:
    """What a call raises when Redis is away or cannot serve (failing over, loading, out of
    memory). A script error is not among them: that is a bug and must not pass as an outage."""
    import redis

    return (
        redis.ConnectionError,
        redis.TimeoutError,
        OSError,
        redis.exceptions.ReadOnlyError,
        redis.exceptions.BusyLoadingError,
        redis.exceptions.OutOfMemoryError,
    )
