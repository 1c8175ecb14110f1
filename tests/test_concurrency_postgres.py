"""What several gateway processes and probers do at the same moment, on PostgreSQL."""

from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import pytest
from django.db import connection
from django.utils import timezone

from registry.health import ProbeResult, worker_record_probe
from registry.models import Worker
from registry.services import worker_register

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

THREADS = 8


def in_threads(function, count: int = THREADS) -> list:
    """Run ``function`` in ``count`` threads released at the same moment; return the results."""
    barrier = Barrier(count)

    def run(index):
        barrier.wait(timeout=30)  # a thread that never arrives breaks the barrier, not the run
        try:
            return function(index)
        finally:
            connection.close()

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


def test_simultaneous_registrations_of_one_worker_make_one_row():
    def register(index):
        worker, created = worker_register(
            model_name="m", req_url_template="http://127.0.0.1:9/x", body={"p": "{USER_PROMPT}"}, weight=index + 1
        )
        return created

    created = in_threads(register)

    assert created.count(True) == 1
    assert Worker.objects.count() == 1
    assert 1 <= Worker.objects.get().weight <= THREADS


def test_simultaneous_probe_results_are_all_counted():
    worker = Worker.objects.create(model_name="m", req_url_template="http://127.0.0.1:9/x", body={"p": "{USER_PROMPT}"})
    failed = ProbeResult(worker_id=worker.pk, ok=False, latency_ms=1, error="down", checked_at=timezone.now())

    changes = in_threads(lambda index: worker_record_probe(result=failed))

    worker.refresh_from_db()
    assert worker.consecutive_failures == THREADS
    assert sum(change is not None for change in changes) == 1  # exactly one saw unknown -> unhealthy
    assert worker.health_state == "unhealthy"


def test_worker_keys_racing_to_claim_a_new_model_name_leave_it_with_exactly_one_owner():
    from accounts.caller import Caller
    from accounts.services import api_key_create
    from registry.exceptions import ModelNotOwned
    from registry.models import ModelOwner

    keys = [api_key_create(name=f"team {index}", scopes=["worker"])[0] for index in range(THREADS)]

    def register(index):
        caller = Caller(label=f"team {index}", scopes=frozenset({"worker"}), api_key_id=keys[index].pk)
        try:
            worker_register(
                model_name="m",
                req_url_template=f"http://127.0.0.1:9/{index}",
                body={"p": "{USER_PROMPT}"},
                caller=caller,
            )
        except ModelNotOwned:
            return None
        return keys[index].pk

    winners = [key_id for key_id in in_threads(register) if key_id is not None]

    assert len(winners) == 1
    assert ModelOwner.objects.get(model_name="m").owner_key_id == winners[0]
    assert list(Worker.objects.values_list("owner_key_id", flat=True)) == winners
