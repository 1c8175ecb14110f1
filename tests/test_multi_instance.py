"""Two gateway instances (separate gunicorns, each with several gevent worker processes) on
one PostgreSQL and one Redis: routing state seen and changed by one is the other's at once."""

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import SEED_ANSWER, seed_registration
from tests.fake_upstream import Reply
from tests.gateway_process import GatewayProcess, gateway_database
from tests.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis]

COMPLETIONS = "/api/v1/chat/completions"


@pytest.fixture
def instances(tmp_path):
    with gateway_database(tmp_path) as env:
        env = {**env, "MMM_ROUTING_STATE_PREFIX": f"mmm:e2e:{uuid.uuid4().hex[:8]}", "MMM_WEB_WORKERS": "2"}
        GatewayProcess(env=env).manage("migrate", "--noinput", "-v0").check_returncode()
        a, b = GatewayProcess(env=env).start(), GatewayProcess(env=env).start()
        yield a, b
        a.stop()
        b.stop()


def register(gateway, url, **fields):
    gateway.post("/api/server/register", seed_registration(url, **fields)).raise_for_status()


def complete(gateway):
    return gateway.post(COMPLETIONS, {"model_name": "proxyllm", "input": "hi"})


def traffic(gateway) -> dict[str, dict]:
    rows = gateway.get("/api/server/workers").json()["data"]
    return {row["req_url_template"]: row["traffic"] for row in rows}


def test_a_worker_ejected_through_one_instance_gets_no_traffic_from_the_other(instances, upstream):
    a, b = instances
    bad = upstream.on("/bad", status=500, json={"error": "oom"})
    register(a, bad)
    register(a, upstream.on("/good1", json=SEED_ANSWER))
    register(a, upstream.on("/good2", json=SEED_ANSWER))
    # Round robin reaches the failing worker every third request; least_loaded, once a failure
    # made it look slow, would leave it alone for a long while and never eject it here.
    a.post("/api/server/policy", {"model_name": "proxyllm", "strategy": "round_robin"}).raise_for_status()

    def ejected_after_one_more_request():
        assert complete(a).status_code == 200
        return traffic(a)[bad]["ejected_until"]

    wait_until(ejected_after_one_more_request, timeout=30, what="A to eject the failing worker")
    hits_at_ejection = len(upstream.hits("/bad"))

    assert traffic(b)[bad]["ejected_until"] == traffic(a)[bad]["ejected_until"]
    for _ in range(30):
        assert complete(b).status_code == 200

    assert len(upstream.hits("/bad")) == hits_at_ejection


def test_in_flight_counts_are_exact_from_both_instances_under_200_concurrent_requests(instances, upstream):
    a, b = instances
    gate = threading.Event()
    held = lambda seen: (gate.wait(60), Reply(json=SEED_ANSWER))[1]  # noqa: E731
    urls = [upstream.on("/one", held), upstream.on("/two", held)]
    for url in urls:
        register(a, url)
    total = 200

    with ThreadPoolExecutor(total) as pool:
        try:
            futures = [pool.submit(complete, a if n % 2 else b) for n in range(total)]
            wait_until(
                lambda: len(upstream.seen) == total, timeout=60, what=f"all {total} requests to reach the upstream"
            )
            held_per_path = {"/one": len(upstream.hits("/one")), "/two": len(upstream.hits("/two"))}
            seen_by_a, seen_by_b = traffic(a), traffic(b)
        finally:
            gate.set()
        statuses = [future.result(timeout=90).status_code for future in futures]

    for url in urls:
        path = "/" + url.rsplit("/", 1)[1]
        assert seen_by_a[url]["in_flight"] == seen_by_b[url]["in_flight"] == held_per_path[path]
    assert sum(row["in_flight"] for row in seen_by_a.values()) == total
    assert statuses == [200] * total
    assert all(row["in_flight"] == 0 for row in traffic(b).values())


def test_round_robin_is_one_rotation_over_both_instances_traffic(instances, upstream):
    a, b = instances
    paths = ["/w1", "/w2", "/w3"]
    for path in paths:
        register(a, upstream.on(path, json=SEED_ANSWER))
    a.post("/api/server/policy", {"model_name": "proxyllm", "strategy": "round_robin"}).raise_for_status()
    # No wait needed: A reloads its routing table after its own changes, and B has served no
    # completion yet, so it loads its table (policy included) on the first one.

    for n in range(30):
        assert complete(a if n % 2 else b).status_code == 200

    order = [seen.path for seen in upstream.seen]
    assert sorted(order[:3]) == paths
    assert order == order[:3] * 10  # one shared rotation, not one per instance and process
