"""The request log: one row per completion request, written off the request path."""

import time

import pytest
from django.db import IntegrityError, OperationalError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from console import request_log
from console.models import RequestLog, latency_class
from console.request_log import RequestLogWriter, request_log_writer
from registry.models import RoutingPolicy, Worker
from tests.conftest import SEED_ANSWER, seed_registration
from tests.fake_model_apis import OpenAIServer
from tests.fake_upstream import Reply, refused_url
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db

COMPLETIONS = "/api/v1/chat/completions"


def register(api, url, **fields) -> Worker:
    response = api.post("/api/server/register", seed_registration(url, **fields), format="json")
    assert response.status_code == 200, response.json()
    return Worker.objects.get(req_url_template=url)


def complete(api, model_name="proxyllm", **headers):
    return api.post(COMPLETIONS, {"model_name": model_name, "input": "who are you?"}, format="json", headers=headers)


def logged() -> list[RequestLog]:
    request_log_writer.flush()
    return list(RequestLog.objects.order_by("id"))


def test_a_success_is_logged_with_its_worker_latencies_and_request_id(api, upstream):
    worker = register(api, upstream.on("/gen", json=SEED_ANSWER) + "?key=secret-in-query")

    response = complete(api, **{"X-Request-ID": "client-chosen-id.42"})

    assert response.status_code == 200
    assert RequestLog.objects.count() == 0  # queued, not written on the request path
    [row] = logged()
    assert (row.model_name, row.worker_id, row.status, row.error_code, row.attempts, row.stream) == (
        "proxyllm",
        worker.pk,
        200,
        "",
        1,
        False,
    )
    assert row.worker_url == upstream.url("/gen")  # no query string: that is where keys live
    assert row.request_id == "client-chosen-id.42" == response["X-Request-ID"]
    assert row.upstream_ms is not None and 0 < row.upstream_ms <= row.latency_ms
    assert row.latency_class == latency_class(row.latency_ms)
    assert row.minute == int(row.created_at.timestamp() // 60)
    assert (row.prompt, row.answer) == ("", "")  # content is not stored by default
    assert row.prompt_tokens is None


def test_the_request_id_goes_upstream(api, upstream):
    register(api, upstream.on("/gen", json=SEED_ANSWER))

    response = complete(api, **{"X-Request-ID": "trace-7"})

    assert upstream.hits("/gen")[0].headers["X-Request-ID"] == "trace-7"
    assert response["X-Request-ID"] == "trace-7"


@pytest.mark.parametrize("offered", ["", "has space", "x" * 129, "new\nline", "semi;colon"])
def test_an_unacceptable_request_id_is_replaced(api, upstream, offered):
    register(api, upstream.on("/gen", json=SEED_ANSWER))

    response = complete(api, **{"X-Request-ID": offered})

    generated = response["X-Request-ID"]
    assert generated != offered and len(generated) == 32
    assert upstream.hits("/gen")[0].headers["X-Request-ID"] == generated
    assert logged()[0].request_id == generated


def test_an_upstream_failure_is_logged_with_the_worker_and_the_error(api, upstream):
    worker = register(api, upstream.on("/down", status=500, json={"error": "boom"}))

    response = complete(api)

    assert response.status_code == 502
    [row] = logged()
    assert (row.status, row.error_code, row.worker_id, row.attempts) == (502, "upstream_error", worker.pk, 1)
    assert "HTTP 500" in row.error
    assert row.upstream_ms is None


def test_failover_logs_the_attempts_and_the_worker_that_answered(api, upstream):
    RoutingPolicy.objects.create(model_name="proxyllm", strategy="round_robin")
    register(api, refused_url("/gone"))
    good = register(api, upstream.on("/up", json=SEED_ANSWER))

    for _ in range(2):  # the round robin starts with either; one of the two requests fails over
        assert complete(api).status_code == 200

    rows = logged()
    assert {row.worker_id for row in rows} == {good.pk}
    assert sorted(row.attempts for row in rows) == [1, 2]


def test_every_worker_failing_logs_the_last_one_tried_and_all_attempts(api, upstream):
    register(api, refused_url("/a"))
    register(api, refused_url("/b"))

    response = complete(api)

    assert response.status_code == 502
    [row] = logged()
    assert (row.error_code, row.attempts) == ("upstream_unreachable", 2)
    assert row.worker_id in set(Worker.objects.values_list("pk", flat=True))


def test_a_timeout_is_logged_as_504(api, upstream):
    worker = register(api, upstream.on("/slow", Reply(json=SEED_ANSWER, delay=5)), timeout=0.3)

    response = complete(api)

    assert response.status_code == 504
    [row] = logged()
    assert (row.status, row.error_code, row.worker_id) == (504, "upstream_timeout", worker.pk)
    assert row.latency_ms >= 300


def test_an_unknown_model_is_logged_without_a_worker(api):
    response = complete(api, model_name="nobody")

    assert response.status_code == 404
    [row] = logged()
    assert (row.model_name, row.worker_id, row.status, row.error_code, row.attempts) == (
        "nobody",
        None,
        404,
        "model_not_found",
        0,
    )


def test_invalid_input_is_not_a_completion_and_is_not_logged(api):
    assert api.post(COMPLETIONS, {"input": 3}, format="json").status_code == 400
    assert logged() == []


def test_prompts_and_answers_are_stored_only_when_the_setting_says_so(api, upstream, settings):
    settings.MMM_REQUEST_LOG_CONTENT = True
    register(api, upstream.on("/gen", json=SEED_ANSWER))

    complete(api)

    [row] = logged()
    assert (row.prompt, row.answer) == ("who are you?", "I am a fake model.")


def test_a_deleted_worker_leaves_its_url_in_the_log(api, upstream):
    worker = register(api, upstream.on("/gen", json=SEED_ANSWER))
    complete(api)
    request_log_writer.flush()

    worker.delete()

    row = RequestLog.objects.get()
    assert (row.worker_id, row.worker_url) == (None, upstream.url("/gen"))


def row(**fields) -> RequestLog:
    now = timezone.now()
    defaults = {
        "created_at": now,
        "minute": int(now.timestamp() // 60),
        "model_name": "m",
        "status": 200,
        "latency_ms": 5.0,
        "latency_class": latency_class(5.0),
    }
    return RequestLog(**{**defaults, **fields})


def test_a_failed_write_keeps_the_rows_for_the_next_flush():
    writer = RequestLogWriter(background=False)
    broken = row(model_name=None)  # NOT NULL: the database refuses the whole INSERT
    writer.add(row())
    writer.add(broken)

    with pytest.raises(IntegrityError):
        writer.flush()

    assert len(writer) == 2 and RequestLog.objects.count() == 0
    broken.model_name = "fixed"
    assert writer.flush() == 2
    assert RequestLog.objects.count() == 2


def test_rows_whose_commit_went_unheard_are_not_written_twice_nor_block_the_queue():
    writer = RequestLogWriter(background=False)
    written, new = row(model_name="stored"), row(model_name="new")
    writer.add(written)
    writer.flush()
    assert written.pk is not None
    # The connection broke after the commit: the try failed for the writer, which queued the
    # row (with the id the insert gave it) for the next flush, beside a new one.
    writer.add(written)
    writer.add(new)

    assert writer.flush() == 2
    assert sorted(RequestLog.objects.values_list("model_name", flat=True)) == ["new", "stored"]


def test_a_full_queue_drops_new_rows_and_counts_them():
    writer = RequestLogWriter(max_queue=2, background=False)
    for index in range(5):
        writer.add(row(model_name=f"m{index}"))

    assert len(writer) == 2
    assert writer.dropped == 3
    assert writer.flush() == 2
    assert list(RequestLog.objects.order_by("id").values_list("model_name", flat=True)) == ["m0", "m1"]


def test_rows_are_written_in_batches_of_the_configured_size():
    writer = RequestLogWriter(batch_size=2, background=False)
    for _ in range(5):
        writer.add(row())

    with CaptureQueriesContext(connection) as queries:
        assert writer.flush() == 5

    inserts = [query["sql"] for query in queries if query["sql"].startswith("INSERT")]
    assert len(inserts) == 3  # 2 + 2 + 1
    assert RequestLog.objects.count() == 5


def test_the_background_flusher_writes_within_its_interval(transactional_db):
    writer = RequestLogWriter(flush_seconds=0.05, background=True)
    try:
        writer.add(row(model_name="from-the-flusher"))

        def written() -> bool:
            try:
                return RequestLog.objects.filter(model_name="from-the-flusher").exists()
            except OperationalError:  # SQLite's shared cache: the flusher holds the table right now
                return False

        wait_until(written, timeout=10, what="the background flusher to write the row")
        assert RequestLog.objects.filter(model_name="from-the-flusher").count() == 1
    finally:
        writer.close()


def test_close_writes_what_is_still_queued(transactional_db):
    writer = RequestLogWriter(flush_seconds=3600, background=True)  # the flusher would wait an hour
    for _ in range(3):
        writer.add(row(model_name="at-shutdown"))

    writer.close()

    assert RequestLog.objects.filter(model_name="at-shutdown").count() == 3


def register_openai(api, base_url: str) -> Worker:
    registration = {"model_name": "gpt", "preset": "openai", "base_url": base_url, "upstream_model": "up-model"}
    response = api.post("/api/server/register", registration, format="json")
    assert response.status_code == 200, response.json()
    return Worker.objects.get(model_name="gpt")


def chat(api, *, stream: bool, **headers):
    body = {"model": "gpt", "messages": [{"role": "user", "content": "Hi there"}], "stream": stream}
    return api.post("/v1/chat/completions", body, format="json", headers=headers)


def test_a_v1_chat_completion_is_logged_with_the_token_usage_the_upstream_reported(api, upstream, make_key):
    worker = register_openai(api, OpenAIServer().install(upstream))
    key = make_key("inference")

    response = chat(api, stream=False, Authorization=f"Bearer {key}")

    assert response.status_code == 200
    [row] = logged()
    assert (row.model_name, row.worker_id, row.status, row.stream, row.attempts) == ("gpt", worker.pk, 200, False, 1)
    assert (row.prompt_tokens, row.completion_tokens, row.total_tokens) == (
        response.json()["usage"]["prompt_tokens"],
        response.json()["usage"]["completion_tokens"],
        response.json()["usage"]["total_tokens"],
    )
    assert row.client_key_prefix and key.startswith(f"mmm_{row.client_key_prefix}")


def test_a_v1_stream_is_logged_once_it_has_been_relayed(api, upstream):
    worker = register_openai(api, OpenAIServer().install(upstream))

    response = chat(api, stream=True)
    relayed = b"".join(response.streaming_content)  # at its end the test client closes the response

    assert relayed.endswith(b"data: [DONE]\n\n")
    [row] = logged()
    assert (row.model_name, row.worker_id, row.status, row.stream) == ("gpt", worker.pk, 200, True)


def test_a_row_whose_worker_went_offline_while_it_was_queued_is_still_written(api, upstream):
    url = upstream.on("/gen", json=SEED_ANSWER)
    register(api, url)
    assert complete(api).status_code == 200
    offline = api.post("/api/server/offline", {"model_name": "proxyllm", "req_url_template": url}, format="json")
    assert offline.status_code == 200  # before the flusher ran
    assert complete(api).status_code == 404

    rows = logged()

    assert [row.status for row in rows] == [200, 404]
    assert rows[0].worker_url.endswith("/gen")


def test_a_v1_stream_cut_off_by_its_upstream_is_logged_as_a_502(api, upstream):
    register_openai(api, OpenAIServer(cut_after=2).install(upstream))

    response = chat(api, stream=True)
    relayed = b"".join(response.streaming_content)

    assert response.status_code == 200 and b"stream_interrupted" in relayed
    [row] = logged()
    assert (row.status, row.error_code, row.stream) == (502, "stream_interrupted", True)


def test_requests_refused_before_the_view_are_logged_with_their_key_prefix(api, require_auth, make_key):
    revoked = make_key("inference")
    from accounts.models import ApiKey

    ApiKey.objects.update(revoked=True)
    assert api.post(COMPLETIONS, {"model_name": "proxyllm", "input": "hi"}, format="json").status_code == 401
    assert (
        api.post(
            COMPLETIONS,
            {"model_name": "proxyllm", "input": "hi"},
            format="json",
            HTTP_AUTHORIZATION=f"Bearer {revoked}",
        ).status_code
        == 401
    )

    rows = sorted(logged(), key=lambda row: row.client_key_prefix)
    assert [(row.status, row.error_code, row.client_key_prefix, row.model_name) for row in rows] == [
        (401, "not_authenticated", "", "proxyllm"),
        (401, "authentication_failed", revoked.split("_")[1], "proxyllm"),
    ]


def test_the_flushers_passes_keep_their_connection_while_writes_succeed_and_drop_it_when_one_fails(transactional_db):
    # Django never closes an in-memory SQLite database (the test database on SQLite): there the
    # closes below are no-ops, and the test says something on PostgreSQL (CI runs it there).
    closes = not (connection.vendor == "sqlite" and connection.is_in_memory_db())
    writer = RequestLogWriter(batch_size=10, background=False)
    writer.add(row())
    assert writer.flush(keep_connection=True) == 1
    assert connection.connection is not None  # kept for the next pass
    writer.add(row())
    assert writer.flush() == 1
    assert connection.connection is None or not closes  # a caller's flush leaves nothing open

    writer.add(row(model_name=None))  # NOT NULL: the write fails
    with pytest.raises(IntegrityError):
        writer.flush(keep_connection=True)
    assert connection.connection is None or not closes  # a connection that failed is not kept
    assert len(writer) == 1


def test_a_paced_flush_pauses_between_every_two_statements_and_writes_every_row():
    # 150 rows in batches of 100 (two transactions), each batch in as many statements as the
    # backend's parameter limit needs: a pause after every statement but the last, within a
    # batch and between the two.
    writer = RequestLogWriter(batch_size=100, background=False)
    for number in range(150):
        writer.add(row(model_name=f"paced-{number}"))
    pauses = []

    with CaptureQueriesContext(connection) as queries:

        def inserts_so_far() -> int:
            return sum(query["sql"].startswith("INSERT") for query in queries.captured_queries)

        written = writer.flush(pause=lambda: pauses.append(inserts_so_far()))

    assert written == 150
    assert RequestLog.objects.filter(model_name__startswith="paced-").count() == 150
    statements = inserts_so_far()
    assert statements >= 2
    assert pauses == list(range(1, statements))


def test_the_gil_pacer_sleeps_for_the_cpu_its_thread_spent_and_never_past_the_cap(monkeypatch):
    slept = []
    monkeypatch.setattr(request_log, "_native_sleep", slept.append)
    pacer = request_log.GilPacer()

    def burn(seconds: float) -> None:
        start = time.thread_time()
        while time.thread_time() - start < seconds:
            pass

    burn(0.002)
    pacer()
    burn(request_log.MOST_PAUSE_SECONDS * 3)
    pacer()

    assert 0.002 <= slept[0] < request_log.MOST_PAUSE_SECONDS
    assert slept[1] == request_log.MOST_PAUSE_SECONDS
