"""Sending a small buffer on a gevent socket in one system call.

gevent's ``sendall`` asks the kernel for the socket's send buffer size (``getsockopt``) on every
call, to cut large buffers into chunks, before it sends anything. The gateway's own sends are a
request head and body, or a response head and body, far below any buffer: one ``send`` takes
them whole, and only what it leaves goes through ``sendall``.
"""


def send_all(sock, data: bytes) -> None:
    """``sock.sendall(data)``, in one ``send`` when the kernel takes it all (almost always)."""
    sent = sock.send(data)
    if sent < len(data):
        sock.sendall(memoryview(data)[sent:])
