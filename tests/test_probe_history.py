import pytest
from django.core.management import call_command

from console.models import ProbeRecord
from registry.models import Worker
from tests.conftest import SEED_ANSWER
from tests.fake_upstream import refused_url

pytestmark = pytest.mark.django_db


def make_worker(url: str) -> Worker:
    return Worker.objects.create(model_name="m", req_url_template=url, body={"input": "{USER_PROMPT}"})


def test_every_probe_leaves_a_row_in_the_history(upstream):
    up = make_worker(upstream.on("/up", json=SEED_ANSWER))
    down = make_worker(refused_url("/down"))

    for _ in range(2):
        with pytest.raises(SystemExit):
            call_command("probe_workers")

    history = {worker_id: [] for worker_id in (up.pk, down.pk)}
    for record in ProbeRecord.objects.order_by("checked_at"):
        history[record.worker_id].append((record.ok, record.error))
    assert history[up.pk] == [(True, ""), (True, "")]
    assert [ok for ok, _ in history[down.pk]] == [False, False]
    assert all("connection refused" in error for _, error in history[down.pk])
