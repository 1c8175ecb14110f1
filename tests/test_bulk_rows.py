"""mmm.bulk_rows: rows built and inserted as Model() and bulk_create would, on either database."""

from datetime import timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from console.models import RequestLog, latency_class
from mmm import bulk_rows
from usage.models import UsageRecord


def log_row(**fields):
    values = {
        "created_at": timezone.now(),
        "minute": 1,
        "model_name": "m",
        "status": 200,
        "latency_ms": 5.0,
        "latency_class": latency_class(5.0),
        **fields,
    }
    return bulk_rows.unsaved(RequestLog, **values)


def test_an_unsaved_row_has_the_models_defaults_and_is_an_ordinary_instance():
    row = log_row()
    built = RequestLog(created_at=row.created_at, minute=1, model_name="m", status=200, latency_ms=5.0)
    for field in RequestLog._meta.concrete_fields:
        if field.attname not in ("created_at", "latency_class"):
            assert getattr(row, field.attname) == getattr(built, field.attname), field.attname
    assert row.pk is None and row._state.adding


def test_a_field_the_model_does_not_have_is_refused_by_name():
    with pytest.raises(TypeError, match=r"no field.*colour"):
        bulk_rows.unsaved(RequestLog, model_name="m", colour="red")


def test_inserted_rows_get_their_ids_and_read_back_as_written(db):
    when = timezone.now() - timedelta(minutes=3)
    rows = [log_row(model_name=f"m{index}", created_at=when, worker_id=7, upstream_ms=1.5) for index in range(120)]
    bulk_rows.insert(RequestLog, rows, ignore_conflicts=False, using="default")

    assert all(row.pk is not None for row in rows) and len({row.pk for row in rows}) == 120
    stored = RequestLog.objects.get(pk=rows[42].pk)
    assert (stored.model_name, stored.created_at, stored.worker_id, stored.upstream_ms) == ("m42", when, 7, 1.5)
    assert stored.error == "" and stored.stream is False and stored.attempts == 0


def test_rows_that_have_ids_are_written_with_them_and_skipped_when_already_stored(db):
    first = [log_row(model_name="first")]
    bulk_rows.insert(RequestLog, first, ignore_conflicts=False, using="default")
    again = [*first, log_row(model_name="new")]  # a retried batch: its commit went unheard
    bulk_rows.insert(RequestLog, again, ignore_conflicts=False, using="default")
    assert sorted(RequestLog.objects.values_list("model_name", flat=True)) == ["first", "new"]


def test_ignore_conflicts_skips_a_ledger_row_whose_usage_id_is_stored(db):
    def ledger_row(usage_id, seconds):
        now = timezone.now()
        return bulk_rows.unsaved(
            UsageRecord,
            usage_id=usage_id,
            settled_at=now,
            started_at=now,
            model_name="m",
            video_seconds=Decimal(seconds),
        )

    bulk_rows.insert(UsageRecord, [ledger_row("u1", "1.5")], ignore_conflicts=True, using="default")
    bulk_rows.insert(
        UsageRecord, [ledger_row("u1", "9"), ledger_row("u2", "2.25")], ignore_conflicts=True, using="default"
    )
    stored = dict(UsageRecord.objects.values_list("usage_id", "video_seconds"))
    assert stored == {"u1": Decimal("1.500"), "u2": Decimal("2.250")}


sqlite_only = pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's own statement path")


@sqlite_only
def test_the_sqlite_datetime_text_is_djangos_for_every_kind_of_value():
    from django.db.models import DateTimeField

    ours = bulk_rows._adapter(DateTimeField(), connection)
    djangos = connection.ops.adapt_datetimefield_value
    utc_now = timezone.now()
    elsewhere = utc_now.astimezone(ZoneInfo("Asia/Kolkata"))
    whole_second = utc_now.replace(microsecond=0)  # str() leaves the fraction out
    for value in (utc_now, elsewhere, whole_second):
        assert ours(value) == djangos(value), value
    assert ours(utc_now) == str(utc_now.replace(tzinfo=None))


@sqlite_only
def test_on_sqlite_the_insert_skips_djangos_placeholder_rewrite_unless_django_logs_queries(db, monkeypatch):
    from django.db.backends.sqlite3.base import SQLiteCursorWrapper

    rewritten: list[str] = []
    djangos = SQLiteCursorWrapper.convert_query

    def convert_query(self, query, *args, **kwargs):
        rewritten.append(query)
        return djangos(self, query, *args, **kwargs)

    monkeypatch.setattr(SQLiteCursorWrapper, "convert_query", convert_query)
    ran: list[str] = []
    connection.ensure_connection()
    connection.connection.set_trace_callback(ran.append)
    try:
        rows = [log_row(model_name=f"direct{index}") for index in range(3)]
        bulk_rows.insert(RequestLog, rows, ignore_conflicts=False, using="default")
    finally:
        connection.connection.set_trace_callback(None)
    inserts = [sql for sql in ran if sql.startswith("INSERT")]
    assert len(inserts) == 1 and "'direct2'" in inserts[0]  # (the trace shows the bound values)
    assert not [query for query in rewritten if query.startswith("INSERT")]
    assert all(row.pk is not None for row in rows)

    logged_rows = [log_row(model_name="logged")]
    with CaptureQueriesContext(connection) as queries:
        bulk_rows.insert(RequestLog, logged_rows, ignore_conflicts=False, using="default")
    assert [query["sql"] for query in queries if query["sql"].startswith("INSERT")], "Django's log saw no INSERT"
    assert [query for query in rewritten if query.startswith("INSERT")], "the logged path skipped Django's cursor"
    assert logged_rows[0].pk is not None


@sqlite_only
def test_both_sqlite_paths_store_the_same_columns(db):
    when = timezone.now()
    values = {"created_at": when, "model_name": "same", "worker_id": 3, "upstream_ms": None, "stream": True}
    direct = [log_row(**values)]
    bulk_rows.insert(RequestLog, direct, ignore_conflicts=False, using="default")
    logged = [log_row(**values)]
    with CaptureQueriesContext(connection):
        bulk_rows.insert(RequestLog, logged, ignore_conflicts=False, using="default")

    columns = [field.column for field in RequestLog._meta.concrete_fields if not field.primary_key]
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {', '.join(columns)} FROM console_requestlog WHERE id IN (%s, %s) ORDER BY id",
            [direct[0].pk, logged[0].pk],
        )
        first, second = cursor.fetchall()
    assert first == second
