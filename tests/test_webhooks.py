"""Webhooks to client keys: endpoints, the outbox, and its delivery to a real receiver on a
loopback port, each signature checked with the standardwebhooks package as a receiver would."""

import json
import logging
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from threading import Barrier

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from standardwebhooks import Webhook

from accounts.models import ApiKey
from accounts.services import api_key_create
from inference import egress
from tests.fake_upstream import FakeUpstream, Reply, Seen, refused_url
from tests.waiting import wait_until
from webhooks import delivery as webhook_delivery
from webhooks.delivery import deliver_due
from webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from webhooks.services import enqueue_event, webhook_endpoint_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def receiver():
    """A webhook receiver on a loopback port: answers 204 unless a test sets ``/hook``."""
    server = FakeUpstream().start()
    server.on("/hook", status=204, text="")
    yield server
    server.stop()


@pytest.fixture
def key() -> ApiKey:
    return api_key_create(name="video app", scopes=["inference"])[0]


@pytest.fixture
def fast_retries(settings):
    settings.MMM_WEBHOOK_BACKOFF_SECONDS = 10.0
    settings.MMM_WEBHOOK_BACKOFF_MAX_SECONDS = 3600.0
    settings.MMM_WEBHOOK_MAX_ATTEMPTS = 4
    settings.MMM_WEBHOOK_TIMEOUT = 2.0


def completed(key: ApiKey, job_id: str = "video_1", **more) -> None:
    enqueue_event(
        api_key_id=key.pk,
        event_type="video.completed",
        data={"id": job_id, "object": "video", "status": "completed", **more},
        idempotency_key=f"video.completed:{job_id}",
    )


def posts(receiver: FakeUpstream) -> list[Seen]:
    return [seen for seen in receiver.hits("/hook") if seen.method == "POST"]


def test_an_event_reaches_the_keys_endpoint_signed_per_standard_webhooks(receiver, key):
    endpoint, secret = webhook_endpoint_create(api_key=key, url=receiver.url("/hook"))
    completed(key, "video_abc", model="sora-2")

    assert deliver_due(limit=10) == 1

    [seen] = posts(receiver)
    payload = Webhook(secret).verify(seen.body, seen.headers)
    assert payload["type"] == "video.completed" and payload["timestamp"].endswith("Z")
    assert payload["data"] == {"id": "video_abc", "object": "video", "status": "completed", "model": "sora-2"}
    assert seen.headers["Content-Type"] == "application/json"
    delivery = WebhookDelivery.objects.get()
    assert seen.headers["webhook-id"] == delivery.event_id
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (DeliveryStatus.DELIVERED, 1, 204)
    assert delivery.delivered_at is not None
    with pytest.raises(Exception, match="signature"):
        Webhook(webhook_endpoint_create(api_key=key, url=receiver.url("/hook"))[1]).verify(seen.body, seen.headers)


def test_the_signing_secret_is_stored_encrypted(key, receiver):
    endpoint, secret = webhook_endpoint_create(api_key=key, url=receiver.url("/hook?token=tok-123456"))
    with connection.cursor() as cursor:
        cursor.execute("select secret, url from webhooks_webhookendpoint where id = %s", [endpoint.pk])
        stored_secret, stored_url = cursor.fetchone()
    assert secret.startswith("whsec_") and secret not in stored_secret
    assert "tok-123456" not in stored_url
    assert WebhookEndpoint.objects.get().secret == secret


def test_rotate_secrets_re_encrypts_webhook_secrets_and_urls(key, receiver, settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.MMM_SECRET_KEYS = [old]
    url = receiver.url("/hook?token=tok-rotate")
    _, secret = webhook_endpoint_create(api_key=key, url=url)
    settings.MMM_SECRET_KEYS = [new, old]
    call_command("rotate_secrets")
    settings.MMM_SECRET_KEYS = [new]
    endpoint = WebhookEndpoint.objects.get()
    assert (endpoint.secret, endpoint.url) == (secret, url)


def test_the_same_idempotency_key_is_delivered_once(receiver, key):
    webhook_endpoint_create(api_key=key, url=receiver.url("/hook"))
    completed(key)
    completed(key)
    assert deliver_due(limit=10) == 1
    completed(key)  # after delivery too
    assert deliver_due(limit=10) == 0
    assert len(posts(receiver)) == 1 and WebhookDelivery.objects.count() == 1


def test_one_event_to_two_endpoints_carries_one_webhook_id(receiver, key):
    webhook_endpoint_create(api_key=key, url=receiver.url("/hook"))
    webhook_endpoint_create(api_key=key, url=receiver.url("/hook"), description="backup")
    completed(key)
    assert deliver_due(limit=10) == 2
    assert len({seen.headers["webhook-id"] for seen in posts(receiver)}) == 1


def test_an_endpoint_gets_only_the_events_it_asked_for_and_only_its_own_keys(receiver, key):
    other = api_key_create(name="other app", scopes=["inference"])[0]
    webhook_endpoint_create(api_key=key, url=receiver.url("/hook"), event_types=["video.failed", "image.*"])
    webhook_endpoint_create(api_key=other, url=receiver.url("/hook"))
    disabled, _ = webhook_endpoint_create(api_key=key, url=receiver.url("/hook"))
    WebhookEndpoint.objects.filter(pk=disabled.pk).update(enabled=False)

    completed(key)  # video.completed: not asked for
    enqueue_event(api_key_id=key.pk, event_type="image.completed", data={"id": "img_1"}, idempotency_key="i1")
    enqueue_event(api_key_id=key.pk, event_type="video.failed", data={"id": "v2"}, idempotency_key="v2")
    deliver_due(limit=10)

    assert sorted(json.loads(seen.body)["type"] for seen in posts(receiver)) == ["image.completed", "video.failed"]


def test_an_event_enqueued_in_a_transaction_that_rolls_back_is_never_sent(receiver, key):
    webhook_endpoint_create(api_key=key, url=receiver.url("/hook"))
    with pytest.raises(RuntimeError), transaction.atomic():
        completed(key)
        raise RuntimeError("the job's own update failed")
    assert deliver_due(limit=10) == 0 and not WebhookDelivery.objects.exists()


def test_a_500_is_tried_again_after_a_doubling_wait_until_it_is_delivered(receiver, key, fast_retries):
    answers = iter([Reply(status=500, text="database down"), Reply(status=503, text="busy"), Reply(status=200)])
    receiver.on("/hook", lambda seen: next(answers))
    _, secret = webhook_endpoint_create(api_key=key, url=receiver.url("/hook"))
    completed(key)
    start = timezone.now()

    assert deliver_due(limit=10, now=start) == 1
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, 500)
    assert delivery.last_error == "the receiver answered 500: database down"
    assert delivery.next_attempt_at == start + timedelta(seconds=10)
    assert deliver_due(limit=10, now=start + timedelta(seconds=9)) == 0  # not due yet

    second = start + timedelta(seconds=10)
    assert deliver_due(limit=10, now=second) == 1
    delivery.refresh_from_db()
    assert delivery.attempts == 2 and delivery.next_attempt_at == second + timedelta(seconds=20)

    assert deliver_due(limit=10, now=second + timedelta(seconds=20)) == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("delivered", 3, "")
    bodies = [seen.body for seen in posts(receiver)]
    assert len(bodies) == 3 and len(set(bodies)) == 1  # every attempt sends the same message
    assert len({seen.headers["webhook-id"] for seen in posts(receiver)}) == 1
    for seen in posts(receiver):
        Webhook(secret).verify(seen.body, seen.headers)


def test_a_delivery_is_given_up_after_the_last_attempt(receiver, key, fast_retries):
    receiver.on("/hook", status=500, text="no")
    webhook_endpoint_create(api_key=key, url=receiver.url("/hook"))
    completed(key)
    now = timezone.now()
    for _ in range(4):
        assert deliver_due(limit=10, now=now) == 1
        now += timedelta(hours=2)
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("failed", 4)
    assert delivery.last_error == "gave up after 4 attempt(s); last: the receiver answered 500: no"
    assert deliver_due(limit=10, now=now + timedelta(days=1)) == 0


def test_the_wait_doubles_up_to_its_limit(settings):
    settings.MMM_WEBHOOK_BACKOFF_SECONDS = 30.0
    settings.MMM_WEBHOOK_BACKOFF_MAX_SECONDS = 100.0
    assert [webhook_delivery.backoff_seconds(n) for n in range(1, 5)] == [30.0, 60.0, 100.0, 100.0]


def test_a_receiver_that_does_not_answer_in_time_is_a_failed_attempt(receiver, key, fast_retries):
    receiver.on("/hook", status=200, delay=30)
    webhook_endpoint_create(api_key=key, url=receiver.url("/hook"))
    completed(key)
    assert deliver_due(limit=10) == 1
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == "pending" and delivery.last_error == "no answer within 2 s"


def test_a_refused_connection_is_a_failed_attempt(key, fast_retries):
    webhook_endpoint_create(api_key=key, url=refused_url("/hook"))
    completed(key)
    deliver_due(limit=10)
    assert WebhookDelivery.objects.get().last_error == "connection refused"


@pytest.mark.parametrize(
    "url", ["http://169.254.169.254/latest/meta-data/", "http://[fd00:ec2::254]/hook", "http://0.0.0.0:8080/hook"]
)
def test_a_metadata_url_is_refused_at_registration(key, url):
    with pytest.raises(ValidationError) as refused:
        webhook_endpoint_create(api_key=key, url=url)
    [message] = refused.value.message_dict["url"]
    assert message.startswith("refused by the egress policy: host ")
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize("url", ["ftp://example.com/hook", "hook", "http:///hook"])
def test_a_url_that_is_not_http_is_refused(key, url):
    with pytest.raises(ValidationError, match="http"):
        webhook_endpoint_create(api_key=key, url=url)


def test_a_name_that_resolves_to_a_metadata_address_at_send_time_is_refused_and_not_retried(key, receiver, monkeypatch):
    answers = {"hooks.example.test": "127.0.0.1"}

    def resolve(host, port):
        return [(2, 1, 6, "", (answers.get(host, host), port))]

    monkeypatch.setattr(egress, "getaddrinfo", resolve)
    webhook_endpoint_create(api_key=key, url=f"http://hooks.example.test:{receiver.port}/hook")
    completed(key)
    answers["hooks.example.test"] = "169.254.169.254"  # the DNS answer changed after registration

    assert deliver_due(limit=10) == 1
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == "failed" and "cloud metadata address" in delivery.last_error
    assert "169.254.169.254" in delivery.last_error and not posts(receiver)


def test_a_claimed_delivery_waits_for_its_lease_and_an_expired_lease_is_taken_over(receiver, key, settings):
    webhook_endpoint_create(api_key=key, url=receiver.url("/hook"))
    completed(key)
    now = timezone.now()
    [held] = webhook_delivery.claim_due(limit=10, now=now)  # a sender that then died
    assert webhook_delivery.claim_due(limit=10, now=now) == []

    assert deliver_due(limit=10, now=now) == 0
    later = now + timedelta(seconds=settings.MMM_WEBHOOK_TIMEOUT + webhook_delivery.LEASE_MARGIN_SECONDS + 1)
    assert deliver_due(limit=10, now=later) == 1
    assert WebhookDelivery.objects.get().status == "delivered"

    assert not webhook_delivery._renew(held, now=later)  # a sender late in its batch skips it
    webhook_delivery._record(held, now=later, status="pending", error="late")  # the dead sender wakes up
    assert WebhookDelivery.objects.get().status == "delivered"  # its lease is gone: nothing changes


def test_no_secret_appears_in_errors_logs_or_admin_pages(receiver, key, fast_retries, caplog, admin_client):
    token = "tok-5ecret-in-query"
    # The receiver echoes the URL it was called with, token and all, in its error body.
    receiver.on("/hook", lambda seen: Reply(status=500, text=f"failed for {seen.path}"))
    endpoint, secret = webhook_endpoint_create(api_key=key, url=receiver.url(f"/hook?token={token}"))
    completed(key)
    with caplog.at_level(logging.DEBUG):
        deliver_due(limit=10)
        call_command("deliver_webhooks")
    delivery = WebhookDelivery.objects.get()
    assert delivery.last_status_code == 500 and "failed for /hook" in delivery.last_error
    assert token not in delivery.last_error
    pages = [
        admin_client.get("/admin/webhooks/webhookendpoint/").content,
        admin_client.get(f"/admin/webhooks/webhookendpoint/{endpoint.pk}/change/").content,
        admin_client.get("/admin/webhooks/webhookdelivery/").content,
        admin_client.get(f"/admin/webhooks/webhookdelivery/{delivery.pk}/change/").content,
    ]
    for text in [caplog.text, str(endpoint), *(page.decode() for page in pages)]:
        assert secret not in text and secret[6:] not in text
        assert token not in text
    assert b"/hook?token=" in pages[1]  # the URL is there, its token masked


def test_the_admin_shows_a_new_endpoints_secret_once_and_keeps_a_masked_token_on_edit(receiver, key, admin_client):
    url = receiver.url("/hook?token=tok-abcdef")
    response = admin_client.post(
        "/admin/webhooks/webhookendpoint/add/",
        {"api_key": key.pk, "url": url, "event_types": "video.completed, image.*", "enabled": "on"},
    )
    assert response.status_code == 200
    secret = response.context["secret"]
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.secret == secret and endpoint.event_types == ["video.completed", "image.*"]
    assert secret in response.content.decode() and response["Cache-Control"].startswith("no-store")

    change = admin_client.get(f"/admin/webhooks/webhookendpoint/{endpoint.pk}/change/").content.decode()
    assert secret not in change and "tok-abcdef" not in change
    masked = next(line for line in change.splitlines() if 'name="url"' in line)
    shown = masked.split('value="')[1].split('"')[0].replace("&amp;", "&")
    saved = admin_client.post(
        f"/admin/webhooks/webhookendpoint/{endpoint.pk}/change/",
        {"api_key": key.pk, "url": shown, "event_types": "", "description": "edited", "enabled": "on"},
    )
    assert saved.status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.url == url and endpoint.secret == secret and endpoint.description == "edited"


def test_the_admin_refuses_a_metadata_webhook_url(key, admin_client):
    response = admin_client.post(
        "/admin/webhooks/webhookendpoint/add/",
        {"api_key": key.pk, "url": "http://169.254.169.254/hook", "event_types": "", "enabled": "on"},
    )
    assert response.status_code == 200 and "cloud metadata address" in response.content.decode()
    assert not WebhookEndpoint.objects.exists()


def test_the_admin_sends_a_given_up_delivery_again(receiver, key, admin_client, fast_retries, settings):
    settings.MMM_WEBHOOK_MAX_ATTEMPTS = 1
    receiver.on("/hook", status=500)
    webhook_endpoint_create(api_key=key, url=receiver.url("/hook"))
    completed(key)
    deliver_due(limit=10)
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == "failed"
    admin_client.post("/admin/webhooks/webhookdelivery/", {"action": "send_again", "_selected_action": [delivery.pk]})
    receiver.on("/hook", status=200)
    assert deliver_due(limit=10) == 1
    assert WebhookDelivery.objects.get().status == "delivered"


def test_create_api_key_with_a_webhook_url_prints_its_secret_and_the_key_last(receiver, capsys):
    call_command(
        "create_api_key",
        "--name",
        "app",
        "--scope",
        "inference",
        "--webhook-url",
        receiver.url("/hook"),
        "--webhook-events",
        "video.*",
    )
    output = capsys.readouterr().out.splitlines()
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.api_key == ApiKey.objects.get() and endpoint.event_types == ["video.*"]
    assert output[-1].startswith(f"mmm_{ApiKey.objects.get().prefix}_")  # the key itself, alone on the last line
    assert any(line.endswith(endpoint.secret) for line in output[:-1])


def test_create_api_key_refuses_a_metadata_webhook_url_and_creates_no_key(capsys):
    with pytest.raises(CommandError, match="egress policy"):
        call_command(
            "create_api_key", "--name", "app", "--scope", "inference", "--webhook-url", "http://169.254.169.254/"
        )
    assert not ApiKey.objects.exists()


def test_deliver_webhooks_sends_what_is_due_and_says_so(receiver, key, capsys):
    webhook_endpoint_create(api_key=key, url=receiver.url("/hook"))
    completed(key, "v1")
    completed(key, "v2")
    call_command("deliver_webhooks")
    assert capsys.readouterr().out.strip().startswith("attempted 2 webhook deliveries; 0 pending (0 due), 0 given up")
    call_command("deliver_webhooks", "--json")
    assert json.loads(capsys.readouterr().out)["attempted"] == 0
    assert len(posts(receiver)) == 2


def test_a_pass_with_nothing_due_only_reads(receiver, key):
    # A looping sender makes a pass a second; with nothing due, none of them may take the
    # database's write lock (on SQLite the one the request log's writer needs).
    webhook_endpoint_create(api_key=key, url=receiver.url("/hook"))
    completed(key, "v1")
    WebhookDelivery.objects.update(next_attempt_at=timezone.now() + timedelta(hours=1))  # pending, not due
    with CaptureQueriesContext(connection) as seen:
        assert deliver_due(limit=10) == 0
    statements = [query["sql"].split(None, 1)[0].upper() for query in seen.captured_queries]
    assert statements == ["SELECT"], seen.captured_queries
    with CaptureQueriesContext(connection) as seen:
        call_command("deliver_webhooks", "--json")  # the whole pass: its counts are its only query
    assert len(seen.captured_queries) == 1, seen.captured_queries
    WebhookDelivery.objects.update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    assert deliver_due(limit=10) == 1 and len(posts(receiver)) == 1


def summary_of_a_pass(capsys, *args: str) -> tuple[int, int, int, int]:
    call_command("deliver_webhooks", "--json", *args)
    summary = json.loads(capsys.readouterr().out)
    return summary["attempted"], summary["pending"], summary["due"], summary["failed"]


def test_the_pass_summary_counts_pending_due_and_failed(receiver, key, capsys):
    webhook_endpoint_create(api_key=key, url=receiver.url("/hook"))
    for job_id in ("v1", "v2", "v3", "v4"):
        completed(key, job_id)
    v1, v2, v3, v4 = WebhookDelivery.objects.order_by("id")
    later, earlier = timezone.now() + timedelta(hours=1), timezone.now() - timedelta(seconds=1)
    WebhookDelivery.objects.filter(pk=v1.pk).update(status=DeliveryStatus.FAILED)
    WebhookDelivery.objects.filter(pk__in=[v2.pk, v4.pk]).update(next_attempt_at=later)  # pending, not due
    # Pending and due but leased to another sender: neither attempted nor counted as due.
    WebhookDelivery.objects.filter(pk=v3.pk).update(lease_token="other", lease_expires_at=later)
    assert summary_of_a_pass(capsys) == (0, 3, 0, 1)  # attempted, pending, due, failed
    WebhookDelivery.objects.filter(pk__in=[v2.pk, v4.pk]).update(next_attempt_at=earlier)
    # One of the two due is sent (and delivered); the other is still pending and due.
    assert summary_of_a_pass(capsys, "--limit", "1") == (1, 2, 1, 1)
    assert len(posts(receiver)) == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_several_senders_at_once_post_each_delivery_exactly_once(receiver):
    key = api_key_create(name="busy app", scopes=["inference"])[0]
    webhook_endpoint_create(api_key=key, url=receiver.url("/hook"))
    for index in range(40):
        completed(key, f"video_{index}")
    senders = 6
    barrier = Barrier(senders)

    def send(_):
        barrier.wait(timeout=30)
        try:
            return deliver_due(limit=100)
        finally:
            connection.close()

    with ThreadPoolExecutor(senders) as pool:
        attempted = list(pool.map(send, range(senders)))

    ids = [seen.headers["webhook-id"] for seen in posts(receiver)]
    assert sum(attempted) == 40 and len(ids) == 40 and len(set(ids)) == 40
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"delivered"}


@pytest.mark.django_db(transaction=True)
def test_the_loop_sends_what_is_enqueued_and_stops_cleanly_on_sigterm(receiver, tmp_path):
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "MMM_VAR_DIR": str(tmp_path)}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=root, env=env, check=True)
    enqueue = (
        "from accounts.services import api_key_create; from webhooks.services import *; "
        "key = api_key_create(name='k', scopes=['inference'])[0]; "
        f"webhook_endpoint_create(api_key=key, url={receiver.url('/hook')!r}); "
        "enqueue_event(api_key_id=key.pk, event_type='video.completed', data={'id': 'v'}, idempotency_key='v')"
    )
    subprocess.run([sys.executable, "manage.py", "shell", "-c", enqueue], cwd=root, env=env, check=True)
    process = subprocess.Popen(
        [sys.executable, "-u", "manage.py", "deliver_webhooks", "--loop", "--interval", "0.2"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: posts(receiver), timeout=60, what="the looping sender to post the webhook")
        assert process.stdout.readline().startswith("attempted 1 webhook delivery; 0 pending")
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
        assert process.returncode == 0
    finally:
        process.kill()
