"""CPU per upstream call of three pooled HTTP clients under gevent: ``python -m bench.clients``.

requests' ``Session`` (what the gateway used until issue 16), urllib3's ``PoolManager`` (what
requests is built on, the gateway's client outside gevent), ``geventhttpclient``'s own
``HTTPClient`` (Locust's client for the same reason), and the gateway's ``upstream.send`` over
each of its two pools (``inference.upstream_gevent``'s, which its gevent workers use, and
urllib3's): what one call costs with the egress check, the headers, the deadlines and the
typed errors on top. Each calls bench.upstream's ``/fast`` with the seed's JSON body from 32
greenlets of one process, as a gunicorn gevent worker would.
The figure is this process's CPU time (``time.process_time``) per call; the upstream runs in its
own process. Each client runs ``--rounds`` times, interleaved, and the median round is printed.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import gevent  # noqa: E402
import gevent.pool  # noqa: E402

BODY = json.dumps({"input": "hello", "model_name": "bench-fast"}).encode()
HEADERS = {"Content-Type": "application/json"}


def requests_client(base: str) -> Callable[[], bytes]:
    import requests

    session = requests.Session()
    session.trust_env = False
    session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=64, max_retries=0))

    def call() -> bytes:
        response = session.post(f"{base}/fast", data=BODY, headers=HEADERS, timeout=(3, 30), stream=True)
        with response:
            return response.raw.read(decode_content=True)

    return call


def urllib3_client(base: str) -> Callable[[], bytes]:
    import urllib3

    pool = urllib3.PoolManager(maxsize=64, retries=False)
    timeout = urllib3.Timeout(connect=3, read=30)

    def call() -> bytes:
        response = pool.urlopen(
            "POST", f"{base}/fast", body=BODY, headers=HEADERS, timeout=timeout, redirect=False, preload_content=False
        )
        try:
            return response.read(decode_content=True)
        finally:
            response.release_conn()

    return call


def urllib3_host_pool_client(base: str) -> Callable[[], bytes]:
    """urllib3's pool of one host, called without the PoolManager's per-call pool lookup."""
    import urllib3

    pool = urllib3.PoolManager(maxsize=64, retries=False).connection_from_url(base)
    timeout = urllib3.Timeout(connect=3, read=30)

    def call() -> bytes:
        response = pool.urlopen(
            "POST",
            "/fast",
            body=BODY,
            headers=HEADERS,
            timeout=timeout,
            redirect=False,
            preload_content=False,
            retries=False,
            assert_same_host=False,
        )
        try:
            return response.read(decode_content=True)
        finally:
            response.release_conn()

    return call


def geventhttpclient_client(base: str) -> Callable[[], bytes]:
    from geventhttpclient import URL, HTTPClient

    url = URL(f"{base}/fast")
    client = HTTPClient.from_url(url, concurrency=64, connection_timeout=3, network_timeout=30)

    def call() -> bytes:
        response = client.post(url.request_uri, body=BODY, headers=HEADERS)
        return response.read()

    return call


def gateway_client(base: str, *, client: str) -> Callable[[], bytes]:
    """``inference.upstream.send`` as the hot path calls it, over the pools ``client`` names."""
    import os

    import certifi
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mmm.settings")
    django.setup()
    from inference import upstream, upstream_gevent

    if client == "geventhttpclient":
        pool = upstream_gevent.GeventPools(pool_size=64, ca_certs=certifi.where())
    else:
        pool = upstream.new_pool(pool_size=64)
    request = upstream.UpstreamRequest("POST", f"{base}/fast", json_body=json.loads(BODY))

    def call() -> bytes:
        return upstream.send(request, timeout=30, pool=pool).content

    return call


def round_cpu(call: Callable[[], bytes], *, calls: int, concurrency: int) -> float:
    pool = gevent.pool.Pool(concurrency)
    started = time.process_time()
    for _ in range(calls):
        pool.spawn(call)
    pool.join(raise_error=True)
    return (time.process_time() - started) / calls


def main(argv: list[str] | None = None) -> int:
    from bench.run import upstream_process

    parser = argparse.ArgumentParser(prog="python -m bench.clients", description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000, help="calls per round (3000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per client (5)")
    parser.add_argument("--concurrency", type=int, default=32, help="greenlets calling at once (32)")
    args = parser.parse_args(argv)
    with upstream_process("bench.upstream", fd_flag="--fd", args=["/fast=0"]) as port:
        base = f"http://127.0.0.1:{port}"
        clients = {
            "requests.Session": requests_client(base),
            "urllib3.PoolManager": urllib3_client(base),
            "urllib3 HTTPConnectionPool": urllib3_host_pool_client(base),
            "geventhttpclient": geventhttpclient_client(base),
            "upstream.send, urllib3 (outside gevent)": gateway_client(base, client="urllib3"),
            "upstream.send, geventhttpclient (gevent workers)": gateway_client(base, client="geventhttpclient"),
        }
        for call in clients.values():
            assert b'"answer": "hello"' in call(), "the upstream did not answer as expected"
            round_cpu(call, calls=200, concurrency=args.concurrency)  # warm: connections, caches
        rounds: dict[str, list[float]] = {name: [] for name in clients}
        for _ in range(args.rounds):
            for name, call in clients.items():
                rounds[name].append(round_cpu(call, calls=args.calls, concurrency=args.concurrency))
    print(f"| client | CPU per call, median of {args.rounds} rounds of {args.calls} (µs) | fastest round (µs) |")
    print("|---|---:|---:|")
    for name, values in rounds.items():
        print(f"| {name} | {statistics.median(values) * 1e6:.0f} | {min(values) * 1e6:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
