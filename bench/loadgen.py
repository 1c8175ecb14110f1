"""A closed-loop HTTP load generator cheap enough to share two cores with what it measures.

Each simulated user owns one raw keep-alive HTTP/1.1 connection and sends the same POST
again as soon as the previous answer is in. No HTTP library: writing prebuilt request bytes
and reading a Content-Length body costs a fraction of what the server under test spends.
"""

import asyncio
import json
import math
import time
from collections import Counter
from dataclasses import dataclass, field

# Transport failures: the connection is dropped and the next request opens a new one.
_CONNECTION_ERRORS = (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError)
# After a connection failure a user pauses this long, so a refusing server is not hammered in a hot loop.
_RECONNECT_PAUSE = 0.01


@dataclass(frozen=True)
class Target:
    port: int
    path: str
    json_body: dict
    # The gateway answers HTTP 200 with "success": true; a bare upstream needs only the 200.
    expect_success: bool = False
    headers: tuple[tuple[str, str], ...] = ()  # e.g. (("Authorization", "Bearer mmm_..."),)


@dataclass
class LoadResult:
    window_seconds: float
    latencies: list[float] = field(default_factory=list)  # seconds, of successes finished inside the window
    errors: Counter[str] = field(default_factory=Counter)  # kind -> count, over the whole run

    @property
    def requests_per_second(self) -> float:
        return len(self.latencies) / self.window_seconds

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def percentile_ms(self, fraction: float) -> float:
        """Nearest-rank percentile of the latencies, in milliseconds (NaN without any)."""
        if not self.latencies:
            return math.nan
        ordered = sorted(self.latencies)
        return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)] * 1000


class BadResponse(Exception):
    """The server answered, but not with the expected success."""


def request_bytes(target: Target) -> bytes:
    body = json.dumps(target.json_body).encode()
    head = (
        f"POST {target.path} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{target.port}\r\n"
        "Content-Type: application/json\r\n"
        + "".join(f"{name}: {value}\r\n" for name, value in target.headers)
        + f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, whether the server keeps the connection open) of one response."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split(" ", 2)[1])
    headers = dict(line.lower().split(": ", 1) for line in header_lines if ": " in line)
    if "content-length" not in headers:
        raise BadResponse("response without Content-Length")
    body = await reader.readexactly(int(headers["content-length"]))
    return status, body, headers.get("connection") != "close"


def check_answer(status: int, body: bytes, expect_success: bool) -> None:
    if status != 200:
        raise BadResponse(f"HTTP {status}")
    if expect_success:
        try:
            succeeded = json.loads(body).get("success") is True
        except (ValueError, AttributeError):
            succeeded = False
        if not succeeded:
            raise BadResponse('body without "success": true')


async def simulate_user(
    target: Target, request: bytes, start_at: float, window: tuple[float, float], timeout: float, result: LoadResult
) -> None:
    """Send requests back to back from ``start_at`` until the window closes, recording those finished inside it."""
    await asyncio.sleep(start_at - time.perf_counter())
    window_start, window_end = window
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    while time.perf_counter() < window_end:
        keep_alive = False
        try:
            async with asyncio.timeout(timeout):
                if reader is None or writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", target.port)
                started = time.perf_counter()
                writer.write(request)
                status, body, keep_alive = await read_response(reader)
            finished = time.perf_counter()
            check_answer(status, body, target.expect_success)
            if window_start <= finished <= window_end:
                result.latencies.append(finished - started)
        except BadResponse as exc:
            result.errors[str(exc)] += 1
        except ValueError:  # a status line or Content-Length that is not a number
            result.errors["unparseable response"] += 1
        except _CONNECTION_ERRORS as exc:
            result.errors["timeout" if isinstance(exc, TimeoutError) else f"connection: {type(exc).__name__}"] += 1
            await asyncio.sleep(_RECONNECT_PAUSE)
        if not keep_alive and writer is not None:
            writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


async def generate_load(target: Target, concurrency: int, warmup: float, duration: float, timeout: float) -> LoadResult:
    request = request_bytes(target)
    now = time.perf_counter()
    window = (now + warmup, now + warmup + duration)
    result = LoadResult(window_seconds=duration)
    # Users start spread over the warm-up so their requests do not stay in lockstep: with a
    # 1 s upstream, synchronized batches would land on either side of the window's edges.
    await asyncio.gather(
        *(
            simulate_user(target, request, now + warmup * i / concurrency, window, timeout, result)
            for i in range(concurrency)
        )
    )
    return result


def run_load(target: Target, *, concurrency: int, warmup: float, duration: float, timeout: float = 30.0) -> LoadResult:
    """Load ``target`` with ``concurrency`` users for ``warmup`` + ``duration`` seconds (plus the last answers)."""
    return asyncio.run(generate_load(target, concurrency, warmup, duration, timeout))
