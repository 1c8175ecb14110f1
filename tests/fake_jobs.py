"""What the fakes of asynchronous image and video APIs share (tests/fake_comfyui.py,
fake_replicate.py, fake_runway.py, fake_fal.py, fake_openai_videos.py): a book of jobs that
run for a set time on a server of a set capacity, the bytes each job produces, and the wire
helpers (path patterns, ``Range``, multipart bodies) their routes need.

A job's state is worked out from the clock whenever anyone looks, as an event simulation: a
queued job starts when it is eligible (``start_delay`` after submission) and a slot is free,
runs for ``duration`` seconds and ends at that instant, even if nobody polls for minutes. So
``finished_at`` is when the upstream finished, which the benchmark compares with when the
client saw ``completed``; and ``max_running`` is the most jobs this server ever ran at once.
"""

import re
import struct
import threading
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from tests.fake_upstream import FakeUpstream, Reply, Seen

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELED = "queued", "running", "succeeded", "failed", "canceled"
FINISHED = frozenset({SUCCEEDED, FAILED, CANCELED})


def png_bytes(label: str) -> bytes:
    """A valid 1x1 PNG whose tEXt chunk carries ``label``, so a test can tell whose result it holds."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)  # 1x1, 8-bit RGB
    pixels = zlib.compress(b"\x00\xff\x80\x00")  # filter byte, one orange pixel
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"tEXt", b"Comment\x00" + label.encode())
        + chunk(b"IDAT", pixels)
        + chunk(b"IEND", b"")
    )


def mp4_bytes(label: str, size: int = 4096) -> bytes:
    """An MP4-shaped byte string: an ``ftyp`` box, then an ``mdat`` box holding ``label`` and
    filler up to ``size`` bytes, large enough for ``Range`` requests to mean something."""
    ftyp = b"ftypisom" + b"\x00\x00\x02\x00" + b"isomiso2avc1mp41"
    ftyp = struct.pack(">I", len(ftyp) + 4) + ftyp
    content = label.encode() + b"\x00"
    content += bytes(index % 251 for index in range(max(0, size - len(ftyp) - 8 - len(content))))
    return ftyp + struct.pack(">I", len(content) + 8) + b"mdat" + content


@dataclass
class FakeJob:
    id: str
    body: Any  # the submission as the server parsed it
    submitted_at: float
    eligible_at: float  # when it may start: submitted_at + the book's start_delay
    duration: float
    failure: str | None  # set: the job fails at its end with this message
    started_at: float | None = None
    finished_at: float | None = None
    canceled_at: float | None = None
    number: int = 0  # its place in submission order (ComfyUI's "number")
    polls: int = 0  # how many times a client asked after it
    result: bytes = b""
    extra: dict = field(default_factory=dict)  # what one API keeps of its own (files, names)

    @property
    def state(self) -> str:
        if self.canceled_at is not None:
            return CANCELED
        if self.finished_at is not None:
            return FAILED if self.failure else SUCCEEDED
        return RUNNING if self.started_at is not None else QUEUED

    def progress(self, now: float) -> float:
        """0.0 to 1.0, rising evenly over the run."""
        if self.state == SUCCEEDED:
            return 1.0
        if self.started_at is None:
            return 0.0
        end = self.finished_at or self.canceled_at or now
        return min(1.0, max(0.0, (end - self.started_at) / self.duration)) if self.duration else 1.0


class JobBook:
    """The jobs of one fake server.

    ``capacity`` is how many run at once (None: no limit); ``fail_next`` makes the next that
    many submitted jobs fail at their end with ``failure``; ``reject_status`` answers every
    submission with that error status and ``poll_status`` every status request, for failover
    and "worker stopped answering" tests.
    """

    def __init__(
        self,
        *,
        duration: float = 0.5,
        capacity: int | None = None,
        start_delay: float = 0.0,
        media: str = "image",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.duration = duration
        self.capacity = capacity
        self.start_delay = start_delay
        self.media = media  # "image" (PNG results) or "video" (MP4-ish results)
        self.clock = clock
        self.fail_next = 0
        self.failure = "The model ran out of memory."
        self.reject_status: int | None = None
        self.poll_status: int | None = None
        self.jobs: dict[str, FakeJob] = {}
        self.max_running = 0
        self._simulated_until = clock()
        self._lock = threading.RLock()

    @property
    def result_type(self) -> str:
        return "video/mp4" if self.media == "video" else "image/png"

    @property
    def result_extension(self) -> str:
        return "mp4" if self.media == "video" else "png"

    def submit(self, body: Any, *, job_id: str | None = None, duration: float | None = None) -> FakeJob:
        with self._lock:
            now = self.clock()
            self._advance(now)
            job_id = job_id or str(uuid.uuid4())
            failure = None
            if self.fail_next > 0:
                self.fail_next -= 1
                failure = self.failure
            label = f"job {job_id}"
            job = FakeJob(
                id=job_id,
                body=body,
                submitted_at=now,
                eligible_at=now + self.start_delay,
                duration=self.duration if duration is None else duration,
                failure=failure,
                number=len(self.jobs),
                result=mp4_bytes(label) if self.media == "video" else png_bytes(label),
            )
            self.jobs[job_id] = job
            self._advance(now)
            return job

    def look(self, job_id: str, *, poll: bool = True) -> FakeJob | None:
        """The job as it stands now (None if this server never had it, or deleted it)."""
        with self._lock:
            self._advance(self.clock())
            job = self.jobs.get(job_id)
            if job is not None and poll:
                job.polls += 1
            return job

    def cancel(self, job_id: str) -> FakeJob | None:
        """Cancel a queued or running job; a finished one stays as it was."""
        with self._lock:
            now = self.clock()
            self._advance(now)
            job = self.jobs.get(job_id)
            if job is not None and job.state not in FINISHED:
                job.canceled_at = now
                self._advance(now)
            return job

    def forget(self, job_id: str) -> FakeJob | None:
        with self._lock:
            job = self.cancel(job_id)
            self.jobs.pop(job_id, None)
            return job

    def all(self) -> list[FakeJob]:
        with self._lock:
            self._advance(self.clock())
            return list(self.jobs.values())

    def queue_position(self, job: FakeJob) -> int:
        """How many queued jobs are ahead of this one (0: next to start)."""
        with self._lock:
            return sum(1 for other in self.jobs.values() if other.state == QUEUED and other.number < job.number)

    def running(self) -> list[FakeJob]:
        with self._lock:
            self._advance(self.clock())
            return [job for job in self.jobs.values() if job.state == RUNNING]

    def _advance(self, now: float) -> None:
        # Replays what happened since the last look, event by event in time order: a run that
        # ended frees its slot at the instant it ended and the next queued job starts then,
        # not when somebody next asks.
        while True:
            running = [job for job in self.jobs.values() if job.state == RUNNING]
            queued = [job for job in self.jobs.values() if job.state == QUEUED]
            ending = min(running, key=lambda job: job.started_at + job.duration, default=None)
            end_at = ending.started_at + ending.duration if ending else None
            starting = min(queued, key=lambda job: job.number, default=None)
            start_at = None
            if starting is not None and (self.capacity is None or len(running) < self.capacity):
                start_at = max(starting.eligible_at, self._simulated_until)
            if end_at is not None and end_at <= now and (start_at is None or end_at <= start_at):
                ending.finished_at = self._simulated_until = max(end_at, self._simulated_until)
            elif start_at is not None and start_at <= now:
                starting.started_at = self._simulated_until = start_at
                self.max_running = max(self.max_running, len(running) + 1)
            else:
                self._simulated_until = max(now, self._simulated_until)
                return


class FakeJobServer:
    """The part of every job fake that is not its API: the book, the server it is installed
    on, and its routes by pattern (``{name}`` matches one path segment, ``{name*}`` the rest)."""

    def __init__(self, **book: Any) -> None:
        self.book = JobBook(**book)
        self.upstream: FakeUpstream | None = None
        self._routes: list[tuple[str, re.Pattern, Callable[..., Reply], bool]] = []

    def route(self, method: str, pattern: str, handler: Callable[..., Reply], *, public: bool = False) -> None:
        """Answer ``method pattern`` with ``handler``; unless ``public`` (a result file's URL,
        which the real services hand out signed), only after ``refusal`` lets the request in."""
        regex = re.sub(r"\{(\w+)\*\}", r"(?P<\1>.+)", pattern)
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", regex)
        self._routes.append((method, re.compile(f"^{regex}$"), handler, public))

    def refusal(self, seen: Seen) -> Reply | None:
        """The API's answer to a request it does not let in (a wrong key, a missing header)."""
        return None

    def install(self, upstream: FakeUpstream) -> str:
        """Serve this API on ``upstream``; returns its base URL."""
        self.upstream = upstream
        upstream.default = self._dispatch
        return upstream.url("").rstrip("/")

    def start(self) -> "FakeJobServer":
        """Serve on a fresh FakeUpstream of its own (stop it with ``stop``)."""
        self.install(FakeUpstream().start())
        return self

    def stop(self) -> None:
        if self.upstream is not None:
            self.upstream.stop()

    @property
    def url(self) -> str:
        assert self.upstream is not None, "install the fake on a FakeUpstream first"
        return self.upstream.url("").rstrip("/")

    @property
    def seen(self) -> list[Seen]:
        return self.upstream.seen if self.upstream is not None else []

    def requests_about(self, job_id: str) -> list[Seen]:
        """Every request this server received whose path names the job (its polls, fetches, cancels)."""
        return [seen for seen in self.seen if job_id in seen.path]

    def _dispatch(self, seen: Seen) -> Reply:
        path = seen.path.split("?")[0]
        allowed = []
        for method, regex, handler, public in self._routes:
            match = regex.match(path)
            if match is None:
                continue
            if method != seen.method:
                allowed.append(method)
                continue
            refusal = None if public else self.refusal(seen)
            return refusal or handler(seen, **match.groupdict())
        if allowed:
            return self.not_found(seen, status=405)
        return self.not_found(seen)

    def not_found(self, seen: Seen, *, status: int = 404) -> Reply:
        return Reply(status=status, json={"error": f"no route {seen.method} {seen.path}"})

    def file_reply(self, seen: Seen, content: bytes, content_type: str) -> Reply:
        return ranged(seen, content, content_type)


def header(seen: Seen, name: str) -> str | None:
    """A request header by name in any case (the SDKs send theirs in lower case)."""
    wanted = name.lower()
    return next((value for key, value in seen.headers.items() if key.lower() == wanted), None)


def query(seen: Seen) -> dict[str, str]:
    from urllib.parse import parse_qsl, urlsplit

    return dict(parse_qsl(urlsplit(seen.path).query, keep_blank_values=True))


def ranged(seen: Seen, content: bytes, content_type: str) -> Reply:
    """``content`` whole, or the one byte range a ``Range: bytes=...`` header asks for (RFC 9110)."""
    headers = {"Content-Type": content_type, "Accept-Ranges": "bytes"}
    asked = header(seen, "Range")
    if not asked:
        return Reply(body=content, headers=headers)
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", asked.strip())
    total = len(content)
    if match is None or match.groups() == ("", ""):
        return Reply(status=416, body=b"", headers={**headers, "Content-Range": f"bytes */{total}"})
    first, last = match.groups()
    if first == "":
        start, end = max(0, total - int(last)), total - 1
    else:
        start, end = int(first), min(total - 1, int(last)) if last else total - 1
    if start >= total or start > end:
        return Reply(status=416, body=b"", headers={**headers, "Content-Range": f"bytes */{total}"})
    return Reply(
        status=206, body=content[start : end + 1], headers={**headers, "Content-Range": f"bytes {start}-{end}/{total}"}
    )


def form_fields(seen: Seen) -> dict[str, Any]:
    """A multipart/form-data body as {name: text} (a file part: {name: (filename, bytes, type)})."""
    content_type = header(seen, "Content-Type") or ""
    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + seen.body)
    if not message.is_multipart():
        raise ValueError("the body is not multipart/form-data")
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name is None:
            continue
        payload = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        if filename is not None:
            fields[name] = (filename, payload, part.get_content_type())
        else:
            fields[name] = payload.decode()
    return fields


def iso(instant: float | None, book: JobBook) -> str | None:
    """A monotonic instant of ``book`` as the wall-clock ISO 8601 time APIs print."""
    if instant is None:
        return None
    wall = time.time() - (book.clock() - instant)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(wall)) + f".{int(wall % 1 * 1e6):06d}Z"


def unix(instant: float | None, book: JobBook) -> int | None:
    if instant is None:
        return None
    return int(time.time() - (book.clock() - instant))
