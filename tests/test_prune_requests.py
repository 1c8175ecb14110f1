from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from console.models import ProbeRecord, RequestLog, epoch_minute
from registry.models import Worker

pytestmark = pytest.mark.django_db


def log_row(age: timedelta) -> RequestLog:
    at = timezone.now() - age
    return RequestLog.objects.create(
        created_at=at, minute=epoch_minute(at), model_name="m", status=200, latency_ms=1, latency_class=1
    )


def probe_row(worker: Worker, age: timedelta) -> ProbeRecord:
    at = timezone.now() - age
    return ProbeRecord.objects.create(worker=worker, checked_at=at, minute=epoch_minute(at), ok=True, latency_ms=1)


def test_it_deletes_rows_older_than_the_age_and_keeps_the_rest():
    worker = Worker.objects.create(model_name="m", req_url_template="http://127.0.0.1:1/x", body={"p": "{USER_PROMPT}"})
    old = [log_row(timedelta(days=31)), log_row(timedelta(days=40))]
    kept = log_row(timedelta(days=29))
    probe_row(worker, timedelta(days=31))
    kept_probe = probe_row(worker, timedelta(hours=1))
    out = StringIO()

    call_command("prune_requests", "--older-than", "30d", stdout=out)

    assert list(RequestLog.objects.values_list("pk", flat=True)) == [kept.pk]
    assert list(ProbeRecord.objects.values_list("pk", flat=True)) == [kept_probe.pk]
    assert f"pruned {len(old)} request-log row(s) and 1 probe result(s)" in out.getvalue()


@pytest.mark.parametrize("age", ["30", "0d", "-1d", "30 days", "1w", ""])
def test_it_refuses_an_age_it_cannot_read(age):
    with pytest.raises(CommandError, match="positive whole number"):
        call_command("prune_requests", f"--older-than={age}")
