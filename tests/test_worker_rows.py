"""The routing table's reads of every worker row: only the rows that changed are built again,
whoever changed them and however (save, queryset.update, a deletion's SET NULL, plain SQL)."""

import threading

import pytest
from django.db import connection

from accounts.models import ApiKey
from inference.routing import RoutingTable
from mmm import background, database
from registry.models import Worker
from registry.worker_rows import WorkerRows

pytestmark = pytest.mark.django_db


def make_worker(n: int, **fields) -> Worker:
    defaults = {
        "model_name": f"m{n % 2}",
        "req_url_template": f"http://127.0.0.1:9/{n}",
        "body": {"prompt": "{USER_PROMPT}"},
        "headers": {"Authorization": f"Bearer sk-secret-{n}"},
    }
    return Worker.objects.create(**{**defaults, **fields})


def by_pk(workers) -> dict:
    return {worker.pk: worker for worker in workers}


def test_unchanged_rows_are_the_instances_of_the_last_read():
    workers = [make_worker(n) for n in range(4)]
    rows = WorkerRows()
    first = rows.read()
    second = rows.read()
    assert [w.pk for w in first] == [w.pk for w in Worker.objects.all()]  # the model's ordering
    assert all(a is b for a, b in zip(first, second, strict=True))
    assert {w.pk for w in second} == {w.pk for w in workers}
    assert by_pk(second)[workers[0].pk].headers == {"Authorization": "Bearer sk-secret-0"}


def test_a_saved_change_builds_that_row_alone_again():
    workers = [make_worker(n) for n in range(3)]
    rows = WorkerRows()
    before = by_pk(rows.read())
    workers[1].headers = {"Authorization": "Bearer sk-rotated"}
    workers[1].save()
    after = by_pk(rows.read())
    assert after[workers[1].pk] is not before[workers[1].pk]
    assert after[workers[1].pk].headers == {"Authorization": "Bearer sk-rotated"}
    assert after[workers[0].pk] is before[workers[0].pk]
    assert after[workers[2].pk] is before[workers[2].pk]


def test_changes_that_leave_updated_at_alone_are_seen():
    """Heartbeats and the prober write with queryset.update(); a deleted key sets NULL."""
    key = ApiKey.objects.create(name="owner")
    worker = make_worker(0, owner_key=key)
    untouched = make_worker(1)
    stamp = Worker.objects.get(pk=worker.pk).updated_at
    rows = WorkerRows()
    rows.read()

    Worker.objects.filter(pk=worker.pk).update(health_state="unhealthy", weight=0)
    seen = by_pk(rows.read())[worker.pk]
    assert (seen.health_state, seen.weight) == ("unhealthy", 0)

    key.delete()  # on_delete=SET_NULL: an UPDATE the model never sees
    seen = by_pk(rows.read())[worker.pk]
    assert seen.owner_key_id is None

    with connection.cursor() as cursor:  # an operator's fix in SQL, at night
        cursor.execute("UPDATE registry_worker SET enabled = %s WHERE id = %s", [False, worker.pk])
    workers = by_pk(rows.read())
    assert workers[worker.pk].enabled is False
    assert Worker.objects.get(pk=worker.pk).updated_at == stamp  # none of these moved it
    assert workers[untouched.pk].enabled is True


def test_new_and_deleted_rows():
    kept, removed = make_worker(0), make_worker(1)
    rows = WorkerRows()
    rows.read()
    removed.delete()
    added = make_worker(2)
    assert {w.pk for w in rows.read()} == {kept.pk, added.pk}
    Worker.objects.all().delete()
    assert rows.read() == []


def test_a_row_changed_and_changed_back_reads_as_it_is_now():
    worker = make_worker(0)
    rows = WorkerRows()
    rows.read()
    Worker.objects.filter(pk=worker.pk).update(weight=5)
    assert rows.read()[0].weight == 5
    Worker.objects.filter(pk=worker.pk).update(weight=1)
    assert rows.read()[0].weight == 1


def test_the_routing_table_sees_an_update_on_its_next_refresh():
    worker = make_worker(0, model_name="m")
    table = RoutingTable()
    assert table.workers_for("m")[0].weight == 1
    Worker.objects.filter(pk=worker.pk).update(weight=9)
    table.refresh()
    assert table.workers_for("m")[0].weight == 9


@pytest.mark.django_db(transaction=True)  # outside a transaction, as in production
def test_a_read_for_a_request_gives_its_connection_back(monkeypatch):
    closed = []
    # SQLite's in-memory test database ignores close(), so the call itself is what is seen.
    monkeypatch.setattr(connection, "close", lambda: closed.append(True))
    database.give_back_connection()
    assert closed == [True]


@pytest.mark.django_db(transaction=True)
def test_the_background_loop_keeps_its_connection(monkeypatch):
    seen = {}

    def in_the_loop():
        background._loop.active = True
        seen["in_loop"] = background.in_loop()

    thread = threading.Thread(target=in_the_loop)
    thread.start()
    thread.join(timeout=10)
    assert seen == {"in_loop": True}
    assert not background.in_loop()  # marked in that thread (greenlet) only

    closed = []
    monkeypatch.setattr(connection, "close", lambda: closed.append(True))
    background._loop.active = True
    try:
        database.give_back_connection()
    finally:
        background._loop.active = False
    assert closed == []
    database.give_back_connection()
    assert closed == [True]


def test_the_background_loop_bounds_its_reads_as_a_fresh_connect_would(settings):
    settings.MMM_DB_CONNECT_TIMEOUT, settings.MMM_DB_REQUEST_TIMEOUT, settings.MMM_DB_STATEMENT_TIMEOUT = 3, 2.0, 30.0
    assert database.background_bound() == 33.0  # a writer thread's batch: a connect and a statement
    background._loop.active = True
    try:
        assert database.background_bound() == 5.0  # the loop's kept connection may be frozen
    finally:
        background._loop.active = False


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_kept_connection_whose_session_was_killed_is_dropped_before_the_loop_reads():
    """After a server restart or failover the kept connection is dead and the database is not:
    the loop must not count that as an outage."""
    from django.db import connections

    connection.ensure_connection()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        [pid] = cursor.fetchone()
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    finally:
        other.close()
    database.drop_connection_if_dead()
    assert connection.connection is None
    failures = database.breaker.failures
    with database.watching():
        assert Worker.objects.count() == 0  # on a new connection
    assert database.breaker.failures == failures == 0


@pytest.mark.django_db(transaction=True)
def test_a_live_kept_connection_is_kept():
    connection.ensure_connection()
    held = connection.connection
    database.drop_connection_if_dead()
    assert connection.connection is held
