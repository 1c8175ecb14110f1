"""mmm.gunicorn_response: the same bytes as gunicorn's own writer, in fewer sends.

Each case is written twice, once by gunicorn's Response and once by CoalescingResponse, each to a
socket that records its sends: the bytes on the wire must be identical (Date aside, set equal
here), and the head must travel with the first body item wherever one follows.
"""

import time

import pytest
from gunicorn import util
from gunicorn.config import Config
from gunicorn.http import wsgi

from mmm import gunicorn_response
from mmm.gunicorn_response import COALESCE_MAX_BYTES, CoalescingResponse


class Request:
    def __init__(self, method="POST", version=(1, 1)):
        self.method = method
        self.version = version

    def should_close(self):
        return False


class RecordingSocket:
    def __init__(self):
        self.sends: list[bytes] = []

    def sendall(self, data):
        self.sends.append(bytes(data))

    def send(self, data):  # takes it whole, as a socket with room in its buffer does
        self.sends.append(bytes(data))
        return len(data)

    def sendfile(self, file, offset=0, count=None):
        file.seek(offset)
        self.sends.append(file.read(count))


@pytest.fixture(autouse=True)
def fixed_date(monkeypatch):
    monkeypatch.setattr(util, "http_date", lambda *_: "Tue, 01 Dec 2026 00:00:00 GMT")


def written(response_class, *, status="200 OK", headers=(), items=(), method="POST", version=(1, 1), file=None):
    sock = RecordingSocket()
    response = response_class(Request(method, version), sock, Config())
    response.start_response(status, list(headers))
    if file is not None:
        assert response.sendfile(wsgi.FileWrapper(file)) is True
    for item in items:
        response.write(item)
    response.close()
    return sock.sends


def both(**case):
    plain = written(wsgi.Response, **case)
    coalesced = written(CoalescingResponse, **case)
    assert b"".join(coalesced) == b"".join(plain), "the bytes on the wire differ from gunicorn's"
    return plain, coalesced


def test_a_whole_json_answer_is_one_send_instead_of_two():
    plain, coalesced = both(
        headers=[("Content-Type", "application/json"), ("Content-Length", "11")], items=[b'{"ok":true}']
    )

    assert len(plain) == 2
    assert len(coalesced) == 1 and coalesced[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert coalesced[0].endswith(b'\r\n\r\n{"ok":true}')


def test_a_stream_sends_its_head_with_the_first_chunk_and_the_rest_as_gunicorn_does():
    items = [b"data: 1\n\n", b"data: 2\n\n", b"data: [DONE]\n\n"]
    plain, coalesced = both(headers=[("Content-Type", "text/event-stream")], items=items)

    assert b"Transfer-Encoding: chunked" in coalesced[0]
    assert coalesced[0].endswith(b"\r\n\r\n9\r\ndata: 1\n\n\r\n")
    assert coalesced[1:] == plain[2:]  # later chunks and the last, empty one: unchanged


def test_a_large_first_item_is_sent_after_the_head_without_being_copied_into_it():
    body = b"x" * (COALESCE_MAX_BYTES + 1)
    plain, coalesced = both(headers=[("Content-Length", str(len(body)))], items=[body])

    assert coalesced == plain and coalesced[1] == body


@pytest.mark.parametrize(
    ("status", "method", "items"),
    [
        ("200 OK", "HEAD", [b"ignored"]),  # no body on the wire
        ("204 No Content", "POST", []),
        ("304 Not Modified", "GET", [b""]),
        ("200 OK", "POST", []),  # an empty iterable: close() sends the head
    ],
)
def test_a_head_without_a_body_to_follow_is_sent_alone_as_before(status, method, items):
    plain, coalesced = both(status=status, method=method, items=items, headers=[("Content-Length", "0")])

    assert coalesced == plain


def test_an_empty_first_chunk_does_not_hold_the_head_back():
    # gunicorn writes nothing for an empty chunk (it would end the body); the head goes at once.
    sock = RecordingSocket()
    response = CoalescingResponse(Request(), sock, Config())
    response.start_response("200 OK", [("Content-Type", "text/event-stream")])
    response.write(b"")

    assert len(sock.sends) == 1 and sock.sends[0].endswith(b"\r\n\r\n")


def test_a_file_sent_with_sendfile_follows_its_head(tmp_path):
    path = tmp_path / "video.mp4"
    path.write_bytes(b"frames" * 100)
    with open(path, "rb") as plain_file, open(path, "rb") as coalesced_file:
        plain = written(wsgi.Response, headers=[("Content-Length", "600")], file=plain_file)
        coalesced = written(CoalescingResponse, headers=[("Content-Length", "600")], file=coalesced_file)

    assert coalesced == plain and coalesced[0].startswith(b"HTTP/1.1 200 OK") and coalesced[1] == b"frames" * 100


def test_an_item_that_is_not_bytes_still_fails_after_the_head_went_out():
    sock = RecordingSocket()
    response = CoalescingResponse(Request(), sock, Config())
    response.start_response("200 OK", [("Content-Length", "2")])

    with pytest.raises(TypeError):
        response.write("ok")
    assert len(sock.sends) == 1 and sock.sends[0].startswith(b"HTTP/1.1 200 OK")  # as gunicorn's own


def test_http_1_0_answers_are_unchanged():
    plain, coalesced = both(version=(1, 0), headers=[("Content-Length", "2")], items=[b"ok"])

    assert len(coalesced) == 1 and b"".join(coalesced).endswith(b"\r\n\r\nok")


def test_the_gateway_worker_answers_with_it(monkeypatch):
    from gunicorn.workers import ggevent

    from mmm.gunicorn_worker import GeventWorker

    monkeypatch.setattr(wsgi, "Response", wsgi.Response)  # restored after the test
    monkeypatch.setattr(ggevent, "StreamServer", ggevent.StreamServer)
    monkeypatch.setattr(util, "http_date", util.http_date)
    monkeypatch.setattr(ggevent.GeventWorker, "run", lambda self: None)  # the serving loop itself
    GeventWorker.run(object.__new__(GeventWorker))

    assert wsgi.Response is CoalescingResponse  # what wsgi.create() builds for each request
    assert util.http_date is gunicorn_response.http_date


def test_the_date_is_gunicorns_for_the_current_second(monkeypatch):
    clock = [1_796_083_200.25]  # 2026-12-01 00:00:00.25 UTC
    monkeypatch.setattr(gunicorn_response.time, "time", lambda: clock[0])
    monkeypatch.setattr(gunicorn_response, "_date_of_second", (-1, ""))
    assert gunicorn_response.http_date() == "Tue, 01 Dec 2026 00:00:00 GMT"
    clock[0] += 0.7  # the same second's text
    assert gunicorn_response.http_date() == "Tue, 01 Dec 2026 00:00:00 GMT"
    clock[0] += 0.1  # the next second
    assert gunicorn_response.http_date() == "Tue, 01 Dec 2026 00:00:01 GMT"
    assert gunicorn_response.http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"  # a given time as given


def test_the_date_matches_gunicorns_own_now():
    for _ in range(100):  # (until both fall in one second)
        before, ours, theirs = int(time.time()), gunicorn_response.http_date(), gunicorn_response._gunicorns_http_date()
        if int(time.time()) == before:
            assert ours == theirs
            return
    pytest.fail("the clock crossed a second boundary 100 times in a row")
