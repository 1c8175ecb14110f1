"""mmm.bulk_rows: rows built and inserted as Model() and bulk_create would, on either database."""

from datetime import timedelta
from decimal import Decimal

import pytest
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
