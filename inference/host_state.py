"""The routing and limit state shared by the gunicorn processes of one host, without Redis.

`make serve` runs one gevent process per core. Without Redis each would keep its own rate
limit counters, in-flight counts, ejections and retry budget, so a 5-a-minute key got 5 per
process. Instead the gunicorn master starts this small server (mmm/gunicorn.conf.py) on a
unix socket, holding one LocalRoutingState and the rate-limit windows, and every worker
process asks it: one state per host, each change one step under its lock, as exact as Redis.
Several hosts still need Redis. The hot calls (snapshot, acquire, finish...) the workers make
in the master's shared memory instead (inference.routing_state_shared); this server is given
that memory too and answers them from it, for the processes that ask it (the engine scraper, a
prober, a worker whose code expects another layout after a reload).

The protocol is one JSON line each way per call on a persistent connection (a few per
process). A call waits at most MMM_REDIS_TIMEOUT; if the server does not answer, the process
goes on with its own state (as with Redis away) and, for the breaker's interval, does not ask
again; rate-limited keys then get 503 rate_limit_unavailable.
"""

import json
import logging
import os
import queue
import selectors
import socket
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, fields

from inference.engine_signals import EngineSignals
from inference.outcomes import Outcome
from inference.routing_state_local import LocalRoutingState
from inference.traffic import Acquired, EjectionPolicy, Finished, Traffic
from mmm.breaker import Breaker

logger = logging.getLogger("mmm.routing")

WINDOW_SECONDS = 60  # the rate limit's window (accounts.ratelimit)
# A snapshot's traffic goes over the socket as a list of values in this order, not a dict per
# worker: dataclasses.asdict deep-copies, and the names would be most of the line.
_TRAFFIC_FIELDS = tuple(field.name for field in fields(Traffic))


class HostStateUnavailable(Exception):
    pass


# --- The server (one per host and gateway instance, a child of the gunicorn master) --------


class _State:
    def __init__(self):
        self.routing = LocalRoutingState()
        memory_fd = os.environ.get("MMM_ROUTING_MEMORY_FD")
        if memory_fd:
            # The master's shared memory (inference.routing_state_shared): what the workers change
            # in it themselves is what clients of this server (the engine scraper, a prober, a
            # worker without the memory) must see and change too.
            from inference import routing_state_memory
            from inference.routing_state_shared import SharedRoutingState

            memory = routing_state_memory.attach(int(memory_fd))
            if memory is not None:
                self.routing = SharedRoutingState(
                    memory=memory, column=routing_state_memory.SERVER_COLUMN, fallback=self.routing
                )
        self._windows: dict[str, tuple[float, int]] = {}  # key prefix -> (window start, count)
        self._lock = threading.Lock()

    def rate_count(self, *, key: str) -> list:
        now = time.time()
        with self._lock:
            started, count = self._windows.get(key, (now, 0))
            if now - started >= WINDOW_SECONDS:
                started, count = now, 0
            self._windows[key] = (started, count + 1)
            if len(self._windows) > 100_000:  # ended windows must not grow memory without end
                self._windows = {k: v for k, v in self._windows.items() if now - v[0] < WINDOW_SECONDS}
            return [count + 1, started]

    def call(self, method: str, args: dict):
        routing = self.routing
        if method == "rate_count":
            return self.rate_count(**args)
        if method == "snapshot":
            seen = routing.snapshot(**args)
            return [
                [worker_id, *(getattr(traffic, name) for name in _TRAFFIC_FIELDS)]
                for worker_id, traffic in seen.items()
            ]
        if method == "acquire":
            return int(routing.acquire(**args))
        if method == "finish":
            args["outcome"] = Outcome(args["outcome"])
            args["policy"] = EjectionPolicy(**args["policy"])
            finished = routing.finish(**args)
            return [finished.ejected, finished.ejection_refused]
        if method == "round_robin_pick":
            return routing.round_robin_pick(group=args["group"], weights={int(k): v for k, v in args["weights"]})
        if method == "engine_record":
            return routing.engine_record(worker_id=args["worker_id"], signals=EngineSignals.from_json(args["signals"]))
        if method == "engine_read":
            return [
                [worker_id, signals.to_json()] for worker_id, signals in routing.engine_read(args["worker_ids"]).items()
            ]
        if method == "prefix_match":
            return list(routing.prefix_match(**args).items())
        if method in (
            "engine_claim",
            "prefix_record",
            "extend",
            "cool_down",
            "readmit",
            "budget_take_retry",
            "budget_release_retry",
            "reset",
        ):
            return getattr(routing, method)(**args)
        raise ValueError(f"unknown method {method!r}")


def _answer(state: _State, line: bytes) -> bytes:
    try:
        message = json.loads(line)
        reply = {"r": state.call(message["m"], message.get("a", {}))}
    except Exception as exc:
        reply = {"e": f"{type(exc).__name__}: {exc}"}
    return json.dumps(reply).encode() + b"\n"


class StateServer:
    """One thread, one selector: every call is answered in the order it arrived, and no two
    run at once (nor does a thread switch cost a call anything)."""

    def __init__(self, path: str):
        if os.path.exists(path):
            os.unlink(path)
        self.path = path
        self.state = _State()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(path)
        os.chmod(path, 0o600)  # only this user's processes may change the routing state
        self._listener.listen(256)
        self._listener.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, None)
        self._stopped = False

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        while not self._stopped:
            for key, _ in self._selector.select(poll_interval):
                if key.data is None:
                    self._accept()
                else:
                    self._read(key.fileobj, key.data)

    def shutdown(self) -> None:
        self._stopped = True

    def close(self) -> None:
        for key in list(self._selector.get_map().values()):
            key.fileobj.close()
        self._selector.close()

    def _accept(self) -> None:
        try:
            conn, _ = self._listener.accept()
        except BlockingIOError:
            return
        conn.setblocking(False)
        self._selector.register(conn, selectors.EVENT_READ, bytearray())

    def _read(self, conn: socket.socket, buffer: bytearray) -> None:
        try:
            chunk = conn.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._selector.unregister(conn)
            conn.close()
            return
        buffer += chunk
        replies = []
        while (end := buffer.find(b"\n")) >= 0:
            replies.append(_answer(self.state, bytes(buffer[:end])))
            del buffer[: end + 1]
        if replies:
            try:
                conn.settimeout(1.0)  # a client that stops reading its answers is dropped
                conn.sendall(b"".join(replies))
                conn.setblocking(False)
            except OSError:
                self._selector.unregister(conn)
                conn.close()


def serve(path: str) -> None:
    """Run the server on ``path`` until killed (``python -m inference.host_state PATH``)."""
    server = StateServer(path)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    server.serve_forever()


def _exit_with_parent(parent: int) -> None:
    # The gunicorn master stops this server on its way out; if the master was killed instead,
    # the server must not stay behind on its own.
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(0)


# --- The client (in each gunicorn worker process) -------------------------------------------


class HostRoutingState:
    """The RoutingState interface, answered by the host's server; this process's own state
    while the server does not answer."""

    def __init__(self, *, path: str, timeout: float, pool_size: int = 16):
        self.clock = time.time
        self._path = path
        self._timeout = timeout
        self._idle: queue.LifoQueue[socket.socket] = queue.LifoQueue(maxsize=pool_size)
        self._fallback = LocalRoutingState()
        self.breaker = Breaker(name="host routing state", max_seconds=lambda: 1.0)

    def call(self, method: str, **args):
        if self.breaker.is_open():
            raise HostStateUnavailable("the host's routing state failed recently")
        try:
            reply = self._round_trip(json.dumps({"m": method, "a": args}).encode() + b"\n")
        except (OSError, ValueError) as exc:
            self.breaker.failed(exc)
            raise HostStateUnavailable(str(exc)) from None
        self.breaker.succeeded()
        if "e" in reply:
            raise RuntimeError(f"host routing state: {reply['e']}")  # a bug, not an outage
        return reply["r"]

    def _round_trip(self, data: bytes) -> dict:
        try:
            sock, reader = self._idle.get_nowait()
        except queue.Empty:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self._timeout)
            sock.connect(self._path)
            reader = sock.makefile("rb")
        try:
            sock.sendall(data)
            line = reader.readline()
            if not line:
                raise ConnectionError("the host routing state closed the connection")
            reply = json.loads(line)
        except BaseException:
            sock.close()  # half way through a reply: never reused
            raise
        try:
            self._idle.put_nowait((sock, reader))
        except queue.Full:
            sock.close()
        return reply

    def _or_local(self, method: str, **args):
        try:
            return self.call(method, **args), False
        except HostStateUnavailable:
            return getattr(self._fallback, method)(**args), True

    # The RoutingState interface. One host has one state for all models, so ``model_name`` (the
    # Redis state's hash tag) is not sent; a snapshot's ``record_request`` is.

    def reset(self) -> None:
        self.call("reset")

    def snapshot(
        self, worker_ids: Sequence[int], *, model_name: str | None = None, record_request: bool = False
    ) -> dict[int, Traffic]:
        args: dict = {"worker_ids": list(worker_ids)}
        if record_request and model_name is not None:
            args.update(model_name=model_name, record_request=True)
        result, local = self._or_local("snapshot", **args)
        if local:
            return result
        if result and isinstance(result[0][1], dict):
            # A server started by the master before this code: a SIGHUP reload gives the workers
            # new code but keeps the master's server. It answers as it did, and counts a request
            # only when asked to on its own (a fourth call, until the master restarts).
            if "record_request" in args:
                try:
                    self.call("budget_record_request", model_name=model_name)
                except HostStateUnavailable:
                    pass
            return {worker_id: Traffic(**fields) for worker_id, fields in result}
        return {worker_id: Traffic(*values) for worker_id, *values in result}

    def acquire(
        self,
        *,
        worker_id: int,
        token: str,
        hold_until: float,
        max_inflight: int | None,
        panic: bool,
        model_name: str | None = None,
    ) -> Acquired:
        result, _ = self._or_local(
            "acquire", worker_id=worker_id, token=token, hold_until=hold_until, max_inflight=max_inflight, panic=panic
        )
        return Acquired(result)

    def extend(self, *, worker_id: int, token: str, hold_until: float, model_name: str | None = None) -> None:
        self._or_local("extend", worker_id=worker_id, token=token, hold_until=hold_until)

    def finish(
        self,
        *,
        worker_id: int,
        token: str,
        outcome: Outcome,
        latency_ms: float | None,
        reason: str,
        model_worker_ids: Sequence[int],
        policy: EjectionPolicy,
        model_name: str | None = None,
    ) -> Finished:
        try:
            finished = self.call(
                "finish",
                worker_id=worker_id,
                token=token,
                outcome=outcome.value,
                latency_ms=latency_ms,
                reason=reason,
                model_worker_ids=list(model_worker_ids),
                policy=asdict(policy),
            )
        except HostStateUnavailable:
            return self._fallback.finish(
                worker_id=worker_id,
                token=token,
                outcome=outcome,
                latency_ms=latency_ms,
                reason=reason,
                model_worker_ids=model_worker_ids,
                policy=policy,
            )
        # A dict from a server older than this code (see snapshot).
        return Finished(**finished) if isinstance(finished, dict) else Finished(*finished)

    def cool_down(self, *, worker_id: int, seconds: float, model_name: str | None = None) -> None:
        self._or_local("cool_down", worker_id=worker_id, seconds=seconds)

    def readmit(self, *, worker_id: int, model_name: str | None = None) -> None:
        self._or_local("readmit", worker_id=worker_id)

    def round_robin_pick(self, *, group: str, weights: dict[int, int]) -> int:
        try:
            return self.call("round_robin_pick", group=group, weights=list(weights.items()))
        except HostStateUnavailable:
            return self._fallback.round_robin_pick(group=group, weights=weights)

    def budget_take_retry(self, *, model_name: str, token: str, hold_until: float) -> bool:
        return bool(self._or_local("budget_take_retry", model_name=model_name, token=token, hold_until=hold_until)[0])

    def budget_release_retry(self, *, model_name: str, token: str) -> None:
        self._fallback.budget_release_retry(model_name=model_name, token=token)
        self._or_local("budget_release_retry", model_name=model_name, token=token)

    def engine_claim(self, *, worker_id: int, seconds: float) -> bool:
        return bool(self._or_local("engine_claim", worker_id=worker_id, seconds=seconds)[0])

    def engine_record(self, *, worker_id: int, signals: EngineSignals) -> None:
        try:
            self.call("engine_record", worker_id=worker_id, signals=signals.to_json())
        except HostStateUnavailable:
            self._fallback.engine_record(worker_id=worker_id, signals=signals)

    def engine_read(self, worker_ids: Sequence[int]) -> dict[int, EngineSignals]:
        try:
            pairs = self.call("engine_read", worker_ids=list(worker_ids))
        except HostStateUnavailable:
            return self._fallback.engine_read(worker_ids)
        return {worker_id: EngineSignals.from_json(text) for worker_id, text in pairs}

    def prefix_record(self, *, worker_id: int, hashes: Sequence[str], capacity: int) -> None:
        self._or_local("prefix_record", worker_id=worker_id, hashes=list(hashes), capacity=capacity)

    def prefix_match(self, *, worker_ids: Sequence[int], hashes: Sequence[str]) -> dict[int, int]:
        try:
            pairs = self.call("prefix_match", worker_ids=list(worker_ids), hashes=list(hashes))
        except HostStateUnavailable:
            return self._fallback.prefix_match(worker_ids=worker_ids, hashes=hashes)
        return dict(pairs)

    # The rate limit (accounts.ratelimit).

    def rate_count(self, *, key: str) -> tuple[int, float]:
        count, started = self.call("rate_count", key=key)
        return count, started


if __name__ == "__main__":
    serve(sys.argv[1])
