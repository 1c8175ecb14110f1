"""Fleet benchmark: routing strategies in front of simulated vLLM engines.

``python -m bench.fleet`` starts N simulated engines (one process, each on its own port, each
serving vLLM's OpenAI chat API, streamed, and its /metrics names), the gateway as ``make
serve`` runs it (with its engine scraper; routing state in Redis db 9 when Redis answers), and
replays two workloads through it for each strategy:

(a) multi-turn chats: users share a few long system prompts, and every turn resends the
    conversation so far (the case prefix caching is for);
(b) independent short prompts, no prefix shared.

It reports time to first token (as the client sees it, through the gateway) p50 and p99, output
tokens per second and the fleet's prefix-cache hit rate (tokens found in the engines' caches /
prompt tokens), then fills one engine's queue with traffic that does not pass through the
gateway and counts the share of new requests engine_aware still sends it.

This is a simulation. An engine here is an asyncio loop that behaves like vLLM where routing can
tell the difference: continuous batching of at most MAX_RUNNING sequences with a waiting queue
beyond; a prefix KV cache of CACHE_BLOCKS blocks of BLOCK_TOKENS tokens with LRU eviction;
prefill time proportional to the prompt tokens not found in the cache (at most
MAX_BATCHED_TOKENS a step, as chunked prefill does); decode time per step growing with the batch.
The constants are in the range vLLM's published benchmarks give for an 8B model on one
A100-class GPU; docs/routing.md lists them. No GPU, model or tokenizer is involved: a token is
four characters.
"""

import argparse
import asyncio
import json
import math
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections import OrderedDict, deque
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from bench.routing import SharedState, delete_state, shared_state, state_env
from bench.run import ROOT, SetupError, call_json, gateway_env, migrate, running_gateway, stop_process

# --- The simulated engine's constants (seconds of engine time) ------------------------------
MAX_RUNNING = 64  # sequences decoded at once (vLLM's max_num_seqs, set for the GPU's memory)
MAX_BATCHED_TOKENS = 2048  # prompt tokens prefilled per step (chunked prefill's budget)
BLOCK_TOKENS = 16  # vLLM's KV block size
CACHE_BLOCKS = 1536  # 24,576 tokens of KV cache
CHARS_PER_TOKEN = 4
DECODE_BASE_SECONDS = 0.012  # one decode step at batch 1
DECODE_PER_SEQUENCE_SECONDS = 0.0002  # each further sequence in the batch (about 25 ms at 64)
PREFILL_SECONDS_PER_TOKEN = 1 / 12_000  # about 12k prompt tokens a second
STREAM_EVERY_TOKENS = 8  # tokens per streamed event after the first (keeps the relay cheap)

# --- The workloads ---------------------------------------------------------------------------
ENGINES = 4
USERS = 32  # conversations (or prompt senders) at once, each one request at a time
SYSTEM_PROMPTS = 24
SYSTEM_PROMPT_TOKENS = 3000
TURNS = 6
USER_TURN_TOKENS = 100
SHORT_PROMPT_TOKENS = 200
OUTPUT_TOKENS = 64
OUTSIDE_USERS = 96  # more than MAX_RUNNING: the rest wait in the engine's queue
STRATEGIES = ("round_robin", "least_loaded", "engine_aware", "prefix_aware")
REQUEST_TIMEOUT = 120.0
REDIS_DB_URL = "redis://127.0.0.1:6379/9"


# --- One simulated engine --------------------------------------------------------------------


@dataclass(eq=False)
class Sequence:
    prompt_blocks: list[int]
    prompt_tokens: int
    max_tokens: int
    to_prefill: int = 0
    generated: int = 0
    first_ready: bool = False
    submitted: float = field(default_factory=time.perf_counter)
    events: asyncio.Queue = field(default_factory=asyncio.Queue)


class Engine:
    def __init__(self, scale: float):
        self.scale = scale
        self.cache: OrderedDict[int, None] = OrderedDict()
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.wake = asyncio.Event()
        self.reset()

    def reset(self) -> None:
        self.cache.clear()
        self.requests = {"gateway": 0, "outside": 0}
        self.mark()

    def mark(self) -> None:
        """Count from now on: the measured window begins (the cache stays warm)."""
        self.queries = self.hits = 0
        self.ttft: list[float] = []  # submission to first token, inside the engine
        self.marked_at = time.perf_counter()

    def submit(self, *, text: str, max_tokens: int, source: str) -> Sequence:
        self.requests[source] += 1
        size = BLOCK_TOKENS * CHARS_PER_TOKEN
        blocks, previous = [], 0
        for start in range(0, len(text) - size + 1, size):
            previous = hash((previous, text[start : start + size]))
            blocks.append(previous)
        sequence = Sequence(blocks, math.ceil(len(text) / CHARS_PER_TOKEN), max_tokens)
        self.waiting.append(sequence)
        self.wake.set()
        return sequence

    def _admit(self, sequence: Sequence) -> None:
        matched = 0
        for block in sequence.prompt_blocks:
            if block not in self.cache:
                break
            self.cache.move_to_end(block)
            matched += 1
        cached_tokens = min(matched * BLOCK_TOKENS, sequence.prompt_tokens - 1)  # the last is always computed
        self.queries += sequence.prompt_tokens
        self.hits += cached_tokens
        sequence.to_prefill = sequence.prompt_tokens - cached_tokens
        self.running.append(sequence)

    def _cache(self, sequence: Sequence) -> None:
        # Deepest block first: a prefix's first blocks are the most recently used, evicted last.
        for block in reversed(sequence.prompt_blocks):
            self.cache[block] = None
            self.cache.move_to_end(block)
        while len(self.cache) > CACHE_BLOCKS:
            self.cache.popitem(last=False)

    @property
    def kv_cache_usage(self) -> float:
        held = sum(math.ceil((s.prompt_tokens + s.generated) / BLOCK_TOKENS) for s in self.running)
        return min(held / CACHE_BLOCKS, 1.0)

    async def run(self) -> None:
        while True:
            while self.waiting and len(self.running) < MAX_RUNNING:
                self._admit(self.waiting.popleft())
            if not self.running:
                self.wake.clear()
                await self.wake.wait()
                continue
            budget, prefilled, decoding = MAX_BATCHED_TOKENS, 0, []
            for sequence in self.running:
                if sequence.to_prefill > 0:
                    take = min(sequence.to_prefill, budget)
                    sequence.to_prefill -= take
                    budget -= take
                    prefilled += take
                    sequence.first_ready = sequence.to_prefill == 0
                else:
                    decoding.append(sequence)
            step = DECODE_BASE_SECONDS + DECODE_PER_SEQUENCE_SECONDS * len(decoding)
            await asyncio.sleep((step + prefilled * PREFILL_SECONDS_PER_TOKEN) * self.scale)
            for sequence in self.running:
                if sequence.first_ready:
                    sequence.first_ready = False
                    sequence.generated = 1
                    self._cache(sequence)
                    if sequence.submitted >= self.marked_at:  # submitted in the window, as the client counts
                        self.ttft.append(time.perf_counter() - sequence.submitted)
                    sequence.events.put_nowait(1)
            for sequence in decoding:
                sequence.generated += 1
                if sequence.generated >= sequence.max_tokens or sequence.generated % STREAM_EVERY_TOKENS == 0:
                    sequence.events.put_nowait(sequence.generated)
            finished = [s for s in self.running if s.generated >= s.max_tokens and s.to_prefill == 0]
            for sequence in finished:
                sequence.events.put_nowait(None)
                self.running.remove(sequence)

    def metrics(self) -> str:
        labels = 'engine="0",model_name="sim-8b"'
        return (
            "# TYPE vllm:num_requests_running gauge\n"
            f"vllm:num_requests_running{{{labels}}} {float(len(self.running))}\n"
            "# TYPE vllm:num_requests_waiting gauge\n"
            f"vllm:num_requests_waiting{{{labels}}} {float(len(self.waiting))}\n"
            "# TYPE vllm:kv_cache_usage_perc gauge\n"
            f"vllm:kv_cache_usage_perc{{{labels}}} {self.kv_cache_usage}\n"
            "# TYPE vllm:prefix_cache_queries counter\n"
            f"vllm:prefix_cache_queries_total{{{labels}}} {float(self.queries)}\n"
            "# TYPE vllm:prefix_cache_hits counter\n"
            f"vllm:prefix_cache_hits_total{{{labels}}} {float(self.hits)}\n"
            "# TYPE vllm:cache_config_info gauge\n"
            f'vllm:cache_config_info{{block_size="{BLOCK_TOKENS}",num_gpu_blocks="{CACHE_BLOCKS}"}} 1.0\n'
        )


def render(messages: list[dict]) -> str:
    return "".join(f"<|{m.get('role')}|>\n{m.get('content')}\n" for m in messages)


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _event(document: dict) -> bytes:
    return _chunk(b"data: " + json.dumps(document).encode() + b"\n\n")


async def serve_engine_connection(engine: Engine, reader, writer) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *lines = head.decode("latin-1").split("\r\n")
            method, target, _ = request_line.split(" ", 2)
            headers = dict(line.lower().split(": ", 1) for line in lines if ": " in line)
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            path = target.partition("?")[0]
            if method == "GET" and path == "/metrics":
                await _respond(writer, 200, engine.metrics().encode(), "text/plain; version=0.0.4")
            elif path == "/stats":
                stats = {"queries": engine.queries, "hits": engine.hits, "ttft": engine.ttft, **engine.requests}
                await _respond(writer, 200, json.dumps(stats).encode(), "application/json")
            elif path in ("/reset", "/mark"):
                engine.reset() if path == "/reset" else engine.mark()
                await _respond(writer, 200, b"{}", "application/json")
            elif method == "POST" and path == "/v1/chat/completions":
                await _chat(engine, json.loads(body), writer)
            else:
                await _respond(writer, 404, b'{"error": "no such route"}', "application/json")
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def _respond(writer, status: int, payload: bytes, content_type: str) -> None:
    writer.write(
        f"HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
        + payload
    )
    await writer.drain()


async def _chat(engine: Engine, body: dict, writer) -> None:
    source = "outside" if body.get("user") == "outside" else "gateway"
    max_tokens = int(body.get("max_tokens") or OUTPUT_TOKENS)
    sequence = engine.submit(text=render(body.get("messages") or []), max_tokens=max_tokens, source=source)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
    sent = 0
    base = {"id": "chatcmpl-sim", "object": "chat.completion.chunk", "created": int(time.time()), "model": "sim-8b"}
    while (generated := await sequence.events.get()) is not None:
        words = "".join(f"t{n} " for n in range(sent, generated))
        delta = {"content": words, **({"role": "assistant"} if sent == 0 else {})}
        writer.write(_event({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}))
        sent = generated
        await writer.drain()
    writer.write(_event({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}))
    writer.write(_chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
    await writer.drain()


async def serve_engines(sockets: list[socket.socket], scale: float) -> None:
    servers = []
    for sock in sockets:
        engine = Engine(scale)
        asyncio.get_running_loop().create_task(engine.run())
        servers.append(
            await asyncio.start_server(lambda r, w, engine=engine: serve_engine_connection(engine, r, w), sock=sock)
        )
    await asyncio.gather(*(server.serve_forever() for server in servers))


@contextmanager
def engine_process(count: int, scale: float):
    """N simulated engines in a process of their own; yields their ports."""
    sockets = [socket.create_server(("127.0.0.1", 0), backlog=1024) for _ in range(count)]
    fds = ",".join(str(sock.fileno()) for sock in sockets)
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.fleet", "--engine-fds", fds, "--scale", str(scale)],
        cwd=ROOT,
        pass_fds=[sock.fileno() for sock in sockets],
        start_new_session=True,
    )
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    try:
        yield ports
    finally:
        stop_process(process)


# --- The clients -----------------------------------------------------------------------------


@dataclass
class Outcome:
    ttft: list[float] = field(default_factory=list)
    output_tokens: int = 0
    errors: int = 0


async def stream_chat(port: int, body: dict, outcome: Outcome | None, window: tuple[float, float]) -> str:
    """One streamed chat through ``port``; returns the answer's text. Its time to first token
    counts when it started inside ``window``, its tokens when they arrived inside it."""
    payload = json.dumps({**body, "stream": True}).encode()
    started = time.perf_counter()
    text, first = [], None
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                writer.write(
                    f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    f"Connection: close\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
                    + payload
                )
                head = await reader.readuntil(b"\r\n\r\n")
                if int(head.split(b" ", 2)[1]) != 200:
                    raise ValueError(head[:100])
                pending = b""
                while True:
                    size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                    if size == 0:
                        break
                    pending += (await reader.readexactly(size + 2))[:-2]
                    while b"\n\n" in pending:
                        event, pending = pending.split(b"\n\n", 1)
                        data = event.removeprefix(b"data: ")
                        if data == b"[DONE]":
                            continue
                        choices = json.loads(data).get("choices") or [{}]
                        content = (choices[0].get("delta") or {}).get("content")
                        if content:
                            now = time.perf_counter()
                            first = first or now
                            text.append(content)
                            if outcome is not None and window[0] <= now <= window[1]:
                                outcome.output_tokens += len(content.split())  # tokens arriving in the window
            finally:
                writer.close()
    except (TimeoutError, OSError, ValueError, asyncio.IncompleteReadError):
        if outcome is not None and window[0] <= started < window[1]:
            outcome.errors += 1
        return ""
    # Every request that started in the window counts, however long it took: leaving out the
    # ones that ran past its end would leave out the slowest.
    if outcome is not None and window[0] <= started < window[1] and first is not None:
        outcome.ttft.append(first - started)
    return "".join(text)


def words(rng: random.Random, tokens: int) -> str:
    # Four characters a token, as the engine counts; random so no two users share a prefix.
    return "".join(f"{rng.randrange(1000):03d} " for _ in range(tokens))


SYSTEM_TEXTS = [
    f"System prompt {n}: you are assistant {n}. " + words(random.Random(n), SYSTEM_PROMPT_TOKENS)
    for n in range(SYSTEM_PROMPTS)
]


async def chat_user(port: int, model: str, rng: random.Random, until: float, outcome: Outcome, window) -> None:
    while time.perf_counter() < until:
        messages = [{"role": "system", "content": rng.choice(SYSTEM_TEXTS)}]
        for _ in range(TURNS):
            if time.perf_counter() >= until:
                return
            messages.append({"role": "user", "content": words(rng, USER_TURN_TOKENS)})
            body = {"model": model, "messages": messages, "max_tokens": OUTPUT_TOKENS}
            answer = await stream_chat(port, body, outcome, window)
            messages.append({"role": "assistant", "content": answer})


async def short_user(port: int, model: str, rng: random.Random, until: float, outcome: Outcome, window) -> None:
    while time.perf_counter() < until:
        body = {
            "model": model,
            "messages": [{"role": "user", "content": words(rng, SHORT_PROMPT_TOKENS)}],
            "max_tokens": OUTPUT_TOKENS,
        }
        await stream_chat(port, body, outcome, window)


async def outside_user(port: int, rng: random.Random, until: float) -> None:
    """Traffic straight to one engine, not through the gateway (another gateway, a batch job)."""
    while time.perf_counter() < until:
        body = {"model": "x", "user": "outside", "max_tokens": 256}
        body["messages"] = [{"role": "user", "content": words(rng, 1000)}]
        await stream_chat(port, body, None, (0, 0))


async def replay(
    port: int, model: str, workload: str, *, warmup: float, duration: float, seed: int, engine_ports: list[int]
) -> Outcome:
    outcome = Outcome()
    start = time.perf_counter()
    window = (start + warmup, start + warmup + duration)
    user = chat_user if workload == "a" else short_user

    async def mark_engines() -> None:
        # The engines' counts (cache hits, their own TTFT) start with the measured window.
        await asyncio.sleep(warmup)
        await asyncio.to_thread(lambda: [engine_json(engine, "/mark") for engine in engine_ports])

    await asyncio.gather(
        mark_engines(),
        *(user(port, model, random.Random(seed * 1000 + n), window[1], outcome, window) for n in range(USERS)),
    )
    return outcome


# --- Running ---------------------------------------------------------------------------------


def percentile_ms(values: list[float], fraction: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)] * 1000


def engine_json(port: int, path: str) -> dict:
    status, answer = call_json(port, "POST" if path in ("/reset", "/mark") else "GET", path)
    if status != 200:
        raise SetupError(f"engine on {port} answered {path} with HTTP {status}")
    return answer


def register_fleet(gateway_port: int, engine_ports: list[int], model: str, strategy: str) -> None:
    for port in engine_ports:
        document = {"model_name": model, "preset": "vllm", "base_url": f"http://127.0.0.1:{port}/v1", "timeout": 300}
        status, answer = call_json(gateway_port, "POST", "/api/server/register", document)
        if status != 200:
            raise SetupError(f"registering {document} failed: HTTP {status} {answer}")
    status, answer = call_json(gateway_port, "POST", "/api/server/policy", {"model_name": model, "strategy": strategy})
    if status != 200:
        raise SetupError(f"setting {strategy} on {model} failed: HTTP {status} {answer}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # until the scraper has read every engine of the model
        status, answer = call_json(gateway_port, "GET", f"/api/server/workers?model_name={model}")
        if status == 200 and all((row.get("engine_state") or {}).get("fresh") for row in answer["data"]):
            time.sleep(1.5)  # and every gateway process has the model's policy
            return
        time.sleep(0.2)
    raise SetupError(f"the gateway's scraper did not read the engines of {model} within 30 s")


def unregister_fleet(gateway_port: int, engine_ports: list[int], model: str) -> None:
    for port in engine_ports:
        call_json(
            gateway_port,
            "POST",
            "/api/server/offline",
            {"model_name": model, "req_url_template": f"http://127.0.0.1:{port}/v1"},
        )


@dataclass
class Row:
    strategy: str
    workload: str
    outcome: Outcome
    duration: float
    hit_rate: float
    engine_ttft: list[float]


def run_one(gateway_port, engine_ports, strategy, workload, args, seed) -> Row:
    model = f"fleet-{strategy}-{workload}"
    for port in engine_ports:
        engine_json(port, "/reset")
    register_fleet(gateway_port, engine_ports, model, strategy)
    print(f"  {strategy}, workload ({workload}) ...", file=sys.stderr, flush=True)
    outcome = asyncio.run(
        replay(
            gateway_port,
            model,
            workload,
            warmup=args.warmup,
            duration=args.duration,
            seed=seed,
            engine_ports=engine_ports,
        )
    )
    stats = [engine_json(port, "/stats") for port in engine_ports]
    queries = sum(s["queries"] for s in stats)
    unregister_fleet(gateway_port, engine_ports, model)
    hit_rate = sum(s["hits"] for s in stats) / queries if queries else 0.0
    return Row(strategy, workload, outcome, args.duration, hit_rate, [t for s in stats for t in s["ttft"]])


def run_outside(gateway_port, engine_ports, args) -> tuple[int, int]:
    """(new requests engine_aware sent the engine whose queue outside traffic filled, all new requests)."""
    model = "fleet-outside"
    for port in engine_ports:
        engine_json(port, "/reset")
    busy = engine_ports[0]

    async def scenario() -> None:
        until = time.perf_counter() + args.warmup + args.duration + 3
        outside = [outside_user(busy, random.Random(n), until) for n in range(OUTSIDE_USERS)]
        runner = asyncio.gather(*outside)
        await asyncio.sleep(3)  # the queue fills, and the scraper reads it
        await asyncio.to_thread(register_fleet, gateway_port, engine_ports, model, "engine_aware")
        await replay(gateway_port, model, "b", warmup=0, duration=args.duration, seed=99, engine_ports=[])
        await runner

    print("  engine_aware, one engine's queue filled from outside ...", file=sys.stderr, flush=True)
    asyncio.run(scenario())
    counts = [engine_json(port, "/stats")["gateway"] for port in engine_ports]
    unregister_fleet(gateway_port, engine_ports, model)
    return counts[0], sum(counts)


def table(rows: list[Row]) -> str:
    lines = [
        "| workload | strategy | TTFT p50 ms | TTFT p99 ms | in the engine p50 | output tok/s | cache hit rate "
        "| requests | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        o = row.outcome
        lines.append(
            f"| ({row.workload}) | {row.strategy} | {percentile_ms(o.ttft, 0.5):.0f} | {percentile_ms(o.ttft, 0.99):.0f} "
            f"| {percentile_ms(row.engine_ttft, 0.5):.0f} | {o.output_tokens / row.duration:.0f} | {row.hit_rate:.1%} | {len(o.ttft)} | {o.errors} |"
        )
    return "\n".join(lines)


def target_lines(rows: list[Row], outside: tuple[int, int] | None) -> list[str]:
    by = {(row.workload, row.strategy): row for row in rows}
    lines = []
    base, prefix = by.get(("a", "least_loaded")), by.get(("a", "prefix_aware"))
    if base and prefix:
        ttft = percentile_ms(base.outcome.ttft, 0.5) / percentile_ms(prefix.outcome.ttft, 0.5)
        throughput = prefix.outcome.output_tokens / max(base.outcome.output_tokens, 1)
        lines.append(
            f"(a) prefix_aware against least_loaded: TTFT p50 {ttft:.1f}x lower (target >= 3x), "
            f"throughput {throughput:.2f}x (target >= 1.5x)"
        )
    base_b = by.get(("b", "least_loaded"))
    for strategy in ("engine_aware", "prefix_aware"):
        row = by.get(("b", strategy))
        if base_b and row:
            ratio = row.outcome.output_tokens / max(base_b.outcome.output_tokens, 1)
            lines.append(f"(b) {strategy} throughput {ratio:.1%} of least_loaded's (target within 5%)")
    if outside is None:
        return lines
    lines.append(
        f"outside traffic: engine_aware sent the filled engine {outside[0]} of {outside[1]} new requests "
        f"({outside[0] / max(outside[1], 1):.1%}; target < 5%)"
    )
    return lines


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench.fleet", description=__doc__.splitlines()[0])
    parser.add_argument("--engines", type=int, default=ENGINES, help=f"simulated engines, 4 to 8 ({ENGINES})")
    parser.add_argument("--duration", type=float, default=15.0, help="measured seconds of each run (15)")
    parser.add_argument("--warmup", type=float, default=5.0, help="unmeasured seconds before each run (5)")
    parser.add_argument("--scale", type=float, default=2.0, help="wall seconds per second of engine time (2)")
    parser.add_argument("--strategies", default=",".join(STRATEGIES), help="comma-separated (all four)")
    parser.add_argument("--workloads", default="a,b", help="comma-separated: a, b (both)")
    parser.add_argument("--no-outside", action="store_true", help="skip the outside-traffic case")
    parser.add_argument("--engine-fds", help=argparse.SUPPRESS)  # the engines' process
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.engine_fds:
        sockets = [socket.socket(fileno=int(fd)) for fd in args.engine_fds.split(",")]
        asyncio.run(serve_engines(sockets, args.scale))
        return 0
    if not 4 <= args.engines <= 8:
        print("--engines must be 4 to 8", file=sys.stderr)
        return 2
    state: SharedState = shared_state()
    print(f"mmm fleet benchmark (a simulation): {state.describe()}", file=sys.stderr)
    load_before = os.getloadavg()[0]
    try:
        with tempfile.TemporaryDirectory(prefix="mmm-bench-fleet-") as tmp:
            env = state_env(gateway_env(Path(tmp)), state)
            migrate(env)
            with engine_process(args.engines, args.scale) as ports, running_gateway(env, Path(tmp) / "gw.log") as gw:
                rows = [
                    run_one(gw.port, ports, strategy, workload, args, seed=7)
                    for workload in args.workloads.split(",")
                    for strategy in args.strategies.split(",")
                ]
                outside = None if args.no_outside else run_outside(gw.port, ports, args)
    except SetupError as exc:
        print(f"fleet benchmark setup failed: {exc}", file=sys.stderr)
        return 1
    finally:
        with suppress(Exception):
            delete_state(state)
    print(f"{args.engines} simulated vLLM engines, {USERS} users at once; {state.describe()}")
    print(f"{os.cpu_count()} CPUs, load average (1 min) {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
    print()
    print(table(rows))
    print()
    print("\n".join(target_lines(rows, outside)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
