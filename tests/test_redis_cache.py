"""With REDIS_URL set, Django's cache is the shared Redis every process and host sees."""

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache

pytestmark = pytest.mark.redis


def test_the_cache_is_redis_and_counts_atomically_across_threads():
    cache = caches["default"]
    assert isinstance(cache, RedisCache)
    key = f"test-counter-{uuid.uuid4().hex}"
    cache.set(key, 0, timeout=60)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: cache.incr(key), range(400)))

    assert cache.get(key) == 400
    cache.delete(key)
