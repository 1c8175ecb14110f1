"""CPU per request that gunicorn parses: ``python -m bench.http_parse [--requests N] [--rounds R]``.

Parses the benchmark's seed completion request (request line, the headers wrk sends, a JSON
body read to its end) with gunicorn's own parser, as a gevent worker does for every request,
once with the pure-Python parser and once with gunicorn_h1c's C parser (picohttpparser), which
gunicorn 25+ uses when it is installed (requirements.txt). Prints this process's CPU time per
request, the best of ``--rounds`` rounds of each, interleaved.
"""

import argparse
import sys
import time

from gunicorn.config import Config
from gunicorn.http.parser import RequestParser

BODY = b'{"model_name": "bench-fast", "input": "hello"}'
REQUEST = (
    b"POST /api/v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:8007\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n" % len(BODY)
) + BODY


class _Socket:
    """Hands the parser the request as a client socket would, in one read."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def recv(self, size: int) -> bytes:
        chunk, self._data = self._data[:size], self._data[size:]
        return chunk


def parse_once(config: Config) -> None:
    request = next(RequestParser(config, _Socket(REQUEST), ("127.0.0.1", 50000)))
    assert request.method == "POST" and request.body.read() == BODY


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.http_parse", description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    configs = {}
    for name in ("python", "fast"):
        config = Config()
        config.set("http_parser", name)
        try:
            parse_once(config)
        except RuntimeError as exc:  # 'fast' without gunicorn_h1c installed
            print(f"{name}: {exc}", file=sys.stderr)
            continue
        configs[name] = config
    best = dict.fromkeys(configs, float("inf"))
    for _ in range(args.rounds):
        for name, config in configs.items():
            started = time.process_time()
            for _ in range(args.requests):
                parse_once(config)
            best[name] = min(best[name], (time.process_time() - started) / args.requests * 1e6)
    for name, micros in best.items():
        print(f"gunicorn's {name} parser: {micros:.1f} µs of CPU per request parsed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
