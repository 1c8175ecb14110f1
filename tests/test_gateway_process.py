"""The gateway as it is served: gunicorn with gevent workers, a database on disk, and
several processes that share nothing but the database."""

import http.client
import json
import os
import signal
import socket
import threading

import pytest

from tests.conftest import SEED_ANSWER, seed_registration
from tests.fake_upstream import Reply
from tests.gateway_process import GatewayProcess, gateway_database
from tests.waiting import wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def gateway_env(tmp_path):
    with gateway_database(tmp_path) as env:
        GatewayProcess(env=env).manage("migrate", "--noinput", "-v0").check_returncode()
        yield env


@pytest.fixture
def gateway(gateway_env):
    process = GatewayProcess(env=gateway_env).start()
    yield process
    process.stop()


def test_the_seed_examples_return_the_seed_bodies(gateway, upstream):
    upstream.on("/api/generate", json={"data": {"items": [{"attributes": {"answer": "I am proxyllm."}}]}})
    upstream.on("/inference/query", json={"data": {"items": [{"attributes": {"answer": "Hey there!"}}]}})
    glm_url = upstream.url("/inference/query")

    assert gateway.post("/api/server/register", seed_registration(upstream.url("/api/generate"))).json() == {
        "success": True,
        "msg": "register LLM proxyllm succeed!",
    }
    gateway.post("/api/server/register", seed_registration(glm_url, model_name="chatglm2-6b")).raise_for_status()

    listed = gateway.get("/api/server/workers").json()
    assert listed["success"] is True
    assert {(row["model_name"], row["req_url_template"]) for row in listed["data"]} == {
        ("proxyllm", upstream.url("/api/generate")),
        ("chatglm2-6b", glm_url),
    }

    for model_name, answer in (("chatglm2-6b", "Hey there!"), ("proxyllm", "I am proxyllm.")):
        response = gateway.post("/api/v1/chat/completions", {"input": "who are you?", "model_name": model_name})
        assert response.json() == {"success": True, "msg": "execute succeed", "result": answer}

    response = gateway.post("/api/server/offline", {"model_name": "chatglm2-6b", "req_url_template": glm_url})
    assert response.json() == {
        "success": True,
        "msg": f"remove llm worker(model_name=chatglm2-6b, url={glm_url}) succeed!",
    }


def test_the_registry_survives_a_restart(gateway_env, upstream):
    first = GatewayProcess(env=gateway_env).start()
    try:
        first.post("/api/server/register", seed_registration(upstream.on("/gen", json=SEED_ANSWER))).raise_for_status()
    finally:
        first.stop()

    second = GatewayProcess(env=gateway_env, port=first.port).start()
    try:
        assert [row["model_name"] for row in second.get("/api/server/workers").json()["data"]] == ["proxyllm"]
        assert second.post("/api/v1/chat/completions", {"input": "hi", "model_name": "proxyllm"}).status_code == 200
    finally:
        second.stop()


def test_changes_made_through_one_host_reach_another(gateway_env, upstream):
    host_a, host_b = GatewayProcess(env=gateway_env).start(), GatewayProcess(env=gateway_env).start()
    try:
        url = upstream.on("/gen", json=SEED_ANSWER)
        ask = {"input": "hi", "model_name": "proxyllm"}
        assert host_b.post("/api/v1/chat/completions", ask).status_code == 404  # B's table is loaded now

        host_a.post("/api/server/register", seed_registration(url)).raise_for_status()
        # A model B's table does not know yet is looked up at once.
        assert host_b.post("/api/v1/chat/completions", ask).status_code == 200

        host_a.post("/api/server/offline", {"model_name": "proxyllm", "req_url_template": url}).raise_for_status()
        wait_until(
            lambda: host_b.post("/api/v1/chat/completions", ask).status_code == 404,
            timeout=10,
            what="host B to answer 404 once the worker went offline through host A",
        )
    finally:
        host_a.stop()
        host_b.stop()


def test_a_worker_marked_unhealthy_by_the_prober_leaves_rotation_everywhere(gateway, gateway_env, upstream):
    gateway.post(
        "/api/server/register", seed_registration(upstream.on("/down", status=500, json={}))
    ).raise_for_status()
    gateway.post("/api/server/register", seed_registration(upstream.on("/up", json=SEED_ANSWER))).raise_for_status()

    probe = GatewayProcess(env=gateway_env).manage("probe_workers")
    assert probe.returncode == 1, probe.stdout + probe.stderr
    assert "unknown -> unhealthy" in probe.stdout

    ask = {"input": "hi", "model_name": "proxyllm"}

    def hits_on_the_failing_worker_during_four_requests() -> int:
        before = len(upstream.hits("/down"))
        for _ in range(4):
            assert gateway.post("/api/v1/chat/completions", ask).status_code == 200
        return len(upstream.hits("/down")) - before

    # Each gateway process reloads its routing table within MMM_ROUTING_REFRESH_SECONDS.
    wait_until(
        lambda: hits_on_the_failing_worker_during_four_requests() == 0,
        timeout=10,
        poll=0.1,
        what="every gateway process to route around the worker the prober marked unhealthy",
    )


def test_a_trickling_upstream_is_cut_off_at_the_workers_timeout(gateway, upstream):
    # About 25 bytes, 0.3 s apart: the whole answer would take over 7 s; the worker allows 1 s.
    url = upstream.on("/slowly", json={"answer": "x" * 12}, trickle=0.3)
    registration = seed_registration(url, response_extract="answer", timeout=1)
    gateway.post("/api/server/register", registration).raise_for_status()

    response = gateway.post("/api/v1/chat/completions", {"input": "hi", "model_name": "proxyllm"})

    # The gevent deadline and the per-read deadline are the same 1 s: either may fire first.
    assert response.status_code == 504
    assert response.json()["code"] == "upstream_timeout"
    assert "within 1 s" in response.json()["msg"]
    seen = upstream.hits("/slowly")[0]
    assert seen.answered.wait(timeout=20)
    assert seen.aborted  # the gateway dropped the connection rather than read on


def send_raw(gateway, request: bytes) -> tuple[int, dict, bytes]:
    """Send ``request`` as bytes on a new connection; return the status, headers and body."""
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(request)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, dict(response.getheaders()), response.read()


def chunked(path: str, body: bytes, *, pieces: int = 3) -> bytes:
    size = -(-len(body) // pieces)
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(part), part) for part in (body[i : i + size] for i in range(0, len(body), size))
    )
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    return head.encode() + chunks + b"0\r\n\r\n"


def test_a_chunked_request_body_is_read(gateway, upstream):
    gateway.post("/api/server/register", seed_registration(upstream.on("/gen", json=SEED_ANSWER))).raise_for_status()
    ask = json.dumps({"input": "sent in chunks", "model_name": "proxyllm"}).encode()

    status, _, body = send_raw(gateway, chunked("/api/v1/chat/completions", ask))

    assert (status, json.loads(body)["result"]) == (200, "I am a fake model.")
    assert upstream.hits("/gen")[0].json["input"] == "sent in chunks"


def test_a_chunked_body_over_the_limit_is_a_json_413(gateway_env, upstream):
    gateway = GatewayProcess(env={**gateway_env, "MMM_MAX_REQUEST_BYTES": "2048"}).start()
    try:
        ask = json.dumps({"input": "x" * 5000, "model_name": "proxyllm"}).encode()

        status, _, body = send_raw(gateway, chunked("/api/v1/chat/completions", ask))

        assert status == 413, body
        assert json.loads(body)["code"] == "request_too_large"
    finally:
        gateway.stop()


@pytest.mark.parametrize(
    "request_bytes, status, code, says",
    [
        (
            b"GET /api/server/workers?" + b"a" * 9000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
            414,
            "request_line_too_long",
            "longer than 4094 bytes",
        ),
        (
            b"GET /api/server/workers HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
            431,
            "headers_too_large",
            "longer than 8190 bytes",
        ),
        (
            b"GET /api/server/workers HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-N: 1\r\n" * 200 + b"\r\n",
            431,
            "headers_too_large",
            "more than 100 headers",
        ),
        (b"BAD\x00LINE\r\n\r\n", 400, "bad_request", "not valid HTTP/1.1"),
        (
            b"POST /api/v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            400,
            "bad_request",
            "chunked framing",
        ),
    ],
    ids=["request line too long", "header too large", "too many headers", "not HTTP", "bad chunk size"],
)
def test_what_gunicorn_refuses_itself_is_a_json_error_that_closes_the_connection(
    gateway, request_bytes, status, code, says
):
    got, headers, body = send_raw(gateway, request_bytes)

    assert got == status
    assert headers["Connection"] == "close"
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body)["code"] == code
    assert says in json.loads(body)["msg"]


def _established_per_process(root_pid: int, port: int) -> dict[int, int]:
    """pid -> client connections it holds on ``port``, for each child of ``root_pid`` (from /proc)."""
    established = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as rows:
            for row in list(rows)[1:]:
                fields = row.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                    established.add(fields[9])  # the socket's inode
    held = {}
    with open(f"/proc/{root_pid}/task/{root_pid}/children") as children:
        for pid in map(int, children.read().split()):
            links = []
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    links.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
                except OSError:
                    continue  # closed meanwhile
            held[pid] = sum(link[len("socket:[") : -1] in established for link in links if link.startswith("socket:["))
    return held


def test_a_burst_of_keep_alive_connections_is_shared_by_both_workers(gateway_env):
    gateway = GatewayProcess(env={**gateway_env, "MMM_WEB_WORKERS": "2"}).start()
    clients = []
    try:
        # start() returns once one worker answers; the other may still be loading the app, and
        # a burst then can only go to the first (the balance waits 1 ms, never longer). So
        # first see both workers answer a connection of their own.
        answered_by: set[int] = set()

        def both_answer() -> bool:
            with socket.create_connection(("127.0.0.1", gateway.port), timeout=30) as probe:
                probe.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                assert probe.recv(65536).startswith(b"HTTP/1.1 200")
                held = _established_per_process(gateway.process.pid, gateway.port)
                answered_by.update(pid for pid, count in held.items() if count)
            return len(answered_by) >= 2

        wait_until(both_answer, timeout=30, poll=0.05, what="both workers to answer a connection")
        # All at once, as a load balancer or a client pool opens its connections.
        clients = [socket.create_connection(("127.0.0.1", gateway.port), timeout=30) for _ in range(32)]
        seen: list[dict] = []

        def all_accepted() -> dict | None:
            seen.append(_established_per_process(gateway.process.pid, gateway.port))
            return seen[-1] if sum(seen[-1].values()) == 32 else None

        try:
            held = wait_until(all_accepted, timeout=30, what="the workers to accept all 32 connections")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; connections held per process: {seen[-1]}") from None

        workers = sorted(count for count in held.values() if count)
        # Without balancing, 25 and 7 (or worse) were common: one worker did most of the work.
        assert len(workers) == 2 and workers[0] >= 12, f"connections per worker: {workers}"
        for client in clients:
            client.sendall(b"GET /api/server/workers HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        for client in clients:
            answer = client.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200"), f"a request on a new connection was answered {answer[:200]!r}"
    finally:
        for client in clients:
            client.close()
        gateway.stop()


def test_each_completion_gets_its_one_log_line_from_the_workers_log_thread(gateway, upstream):
    # The worker queues the line; its log thread writes it (console.log_handler). It must reach
    # the gateway's log whole, once, with what the request did.
    upstream.on("/api/generate", json=SEED_ANSWER)
    gateway.post("/api/server/register", seed_registration(upstream.url("/api/generate"))).raise_for_status()
    ids = []
    for _ in range(5):
        response = gateway.post("/api/v1/chat/completions", {"input": "hello", "model_name": "proxyllm"})
        assert response.status_code == 200
        ids.append(response.headers["X-Request-ID"])

    def lines_of(request_id: str) -> list[str]:
        return [line for line in gateway.log_path.read_text().splitlines() if f"request_id={request_id} " in line]

    wait_until(
        lambda: all(lines_of(request_id) for request_id in ids),
        timeout=10,
        poll=0.05,
        what="a log line for each of the 5 completions in the gateway's log",
    )
    for request_id in ids:
        (line,) = lines_of(request_id)
        assert "path=/api/v1/chat/completions status=200" in line
        assert "model=proxyllm" in line and "attempts=1" in line


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as children:
        return [int(child) for child in children.read().split()]


def _holder_of(*, root_pid: int, port: int, client_port: int) -> int | None:
    """The child of ``root_pid`` holding the gateway's end of the connection from ``client_port``."""
    inode = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as rows:
            for row in list(rows)[1:]:
                fields = row.split()
                local, remote = int(fields[1].rsplit(":", 1)[1], 16), int(fields[2].rsplit(":", 1)[1], 16)
                if (local, remote) == (port, client_port) and fields[3] == "01":
                    inode = fields[9]
    for pid in _children(root_pid):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                    return pid
            except OSError:
                continue  # closed meanwhile
    return None


def test_the_workers_of_one_gunicorn_share_in_flight_counts_without_the_host_state_server(gateway_env, upstream):
    answering = threading.Event()
    answering.set()

    def held_while_the_test_says(seen):
        answering.wait(timeout=30)
        return Reply(json=SEED_ANSWER)

    # The host's own state is what is tested: without Redis, even when the suite runs with it.
    gateway = GatewayProcess(env={**gateway_env, "MMM_WEB_WORKERS": "2", "REDIS_URL": ""}).start()
    connections = []
    try:
        url = upstream.on("/held", held_while_the_test_says)
        gateway.post("/api/server/register", seed_registration(url, max_inflight=1)).raise_for_status()
        # Without its server, a process that still asked it would count on its own from now on.
        server = [pid for pid in _children(gateway.process.pid) if b"inference.host_state" in _cmdline(pid)]
        assert len(server) == 1, f"the gateway's host-state server processes: {server}"
        os.kill(server[0], signal.SIGKILL)

        # One keep-alive connection held by each of the two gunicorn workers.
        by_worker: dict[int, http.client.HTTPConnection] = {}
        for _ in range(40):
            connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=30)
            connection.connect()
            connections.append(connection)
            holder = wait_until(
                lambda c=connection: _holder_of(
                    root_pid=gateway.process.pid, port=gateway.port, client_port=c.sock.getsockname()[1]
                ),
                timeout=10,
                what="a gunicorn worker to accept the connection",
            )
            by_worker.setdefault(holder, connection)
            if len(by_worker) == 2:
                break
        assert len(by_worker) == 2, f"40 connections all went to {list(by_worker)}"
        first, second = by_worker.values()
        ask = json.dumps({"input": "hi", "model_name": "proxyllm"})

        def send(connection) -> None:
            connection.request("POST", "/api/v1/chat/completions", ask, {"Content-Type": "application/json"})

        def answer(connection) -> tuple[int, bytes]:
            response = connection.getresponse()
            return response.status, response.read()

        for connection in (first, second):  # each process reloads its routing table within a second
            wait_until(
                lambda c=connection: send(c) or answer(c)[0] == 200,
                timeout=15,
                poll=0.2,
                what="each gunicorn worker to route to the registered worker",
            )

        answering.clear()
        hits = len(upstream.hits("/held"))
        send(first)
        wait_until(
            lambda: len(upstream.hits("/held")) > hits, timeout=15, what="the first request to reach the upstream"
        )
        send(second)
        status, body = answer(second)
        answering.set()

        assert status == 503 and b"workers_at_capacity" in body, (status, body[:300])
        assert answer(first)[0] == 200
        send(second)
        assert answer(second)[0] == 200  # the first process gave its slot back where the second sees it
    finally:
        answering.set()
        for connection in connections:
            connection.close()
        gateway.stop()


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return cmdline.read()
    except OSError:
        return b""
