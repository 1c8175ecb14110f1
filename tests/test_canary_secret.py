"""A canary secret in a worker's headers and URL query string reaches the upstream and nothing
else: no answer, error body, stored error, log line or plain database column, on every path."""

import json
import logging

import pytest
from django.core.management import call_command
from django.db import connection

from tests.conftest import seed_registration
from tests.fake_upstream import Reply, refused_url

pytestmark = pytest.mark.django_db

HEADER_CANARY = "sk-hdr-canary-" + "Zx9" * 12
QUERY_CANARY = "qry-canary-" + "Pw4" * 12


def echo(status: int, delay: float = 0.0):
    """An upstream that quotes back everything it was sent, as real ones do in their errors."""

    def answer(seen):
        quoted = {"path": seen.path, "headers": seen.headers, "body": seen.body.decode()}
        if status == 200:
            return Reply(json={"answer": "fine"}, delay=delay)
        return Reply(status=status, json={"error": f"bad request: {json.dumps(quoted)}"}, delay=delay)

    return answer


def probe() -> None:
    try:
        call_command("probe_workers")
    except SystemExit:  # 1 when a worker failed its probe
        pass


def database_dump() -> str:
    chunks = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f'SELECT * FROM "{table}"')
            chunks.append(repr(cursor.fetchall()))
    return "\n".join(chunks)


@pytest.mark.parametrize(
    "path_kind, status, expected",
    [("success", 200, 200), ("4xx", 401, 502), ("5xx", 500, 502), ("timeout", 200, 504), ("refused", None, 502)],
)
def test_the_canary_goes_upstream_and_nowhere_else(api, upstream, caplog, capsys, path_kind, status, expected):
    caplog.set_level(logging.DEBUG)
    if path_kind == "refused":
        base = refused_url("/gen")
    else:
        base = upstream.on("/gen", echo(status, delay=2.0 if path_kind == "timeout" else 0.0))
    url = f"{base}?key={QUERY_CANARY}&prompt={{USER_PROMPT}}"
    registration = seed_registration(
        url, headers={"Authorization": f"Bearer {HEADER_CANARY}", "X-Api-Key": HEADER_CANARY},
        response_extract="answer", timeout=0.5,
    )

    answers = [
        api.post("/api/server/register", registration, format="json"),
        api.post("/api/v1/chat/completions", {"model_name": "proxyllm", "input": "hi"}, format="json"),
        api.get("/api/server/workers"),
        api.post("/api/server/offline", {"model_name": "nope", "req_url_template": url}, format="json"),
    ]
    for _ in range(2):  # the second probe of a healthy worker passes again
        probe()
    printed = capsys.readouterr()

    assert answers[1].status_code == expected, answers[1].json()
    if path_kind != "refused":
        sent = upstream.hits("/gen")[0]
        assert sent.headers["Authorization"] == f"Bearer {HEADER_CANARY}"
        assert f"key={QUERY_CANARY}" in sent.path
    seen_by_people = [
        *(answer.content.decode() for answer in answers),
        printed.out, printed.err,
        *(record.getMessage() + (record.exc_text or "") for record in caplog.records),
        caplog.text,
    ]
    for canary in (HEADER_CANARY, QUERY_CANARY):
        for text in seen_by_people:
            assert canary not in text
            assert canary[:16] not in text  # nor a cut-off start of it
    dump = database_dump()
    assert HEADER_CANARY[:16] not in dump and QUERY_CANARY[:16] not in dump
