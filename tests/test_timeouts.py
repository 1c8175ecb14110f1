"""Timeouts that hold under gevent, against a server that accepts and never answers (a TCP
proxy in blackhole mode): the database connect, a statement, and Redis calls.

Each check runs in a process of its own, patched by gevent as a gunicorn worker is, and must
end with the error rather than hang: the process is given a generous deadline, so a hang fails
the test with what it was waiting for.
"""

import os
import select
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.outage_load import through
from tests.tcp_proxy import BLACKHOLE

ROOT = Path(__file__).resolve().parent.parent
DEADLINE = 60  # seconds: far above every bound under test, far below "hung"

UNDER_GEVENT = """
from gevent import monkey; monkey.patch_all()
from psycogreen.gevent import patch_psycopg; patch_psycopg()
import os, django
os.environ["DJANGO_SETTINGS_MODULE"] = "mmm.settings"
django.setup()
"""


def run_under_gevent(code: str, env: dict) -> str:
    try:
        done = subprocess.run(
            [sys.executable, "-c", UNDER_GEVENT + code],
            cwd=ROOT,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=DEADLINE,
        )
    except subprocess.TimeoutExpired:
        raise AssertionError(f"still waiting after {DEADLINE} s: the timeout did not hold") from None
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.postgres
def test_a_database_connect_to_a_frozen_server_ends_under_gevent(tcp_proxy):
    url = os.environ["DATABASE_URL"]
    proxy = tcp_proxy(urlsplit(url).hostname, urlsplit(url).port)
    proxy.set_mode(BLACKHOLE)

    outcome = run_under_gevent(
        "from django.db import connection, OperationalError\n"
        "try:\n    connection.ensure_connection(); print('connected')\n"
        "except OperationalError as exc:\n    print(type(exc).__name__)\n",
        {"DATABASE_URL": through(url, proxy), "MMM_DB_CONNECT_TIMEOUT": "1"},
    )

    assert outcome == "DatabaseUnavailable"
    assert proxy.accepted >= 1  # it did reach the frozen server


@pytest.mark.postgres
def test_a_statement_longer_than_the_statement_timeout_is_cancelled_by_the_server():
    outcome = run_under_gevent(
        "from django.db import connection, OperationalError\n"
        "try:\n"
        "    with connection.cursor() as cursor: cursor.execute('SELECT pg_sleep(30)')\n"
        "    print('finished')\n"
        "except OperationalError as exc:\n    print(type(exc.__cause__).__name__)\n",
        {"MMM_DB_STATEMENT_TIMEOUT": "0.5"},
    )

    assert outcome == "QueryCanceled"


@pytest.mark.postgres
def test_a_request_path_query_on_a_frozen_connection_ends_and_opens_the_breaker(tcp_proxy):
    url = os.environ["DATABASE_URL"]
    proxy = tcp_proxy(urlsplit(url).hostname, urlsplit(url).port)
    code = UNDER_GEVENT + (
        "import sys\n"
        "from django.db import connection, DatabaseError\n"
        "from mmm import database\n"
        "connection.ensure_connection()\n"
        "print('connected', flush=True)\n"
        "sys.stdin.readline()\n"  # the test freezes the proxy meanwhile
        "try:\n"
        "    with database.request_path(what='test'):\n"
        "        with connection.cursor() as cursor: cursor.execute('SELECT 1')\n"
        "    print('answered')\n"
        "except DatabaseError as exc:\n    print(type(exc).__name__, database.breaker.is_open())\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=ROOT,
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "DATABASE_URL": through(url, proxy), "MMM_DB_REQUEST_TIMEOUT": "0.5"},
    )
    try:
        ready, _, _ = select.select([process.stdout], [], [], DEADLINE)
        assert ready and process.stdout.readline().strip() == "connected", "the script did not connect"
        proxy.set_mode(BLACKHOLE)  # the connection is open: now it freezes
        process.stdin.write("go\n")
        process.stdin.flush()
        out, err = process.communicate(timeout=DEADLINE)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"still waiting after {DEADLINE} s: the request-path bound did not hold") from None
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert out.strip().splitlines()[-1] == "DatabaseUnavailable True", err


@pytest.mark.redis
def test_redis_calls_to_a_frozen_server_end_and_routing_goes_on_with_local_state_under_gevent(tcp_proxy):
    url = os.environ["REDIS_URL"]
    proxy = tcp_proxy(urlsplit(url).hostname, urlsplit(url).port)
    proxy.set_mode(BLACKHOLE)

    outcome = run_under_gevent(
        "import time\n"
        "from django.core.cache import cache\n"
        "from inference.routing_state import routing_state\n"
        "from mmm.breaker import redis_breaker\n"
        "state = routing_state()\n"
        "acquired = state.acquire(\n"
        "    worker_id=1, token='t', hold_until=time.time() + 60, max_inflight=None, panic=False, model_name='m'\n"
        ")\n"
        "try:\n    cache.incr('x'); cache_outcome = 'answered'\n"
        "except Exception as exc:\n    cache_outcome = type(exc).__name__\n"
        "print(acquired.name, state.snapshot([1], model_name='m')[1].in_flight, redis_breaker.is_open(), cache_outcome)\n",
        {"REDIS_URL": through(url, proxy), "MMM_REDIS_TIMEOUT": "0.3"},
    )

    assert outcome == "YES 1 True TimeoutError"
