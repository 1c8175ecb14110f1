"""Reading an upstream's server-sent events: whole events only, timeouts, how a relay ends."""

import threading

import pytest

from inference import upstream as outbound
from inference.outcomes import Outcome
from inference.streaming import StreamDeadlines, StreamInterrupted, UpstreamEventStream, relay
from tests.fake_upstream import Reply


def open_stream(upstream, reply: Reply, *, read_timeout: float = 5.0) -> UpstreamEventStream:
    url = upstream.on("/stream", reply)
    request = outbound.UpstreamRequest(method="POST", url=url, json_body={"stream": True})
    return UpstreamEventStream.open(request, deadlines=StreamDeadlines.starting_now(read_timeout=read_timeout))


def all_events(stream: UpstreamEventStream) -> list[bytes]:
    events = []
    while batch := stream.next_events():
        events.extend(batch)
    return events


def test_events_split_across_chunks_and_crlf_line_ends_come_out_whole(upstream):
    stream = open_stream(upstream, Reply(stream=[b"data: a\r", b"\n\r\ndata: ", b"b\r\n", b"\r\ndata: [DONE]\r\n\r\n"]))

    assert all_events(stream) == [b"data: a\n\n", b"data: b\n\n", b"data: [DONE]\n\n"]
    stream.close()


def test_a_body_that_ends_inside_an_event_is_interrupted(upstream):
    stream = open_stream(upstream, Reply(stream=[b"data: a\n\ndata: [DO"]))

    assert stream.next_events() == [b"data: a\n\n"]
    with pytest.raises(StreamInterrupted, match="middle of an event"):
        stream.next_events()
    stream.close()


def test_an_upstream_silent_past_the_read_timeout_times_out(upstream):
    release = threading.Event()

    def silent_after_first():
        yield b"data: a\n\n"
        release.wait(10)

    stream = open_stream(upstream, Reply(stream=silent_after_first()), read_timeout=0.3)
    try:
        assert stream.next_events() == [b"data: a\n\n"]
        with pytest.raises(outbound.UpstreamTimedOut, match="sent nothing"):
            stream.next_events()
    finally:
        release.set()
        stream.close()


def test_a_relay_settles_once_when_the_client_goes_away_and_closes_the_upstream(upstream):
    release = threading.Event()

    def endless():
        for _ in range(500):
            yield b"data: x\n\n"
            if release.wait(0.01):
                return

    stream = open_stream(upstream, Reply(stream=endless()))
    ended = []
    chunks = relay(stream, first_events=stream.next_events(), on_end=lambda outcome, error: ended.append(outcome))

    assert next(chunks).startswith(b"data: x")
    chunks.close()  # what the WSGI server does when the client has gone

    seen = upstream.hits("/stream")[0]
    assert seen.answered.wait(10)
    assert seen.aborted and ended == [Outcome.CLIENT_GONE]
    release.set()
