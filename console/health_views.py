"""GET /healthz and GET /readyz for load balancers and orchestrators."""

import logging
import uuid

from django.core.cache import cache
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET

logger = logging.getLogger("mmm.health")


# csrf_exempt: another method gets require_GET's 405, not the CSRF check's HTML 403.
@csrf_exempt
@never_cache
@require_GET
def healthz(request):
    """The process is up and answering; says nothing about what it depends on."""
    return JsonResponse({"status": "ok"})


@csrf_exempt
@never_cache
@require_GET
def readyz(request):
    """200 when the database and the cache answer, else 503 naming what does not."""
    checks = {"database": _database_answers, "cache": _cache_answers}
    failed = {}
    for name, check in checks.items():
        try:
            check()
        except Exception as exc:
            # The exception's text may name hosts and users: it goes to the log, not the answer.
            logger.warning("readiness: %s unreachable: %s", name, exc)
            failed[name] = f"unreachable ({type(exc).__name__})"
    if failed:
        return JsonResponse({"status": "unavailable", "failed": failed}, status=503)
    return JsonResponse({"status": "ok"})


def _database_answers() -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        if not connection.in_atomic_block:
            connection.close()  # CONN_MAX_AGE=0 semantics: no connection kept per probe


def _cache_answers() -> None:
    # A write and a read back: a cache that accepts connections but cannot store is not ready.
    key, token = "mmm:readyz", uuid.uuid4().hex
    cache.set(key, token, timeout=10)
    if cache.get(key) != token:
        raise RuntimeError("the cache did not return what was stored")
