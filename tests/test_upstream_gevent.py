"""The geventhttpclient client (inference/upstream_gevent.py), called directly.

pytest's process is not monkey patched, so the gateway's shared pool is urllib3's here; these
tests hand ``upstream.send`` and ``UpstreamEventStream.open`` a pool of geventhttpclient's
(gevent's own sockets work without patching) and check what the gateway relies on, against a
real server on a loopback port. Each runs on urllib3's pools too: both clients must behave
alike. tests/test_upstream_gevent_process.py runs the client in a gunicorn gevent worker.
"""

import gzip
import socket
import threading

import certifi
import pytest

from inference import egress, upstream_gevent
from inference import upstream as outbound
from inference.streaming import StreamDeadlines, StreamInterrupted, UpstreamEventStream
from tests.fake_upstream import Reply, refused_url, until_released

REQUEST_SECONDS = 5.0  # bounds every call below that is not itself about a timeout


def new_pools(client: str, *, pool_size: int = 4, ca_certs: str | None = None) -> outbound.Pool:
    if client == "urllib3":
        return egress.CheckedPoolManager(maxsize=pool_size, retries=False, ca_certs=ca_certs or certifi.where())
    return upstream_gevent.GeventPools(pool_size=pool_size, ca_certs=ca_certs or certifi.where())


@pytest.fixture(params=["geventhttpclient", "urllib3"])
def client(request) -> str:
    return request.param


@pytest.fixture
def pools(client):
    made = new_pools(client)
    yield made
    made.clear()


def post(url: str, pools, *, timeout: float = REQUEST_SECONDS, **fields) -> outbound.UpstreamResponse:
    request = outbound.UpstreamRequest("POST", url, json_body={"input": "hi"}, **fields)
    return outbound.send(request, timeout=timeout, pool=pools)


def test_a_whole_answer_comes_back_with_its_status_type_and_retry_after(upstream, pools):
    url = upstream.on("/gen", status=429, json={"busy": True}, headers={"Retry-After": "7"})

    answer = post(url, pools)

    assert (answer.status, answer.json_or_text(), answer.retry_after) == (429, (True, {"busy": True}), "7")
    assert answer.content_type == "application/json"


def test_the_upstream_gets_the_headers_urllib3_sent(upstream, pools):
    url = upstream.on("/gen", json={})
    user_url = url.replace("http://", "http://ann:s%40cret@")

    post(f"{user_url}?q=a b", pools, headers={"X-Team": "a", "Content-Length": "99"})

    seen = upstream.hits("/gen")[0]
    assert seen.path == "/gen?q=a%20b"  # percent-encoded as urllib3 encodes it
    headers = {name.lower(): value for name, value in seen.headers.items()}
    assert headers["host"] == f"127.0.0.1:{upstream.port}"
    assert headers["authorization"] == outbound.url_credentials(user_url)  # the URL's user, as Basic auth
    assert headers["user-agent"] == outbound.DEFAULT_HEADERS["User-Agent"]
    assert headers["accept-encoding"] == outbound.DEFAULT_HEADERS["Accept-Encoding"]
    assert headers["x-team"] == "a" and headers["content-type"] == "application/json"
    assert headers["content-length"] == str(len(seen.body))  # the stored framing header is dropped


def test_a_request_without_a_body_says_so_as_urllib3_does(upstream, pools):
    url = upstream.on("/gen", json={})

    outbound.send(outbound.UpstreamRequest("POST", url), timeout=REQUEST_SECONDS, pool=pools)
    outbound.send(outbound.UpstreamRequest("GET", url), timeout=REQUEST_SECONDS, pool=pools)

    posted, got = upstream.hits("/gen")
    assert posted.headers["Content-Length"] == "0" and "Content-Length" not in got.headers


def test_a_gzip_body_is_decoded(upstream, pools):
    document = b'{"answer": "' + b"hello " * 2000 + b'"}'
    url = upstream.on("/gen", body=gzip.compress(document), headers={"Content-Encoding": "gzip"})

    assert post(url, pools).content == document


def test_a_body_that_does_not_decode_is_a_cut_off_answer(upstream, pools):
    url = upstream.on("/gen", body=b"not gzip at all", headers={"Content-Encoding": "gzip"})

    with pytest.raises(outbound.UpstreamUnreachable, match="response cut off"):
        post(url, pools)


def test_a_connection_read_to_the_end_is_reused(upstream, pools):
    url = upstream.on("/gen", json={"n": 1})

    post(url, pools)
    post(url, pools)

    first, second = upstream.hits("/gen")
    assert first.client_port == second.client_port


def test_a_geventhttpclient_pool_keeps_at_most_its_size_of_idle_connections(upstream):
    small = new_pools("geventhttpclient", pool_size=1)
    url = upstream.on("/stream", Reply(stream=[b"data: a\n\n", b"data: [DONE]\n\n"]))
    request = outbound.UpstreamRequest("POST", url, json_body={})
    try:
        # Two answers at once: the pool opens a second connection rather than make one wait.
        streams = [
            UpstreamEventStream.open(request, deadlines=StreamDeadlines.starting_now(read_timeout=5), pool=small)
            for _ in range(2)
        ]
        for stream in streams:
            while stream.next_events():
                pass
            stream.close()
        pool = small.pool_for(upstream_gevent.target(url))
        assert len(pool._idle) == 1
    finally:
        small.clear()


def test_an_oversized_body_is_refused_and_its_connection_not_reused(upstream, pools, settings):
    settings.MMM_MAX_RESPONSE_BYTES = 1024
    big = upstream.on("/big", body=b"x" * 200_000)
    small = upstream.on("/small", json={})

    with pytest.raises(outbound.UpstreamTooLarge):
        post(big, pools)
    post(small, pools)

    assert upstream.hits("/big")[0].client_port != upstream.hits("/small")[0].client_port


def test_an_upstream_that_does_not_answer_in_time_times_out(upstream, pools):
    url = upstream.on("/slow", json={}, delay=10)

    with pytest.raises(outbound.UpstreamTimedOut, match=r"no answer within 0\.3 s"):
        post(url, pools, timeout=0.3)


def test_a_body_dripping_past_the_deadline_times_out(upstream, pools):
    url = upstream.on("/drip", text="x" * 200, trickle=0.05)

    with pytest.raises(outbound.UpstreamTimedOut):
        post(url, pools, timeout=0.5)


def test_a_refused_connection_is_unreachable_and_the_message_has_no_query(pools):
    with pytest.raises(outbound.UpstreamUnreachable) as refused:
        post(refused_url("/gen?key=sk-secret"), pools)

    assert str(refused.value) == "connection refused"


def test_a_connection_that_closes_without_an_answer_is_unreachable(pools):
    listener = socket.create_server(("127.0.0.1", 0))

    def close_at_once():
        connection, _ = listener.accept()
        connection.settimeout(5)
        connection.recv(65536)
        # Half-close first and read what is still coming: the client may send its head and body
        # in two writes, and closing with the body unread would make the kernel send a reset
        # instead of the clean end of stream this test is about.
        connection.shutdown(socket.SHUT_WR)
        try:
            while connection.recv(65536):
                pass
        except OSError:
            pass
        connection.close()

    threading.Thread(target=close_at_once, daemon=True).start()
    try:
        with pytest.raises(outbound.UpstreamUnreachable, match="connection closed without a response"):
            post(f"http://127.0.0.1:{listener.getsockname()[1]}/gen", pools)
    finally:
        listener.close()


def test_a_denied_address_is_never_connected_to(upstream, pools, settings):
    url = upstream.on("/gen", json={})
    settings.MMM_UPSTREAM_DENY = ["127.0.0.0/8"]

    with pytest.raises(outbound.UpstreamUnreachable, match="refused by the egress policy"):
        post(url, pools)

    assert upstream.hits("/gen") == []


def test_the_connection_goes_to_the_checked_address_with_the_name_as_host(upstream, pools, monkeypatch):
    url = upstream.on("/gen", json={})
    answers = {"model.test": "127.0.0.1"}
    monkeypatch.setattr(
        egress, "getaddrinfo", lambda host, port: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[host], port))]
    )

    post(url.replace("127.0.0.1", "model.test"), pools)
    assert upstream.hits("/gen")[0].headers["Host"] == f"model.test:{upstream.port}"

    answers["model.test"] = "169.254.169.254"  # rebound to the metadata address
    pools.clear()  # a new connection, as after keep-alive ends
    with pytest.raises(outbound.UpstreamUnreachable, match="refused by the egress policy"):
        post(url.replace("127.0.0.1", "model.test"), pools)
    assert len(upstream.hits("/gen")) == 1


def test_a_redirect_is_an_answer_and_is_not_followed(upstream, pools):
    target = upstream.on("/elsewhere", json={})
    url = upstream.on("/gen", status=302, json={}, headers={"Location": target})

    assert post(url, pools).status == 302
    assert upstream.hits("/elsewhere") == []


def test_a_header_with_a_line_break_is_refused_without_showing_its_value(upstream):
    # geventhttpclient's path only: http.client's ValueError quotes the value (registration
    # refuses such a header, so none reaches either client from a stored worker).
    url = upstream.on("/gen", json={})
    pools = new_pools("geventhttpclient")

    with pytest.raises(ValueError) as refused:
        post(url, pools, headers={"X-Key": "sk-secret\r\nX-Evil: 1"})

    assert "sk-secret" not in str(refused.value) and upstream.hits("/gen") == []


def open_stream(upstream, reply: Reply, pools, *, read_timeout: float = REQUEST_SECONDS) -> UpstreamEventStream:
    url = upstream.on("/stream", reply)
    request = outbound.UpstreamRequest("POST", url, json_body={"stream": True})
    deadlines = StreamDeadlines.starting_now(read_timeout=read_timeout)
    return UpstreamEventStream.open(request, deadlines=deadlines, pool=pools)


def test_each_event_is_read_as_it_arrives(upstream, pools):
    second_may_go = threading.Event()

    def events():
        yield b"data: a\n\n"
        second_may_go.wait(REQUEST_SECONDS)
        yield b"data: b\n\ndata: [DONE]\n\n"

    stream = open_stream(upstream, Reply(stream=events()), pools)
    try:
        # The first event is in before the upstream sends the second: nothing waits for more.
        assert stream.next_events() == [b"data: a\n\n"]
        second_may_go.set()
        assert stream.next_events() == [b"data: b\n\n", b"data: [DONE]\n\n"]
        assert stream.next_events() == []
    finally:
        second_may_go.set()
        stream.close()
    assert stream.is_event_stream and stream.saw_done


def test_a_stream_read_to_its_end_gives_its_connection_back(upstream, pools):
    stream = open_stream(upstream, Reply(stream=[b"data: a\n\n", b"data: [DONE]\n\n"]), pools)
    while stream.next_events():
        pass
    stream.close()
    upstream.on("/after", json={})

    post(upstream.url("/after"), pools)

    assert upstream.hits("/stream")[0].client_port == upstream.hits("/after")[0].client_port


def test_an_abandoned_stream_closes_its_connection(upstream, pools):
    release = threading.Event()
    endless = until_released(release, first=b"data: a\n\n", then=b"data: more\n\n")

    stream = open_stream(upstream, Reply(stream=endless), pools)
    try:
        assert stream.next_events() == [b"data: a\n\n"]
        stream.close()  # the client went away
        seen = upstream.hits("/stream")[0]
        assert seen.answered.wait(REQUEST_SECONDS), "the upstream never noticed the closed connection"
        assert seen.aborted
    finally:
        release.set()
    upstream.on("/after", json={})
    post(upstream.url("/after"), pools)
    assert upstream.hits("/after")[0].client_port != upstream.hits("/stream")[0].client_port


def test_a_stream_silent_past_its_read_timeout_times_out(upstream, pools):
    release = threading.Event()

    def silent_after_first():
        yield b"data: a\n\n"
        release.wait(REQUEST_SECONDS)

    stream = open_stream(upstream, Reply(stream=silent_after_first()), pools, read_timeout=0.3)
    try:
        assert stream.next_events() == [b"data: a\n\n"]
        with pytest.raises(outbound.UpstreamTimedOut, match=r"sent nothing for 0\.3 s"):
            stream.next_events()
    finally:
        release.set()
        stream.close()


def test_a_stream_cut_off_mid_way_is_interrupted(upstream, pools):
    stream = open_stream(upstream, Reply(stream=[b"data: a\n\n"], cut=True), pools)
    try:
        assert stream.next_events() == [b"data: a\n\n"]
        with pytest.raises((StreamInterrupted, outbound.UpstreamUnreachable)):
            stream.next_events()
    finally:
        stream.close()


def test_a_stream_that_ends_without_done_is_interrupted(upstream, pools):
    stream = open_stream(upstream, Reply(stream=[b"data: a\n\n"]), pools)
    try:
        assert stream.next_events() == [b"data: a\n\n"]
        with pytest.raises(StreamInterrupted, match=r"without \[DONE\]"):
            stream.next_events()
    finally:
        stream.close()


def test_an_answer_that_is_not_a_stream_is_read_whole(upstream, pools):
    url = upstream.on("/stream", status=400, json={"error": "no"})
    request = outbound.UpstreamRequest("POST", url, json_body={"stream": True})

    stream = UpstreamEventStream.open(request, deadlines=StreamDeadlines.starting_now(read_timeout=5), pool=pools)
    try:
        answer = stream.read_whole()
    finally:
        stream.close()

    assert (stream.status, stream.is_event_stream, answer.json_or_text()) == (400, False, (True, {"error": "no"}))


# --- TLS: certifi's bundle by default, the certificate checked against the URL's name ---------


def certificate_files(tmp_path, *, name: str) -> tuple[str, str, str]:
    """A CA of the test's own and a certificate it signs for ``name``: (CA file, cert, key)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def signed(subject: str, key, issuer: str, issuer_key, *, ca: bool) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if ca:
            builder = builder.add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
        else:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = signed("mmm test CA", ca_key, "mmm test CA", ca_key, ca=True)
    cert = signed(name, key, "mmm test CA", ca_key, ca=False)
    files = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    files[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return tuple(str(path) for path in files)


@pytest.fixture
def tls_upstream(tmp_path, monkeypatch):
    """A fake upstream speaking TLS as ``model.test`` (which resolves to it), and its CA file."""
    import ssl

    from tests.fake_upstream import FakeUpstream

    ca_file, cert_file, key_file = certificate_files(tmp_path, name="model.test")
    server = FakeUpstream()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    server._server.socket = context.wrap_socket(server._server.socket, server_side=True)
    server.start()
    monkeypatch.setattr(
        egress, "getaddrinfo", lambda host, port: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
    )
    yield server, ca_file
    server.stop()


def test_a_tls_upstream_is_reached_by_name_when_its_certificate_is_trusted(tls_upstream, client):
    server, ca_file = tls_upstream
    server.on("/gen", json={"ok": True})
    trusting = new_pools(client, ca_certs=ca_file)
    try:
        answer = post(f"https://model.test:{server.port}/gen", trusting)
    finally:
        trusting.clear()

    assert answer.json_or_text() == (True, {"ok": True})
    assert server.hits("/gen")[0].headers["Host"] == f"model.test:{server.port}"


def test_a_certificate_outside_certifis_bundle_is_refused(tls_upstream, pools):
    server, _ = tls_upstream
    server.on("/gen", json={"ok": True})

    with pytest.raises(outbound.UpstreamUnreachable, match="TLS certificate error"):
        post(f"https://model.test:{server.port}/gen", pools)
    assert server.hits("/gen") == []


def test_a_certificate_for_another_name_is_refused(tls_upstream, client):
    server, ca_file = tls_upstream
    server.on("/gen", json={"ok": True})
    trusting = new_pools(client, ca_certs=ca_file)
    try:
        with pytest.raises(outbound.UpstreamUnreachable, match="TLS certificate error"):
            post(f"https://other.test:{server.port}/gen", trusting)  # resolves to the same server
    finally:
        trusting.clear()
    assert server.hits("/gen") == []


def test_an_idle_connection_the_upstream_closed_is_not_checked_out():
    import gevent.socket

    left, right = gevent.socket.socketpair()
    try:
        assert upstream_gevent._still_open(left) is True
        right.sendall(b"stray")
        assert upstream_gevent._still_open(left) is False  # readable while idle: not reusable
        left.recv(16)
        assert upstream_gevent._still_open(left) is True
        right.close()
        assert upstream_gevent._still_open(left) is False  # the peer is gone
    finally:
        left.close()
        right.close()
    assert upstream_gevent._still_open(left) is False  # closed here


def test_the_check_works_past_selects_descriptor_limit():
    """A worker holding thousands of client connections has descriptors above 1024."""
    import os
    import resource

    import gevent.socket

    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft <= 2000:
        pytest.skip(f"the open-files limit ({soft}) does not reach past 1024 here")
    left, right = gevent.socket.socketpair()
    high = os.dup2(left.fileno(), 1500)
    high_socket = gevent.socket.socket(fileno=high)
    try:
        assert upstream_gevent._still_open(high_socket) is True
        right.close()
        assert upstream_gevent._still_open(high_socket) is False
    finally:
        high_socket.close()
        left.close()
        right.close()
