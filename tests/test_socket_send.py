"""mmm.socket_send.send_all: every byte sent, whatever part of it one send() takes."""

import socket
import threading

import pytest

from mmm.socket_send import send_all


class TakesAFewBytesAtATime:
    def __init__(self, per_send: int):
        self.per_send = per_send
        self.wire = b""
        self.calls: list[str] = []

    def send(self, data):
        self.calls.append("send")
        taken = bytes(data[: self.per_send])
        self.wire += taken
        return len(taken)

    def sendall(self, data):
        self.calls.append("sendall")
        self.wire += bytes(data)


def test_what_one_send_leaves_goes_through_sendall():
    sock = TakesAFewBytesAtATime(per_send=5)

    send_all(sock, b"HTTP/1.1 200 OK\r\n\r\n{}")

    assert sock.wire == b"HTTP/1.1 200 OK\r\n\r\n{}"
    assert sock.calls == ["send", "sendall"]


def test_a_buffer_the_kernel_takes_whole_is_one_send():
    sock = TakesAFewBytesAtATime(per_send=1 << 20)

    send_all(sock, b"POST /v1/chat/completions HTTP/1.1\r\n\r\n")

    assert sock.calls == ["send"]


@pytest.mark.timeout(30)
def test_a_buffer_larger_than_the_socket_s_arrives_whole_on_a_real_socket():
    sender, receiver = socket.socketpair()
    sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    sender.settimeout(10)
    receiver.settimeout(10)
    data = bytes(range(256)) * 8192  # 2 MiB, far past the send buffer
    received = bytearray()

    def read_all():
        while len(received) < len(data):
            chunk = receiver.recv(65536)
            if not chunk:
                return
            received.extend(chunk)

    reader = threading.Thread(target=read_all, daemon=True)
    reader.start()
    try:
        send_all(sender, data)
        reader.join(timeout=10)
        assert not reader.is_alive(), "the reader did not get 2 MiB within 10 s"
        assert bytes(received) == data
    finally:
        sender.close()
        receiver.close()
