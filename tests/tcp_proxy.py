"""A TCP proxy a test puts between the gateway and a service (PostgreSQL, Redis) to fail it.

Modes, switched at any time with ``set_mode``:
- ``forward``: bytes flow both ways, as without the proxy;
- ``refuse``: the port is closed (connect gets ECONNREFUSED) and open connections are reset,
  as when the service is stopped;
- ``blackhole``: connects are accepted and then nothing is ever answered; open connections
  freeze (bytes stay where they are), as in a network partition or a frozen host. Going back
  to ``forward`` lets frozen connections go on, as a healed partition does.

Plain threads and blocking sockets with short select() timeouts, no gevent: it runs inside
the test process. Every thread is a daemon and ``stop()`` joins them with a deadline.
"""

import select
import socket
import threading
import time

FORWARD, REFUSE, BLACKHOLE = "forward", "refuse", "blackhole"
TICK = 0.05  # how often a thread looks at the mode


class TcpProxy:
    def __init__(self, *, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.port = 0
        self.mode = FORWARD
        self.accepted = 0  # connections accepted in any mode (a test may wait for them)
        self._listener: socket.socket | None = None
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._held: list[socket.socket] = []  # accepted while blackholed
        self._threads: list[threading.Thread] = []
        self._stopped = threading.Event()

    def start(self) -> "TcpProxy":
        self._listen()
        self._spawn(self._accept_loop)
        return self

    def set_mode(self, mode: str) -> None:
        assert mode in (FORWARD, REFUSE, BLACKHOLE), mode
        with self._lock:
            previous, self.mode = self.mode, mode
            if mode == REFUSE:
                self._close_listener()
                for sock in list(self._sockets) + self._held:
                    _reset(sock)
                self._sockets.clear()
                self._held.clear()
            elif previous == REFUSE:
                self._listen()
            if mode == FORWARD:
                for sock in self._held:  # they were never connected upstream: let their clients retry
                    _reset(sock)
                self._held.clear()

    def stop(self) -> None:
        self._stopped.set()
        with self._lock:
            self._close_listener()
            for sock in list(self._sockets) + self._held:
                _reset(sock)
        for thread in self._threads:
            thread.join(timeout=5)

    @property
    def url_host_port(self) -> str:
        return f"127.0.0.1:{self.port}"

    # --- internals ---------------------------------------------------------------------------

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(1024)
        listener.settimeout(TICK)
        self.port = listener.getsockname()[1]
        self._listener = listener

    def _close_listener(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()]
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            listener = self._listener
            if listener is None:
                time.sleep(TICK)
                continue
            try:
                client, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            with self._lock:
                self.accepted += 1
                if self.mode == BLACKHOLE:
                    self._held.append(client)
                    continue
                if self.mode == REFUSE:
                    _reset(client)
                    continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _reset(client)
                continue
            client.settimeout(5)  # a send to a peer that stopped reading must not block for ever

            with self._lock:
                self._sockets.update((client, upstream))
            self._spawn(self._pump, client, upstream)

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        peers = {client: upstream, upstream: client}
        try:
            while not self._stopped.is_set():
                if self.mode != FORWARD:
                    if self.mode == REFUSE:
                        return
                    time.sleep(TICK)  # frozen: read nothing, send nothing
                    continue
                readable, _, _ = select.select(list(peers), [], [], TICK)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    peers[sock].sendall(data)
        except OSError:
            return
        finally:
            with self._lock:
                self._sockets.discard(client)
                self._sockets.discard(upstream)
            client.close()
            upstream.close()


def _reset(sock: socket.socket) -> None:
    """Close with an RST, as a stopped server's kernel answers."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    except OSError:
        pass
    sock.close()
