"""Budgets through two gateway instances (separate gunicorns, two gevent workers each) on one
PostgreSQL and one Redis: exact under concurrency, through retries, a SIGKILL between
reservation and settlement, and a Redis restart in the middle of the load."""

import os
import signal
import subprocess
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from django.conf import settings

from tests.fake_model_apis import OpenAIServer
from tests.fake_upstream import Reply, Seen
from tests.gateway_process import GatewayProcess, free_port, gateway_database
from tests.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis]

TOKENS_PER_ANSWER = 11  # the fake reports 5 prompt + 6 completion tokens; the estimate is 1 + max_tokens 10
ASK = {"model": "gpt", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 10}


class Fleet:
    def __init__(self, env: dict):
        self.env = env
        self.setup = GatewayProcess(env=env)
        self.gateways: list[GatewayProcess] = []

    def key(self, *args: str) -> str:
        made = self.setup.manage("create_api_key", "--name", f"app {uuid.uuid4().hex[:6]}", *args)
        assert made.returncode == 0, made.stderr
        return made.stdout.strip().splitlines()[-1]

    def start(self, count: int = 2) -> list[GatewayProcess]:
        self.gateways += [GatewayProcess(env=self.env).start() for _ in range(count)]
        return self.gateways[-count:]

    def stop(self) -> None:
        for gateway in self.gateways:
            gateway.stop()


@pytest.fixture
def fleet(tmp_path):
    with gateway_database(tmp_path) as env:
        env = {
            **env,
            "MMM_REQUIRE_AUTH": "true",
            "REDIS_URL": settings.REDIS_URL,
            "MMM_CACHE_PREFIX": f"test-{uuid.uuid4().hex[:8]}",
            "MMM_ROUTING_STATE_PREFIX": f"mmm:e2e:{uuid.uuid4().hex[:8]}",
            "MMM_USAGE_PREFIX": f"mmm:e2e-usage:{uuid.uuid4().hex[:8]}",
            "MMM_WEB_WORKERS": "2",
            "MMM_REQUEST_LOG_FLUSH_SECONDS": "0.2",  # the ledger's flush interval too
            "MMM_USAGE_LEASE_SECONDS": "4",
        }
        fleet = Fleet(env)
        fleet.setup.manage("migrate", "--noinput", "-v0").check_returncode()
        fleet.admin = fleet.key("--scope", "admin")
        try:
            yield fleet
        finally:
            fleet.stop()


def register(gateway: GatewayProcess, admin: str, base_url: str, **fields) -> None:
    response = requests.post(
        gateway.url + "/api/server/register",
        json={
            "model_name": "gpt",
            "kind": "openai",
            "req_url_template": base_url,
            "upstream_model": "up-model",
            **fields,
        },
        headers={"Authorization": f"Bearer {admin}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text


def ask(gateway: GatewayProcess, key: str, payload: dict = ASK) -> int:
    try:
        return requests.post(
            gateway.url + "/v1/chat/completions", json=payload, headers={"Authorization": f"Bearer {key}"}, timeout=60
        ).status_code
    except requests.ConnectionError:
        return 0  # the gateway was killed under it


def own_usage(gateway: GatewayProcess, key: str) -> dict:
    response = requests.get(
        gateway.url + "/v1/usage", params={"group_by": "model"}, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    assert response.status_code == 200, response.text
    body = response.json()
    return {
        "ledger": sum(row["total_tokens"] for row in body["data"]),
        "spent": body["budgets"][0]["spent"],
        "body": body,
    }


def usage_once_ledger_holds(gateway: GatewayProcess, key: str, tokens: int) -> dict:
    """The key's usage once the ledger's batched writes hold ``tokens``."""

    def written() -> dict | None:
        usage = own_usage(gateway, key)
        return usage if usage["ledger"] == tokens else None

    return wait_until(written, timeout=30, what=f"the ledger to hold {tokens} tokens")


def test_a_budget_of_n_requests_lets_exactly_n_of_3n_concurrent_requests_through(fleet, upstream):
    n, rounds = 4, 3
    keys = [
        fleet.key("--scope", "inference", "--budget-tokens", str(n * TOKENS_PER_ANSWER), "--budget-period", "day")
        for _ in range(rounds)
    ]
    a, b = fleet.start()
    register(a, fleet.admin, OpenAIServer().install(upstream))

    for round_number, key in enumerate(keys):
        before = len(upstream.hits("/v1/chat/completions"))
        with ThreadPoolExecutor(3 * n) as pool:
            statuses = list(pool.map(lambda index, key=key: ask((a, b)[index % 2], key), range(3 * n)))

        assert sorted(statuses) == [200] * n + [429] * (2 * n), f"round {round_number}: {statuses}"
        assert len(upstream.hits("/v1/chat/completions")) - before == n
        figures = usage_once_ledger_holds(b, key, n * TOKENS_PER_ANSWER)
        assert figures["spent"] == n * TOKENS_PER_ANSWER and figures["body"]["budgets"][0]["left"] == 0


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


def kill_hard(gateway: GatewayProcess) -> None:
    """SIGKILL the gunicorn and its workers: no worker_exit, no atexit, nothing settled."""
    for child in _children(gateway.process.pid):
        os.kill(child, signal.SIGKILL)
    gateway.process.kill()
    gateway.process.wait(timeout=15)


def test_retries_and_a_process_killed_between_reservation_and_settlement_leave_the_ledger_exact(fleet, upstream):
    held = 3
    # Budget room for 20 answers; the held requests' holds must come back once their lease ends.
    key = fleet.key("--scope", "inference", "--budget-tokens", str(20 * TOKENS_PER_ANSWER), "--budget-period", "month")
    a, b = fleet.start()
    release = threading.Event()
    server = OpenAIServer()

    def chat(seen: Seen) -> Reply:
        if b"hold me" in seen.body:
            release.wait(60)
        return server.chat(seen)

    upstream.on("/v1/chat/completions", chat)
    register(a, fleet.admin, upstream.url("/v1"))
    # A worker of the same model that always fails: requests that reach it are retried on the other.
    register(a, fleet.admin, upstream.url("/broken/v1"))
    upstream.on("/broken/v1/chat/completions", Reply(status=500, json={"error": {"message": "overloaded"}}))

    statuses = [ask((a, b)[index % 2], key) for index in range(6)]
    assert statuses == [200] * 6
    usage_once_ledger_holds(a, key, 6 * TOKENS_PER_ANSWER)  # B's rows too, before it dies
    hold = {**ASK, "messages": [{"role": "user", "content": "hold me"}]}
    with ThreadPoolExecutor(held) as pool:
        pending = [pool.submit(ask, b, key, hold) for _ in range(held)]
        wait_until(
            lambda: sum(b"hold me" in seen.body for seen in upstream.seen) >= held,
            timeout=30,
            what="B's held requests to reach the upstream",
        )
        kill_hard(b)
        release.set()
        assert [future.result() for future in pending] == [0] * held

    # While their lease runs the dead process's holds keep their room; then it comes back.
    left_for = 20 - 6
    wait_until(
        lambda: own_usage(a, key)["body"]["budgets"][0]["left"] == left_for * TOKENS_PER_ANSWER and ask(a, key) == 200,
        timeout=30,
        what="the killed requests' holds to be released",
    )
    statuses = [ask(a, key) for _ in range(left_for)]  # one of the room went to the probe above

    assert sorted(statuses) == [200] * (left_for - 1) + [429]
    assert len(upstream.hits("/broken/v1/chat/completions")) > 0  # there were retries
    answered = 6 + left_for
    figures = usage_once_ledger_holds(a, key, answered * TOKENS_PER_ANSWER)
    assert figures["spent"] == figures["ledger"] == answered * TOKENS_PER_ANSWER


class OwnRedis:
    """A redis-server of the test's own on a free port, without persistence: a restart loses all."""

    def __init__(self):
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "OwnRedis":
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--save", "", "--appendonly", "no", "--bind", "127.0.0.1"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import redis

        client = redis.Redis.from_url(self.url, socket_timeout=1)
        wait_until(lambda: _pings(client), timeout=30, what=f"redis-server on port {self.port} to answer")
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=15)


def _pings(client) -> bool:
    try:
        return client.ping()
    except Exception:
        return False


@pytest.fixture
def own_redis():
    server = OwnRedis().start()
    yield server
    server.stop()


def test_after_a_redis_restart_mid_load_reconciliation_makes_spend_equal_the_ledger(fleet, upstream, own_redis):
    fleet.env["REDIS_URL"] = own_redis.url
    fleet.setup = GatewayProcess(env=fleet.env)
    key = fleet.key("--scope", "inference", "--budget-tokens", "1000000", "--budget-period", "day")
    a, b = fleet.start()
    register(a, fleet.admin, OpenAIServer().install(upstream))
    statuses: list[int] = []
    stop = threading.Event()

    def load(gateway: GatewayProcess) -> None:
        while not stop.is_set():
            statuses.append(ask(gateway, key))

    threads = [threading.Thread(target=load, args=((a, b)[index % 2],)) for index in range(6)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: statuses.count(200) >= 30, timeout=60, what="load before the restart")
        own_redis.stop()
        wait_until(lambda: statuses.count(200) >= 60, timeout=60, what="load while Redis is away")
        own_redis.start()
        wait_until(lambda: statuses.count(200) >= 90, timeout=60, what="load after the restart")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)

    answered = statuses.count(200)
    assert answered == len(statuses)  # budgets never refused a request for Redis being away
    for gateway in (a, b):
        gateway.stop()  # writes what is queued of the ledger
    before = fleet.start(1)[0]
    figures = own_usage(before, key)
    assert figures["ledger"] == answered * TOKENS_PER_ANSWER
    assert figures["spent"] <= figures["ledger"]  # what Redis lost is missing; nothing is counted twice

    for _ in range(2):  # and again, as every host might: nothing inflates
        reconciled = fleet.setup.manage("reconcile_usage", "--lag", "0")
        assert reconciled.returncode == 0, reconciled.stderr

    assert own_usage(before, key)["spent"] == answered * TOKENS_PER_ANSWER


def test_settling_in_one_pipeline_after_redis_lost_its_scripts(own_redis):
    from usage.budget_store_redis import RedisBudgetStore
    from usage.catalog import BudgetRule

    budget = BudgetRule(
        id=7, subject="k1", model_name="", period="day", window_seconds=0, unit="tokens", limit=100, thresholds=()
    )
    store = RedisBudgetStore(url=own_redis.url, prefix="mmm:noscript")
    store.settle_many([("k1", "before", [(budget, 1)])])
    own_redis.stop()
    own_redis.start()  # empty: no data, no scripts

    settled = store.settle_many([("k1", "a", [(budget, 5)]), ("k1", "b", [(budget, 6)])])

    assert [result.duplicate for result in settled] == [False, False]
    assert store.spent(subject="k1", rules=[budget]) == {7: (11, 0)}
