"""The gateway's own time per request, in one process: ``python -m bench.v1_overhead``.

The WSGI application as gunicorn calls it (mmm.handler's chains, no sockets on the client side)
against a loopback fake upstream, for the seed endpoint on a template worker and /v1/chat/completions on a template
worker and an openai worker, whole and streamed. CPU time is counted (``time.process_time``,
the fake upstream's thread included, the same for every tree), so a loaded machine moves it far
less than wall time. Runs against the tree it is started in: ``cd <tree> && .venv/bin/python
<this file>`` measures that tree's code, so two commits can be compared back to back.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.getcwd())  # the tree it is started in, not the one the file is in
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mmm.settings")
_TMP = tempfile.mkdtemp(prefix="mmm-overhead-")
os.environ["DATABASE_URL"] = f"sqlite:///{_TMP}/overhead.sqlite3"
os.environ["MMM_VAR_DIR"] = _TMP
os.environ["MMM_REQUIRE_AUTH"] = "false"
os.environ.pop("REDIS_URL", None)

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.test import Client, RequestFactory  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402

from mmm.handler import GatewayWSGIHandler  # noqa: E402
from tests.fake_model_apis import OpenAIServer  # noqa: E402
from tests.fake_upstream import FakeUpstream  # noqa: E402

SEED_ANSWER = {"data": {"items": [{"attributes": {"answer": "I am a fake model."}}]}}
CHAT = [{"role": "user", "content": "hello"}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="requests per round (200)")
    parser.add_argument("--rounds", type=int, default=7, help="rounds per scenario (7)")
    parser.add_argument("--only", help="run only the scenarios whose name contains this")
    parser.add_argument("--profile", action="store_true", help="print cProfile's top functions instead")
    parser.add_argument("--callees", metavar="FUNCTION", help="with --profile: also what FUNCTION (a name) calls")
    parser.add_argument("--callers", metavar="FUNCTION", help="with --profile: also what calls FUNCTION (a name)")
    parser.add_argument(
        "--by-package",
        action="store_true",
        help="with --profile: also the calls per request of each package, and the functions called most",
    )
    args = parser.parse_args()

    setup_test_environment()
    call_command("migrate", verbosity=0)
    upstream = FakeUpstream().start()
    client = Client()
    seed = {
        "model_name": "tpl",
        "req_url_template": upstream.on("/gen", json=SEED_ANSWER),
        "body": {"input": "{USER_PROMPT}"},
        "response_extract": "data.items[].attributes.answer",
    }
    assert client.post("/api/server/register", seed, content_type="application/json").status_code == 200
    base = OpenAIServer().install(upstream)
    openai = {"model_name": "gpt", "preset": "openai", "base_url": base, "upstream_model": "up-model"}
    assert client.post("/api/server/register", openai, content_type="application/json").status_code == 200

    # Called as gunicorn calls it (the WSGI application of mmm/wsgi.py, its handler and
    # middleware chains), not through the test client's handler.
    application = GatewayWSGIHandler()
    requests = RequestFactory()

    def wsgi_post(path: str, body: dict) -> bytes:
        started = []
        answer = application(
            requests.post(path, body, content_type="application/json").environ,
            lambda status, headers: started.append(status),
        )
        try:
            content = b"".join(answer)
        finally:
            answer.close()
        assert started[0].startswith("200"), (started, content[:300])
        return content

    def seed_call():
        wsgi_post("/api/v1/chat/completions", {"model_name": "tpl", "input": "hi"})

    def v1(model: str, stream: bool):
        def call():
            body = wsgi_post("/v1/chat/completions", {"model": model, "messages": CHAT, "stream": stream})
            if stream:
                assert body.endswith(b"data: [DONE]\n\n"), body[-200:]

        return call

    scenarios = {
        "seed endpoint, template worker": seed_call,
        "/v1 chat, template worker": v1("tpl", False),
        "/v1 chat streamed, template worker": v1("tpl", True),
        "/v1 chat, openai worker": v1("gpt", False),
        "/v1 chat streamed, openai worker": v1("gpt", True),
    }
    print("| scenario | CPU ms per request, median of rounds | fastest round |")
    print("|---|---:|---:|")
    if args.only:
        scenarios = {name: call for name, call in scenarios.items() if args.only in name}
    try:
        for name, call in scenarios.items():
            for _ in range(20):
                call()  # warm: the routing table, connections, caches
            if args.profile:
                import cProfile
                import pstats

                profile = cProfile.Profile()
                profile.runcall(lambda call=call: [call() for _ in range(args.requests)])
                stats = pstats.Stats(profile).sort_stats("cumulative")
                stats.print_stats(45)
                if args.callees:
                    stats.print_callees(args.callees)
                if args.callers:
                    stats.print_callers(args.callers)
                if args.by_package:
                    print_calls_by_package(stats, requests=args.requests)
                continue
            rounds = []
            for _ in range(args.rounds):
                started = time.process_time()
                for _ in range(args.requests):
                    call()
                rounds.append((time.process_time() - started) / args.requests * 1000)
            print(f"| {name} | {statistics.median(rounds):.3f} | {min(rounds):.3f} |", flush=True)
    finally:
        upstream.stop()


def print_calls_by_package(stats, *, requests: int) -> None:
    """Function calls per request, by where the function is (a site package, the stdlib, mmm's apps)."""
    counts: dict[str, int] = {}
    for (filename, _, _), (_, calls, *_rest) in stats.stats.items():
        if "site-packages/" in filename:
            where = filename.split("site-packages/")[1].split("/")[0]
        elif filename.startswith(os.getcwd()):
            where = "mmm: " + filename[len(os.getcwd()) + 1 :].split("/")[0]
        elif filename.startswith(("~", "<")):
            where = "builtins"
        else:
            where = "stdlib: " + os.path.basename(filename)
        counts[where] = counts.get(where, 0) + calls
    print("\nThe functions called most often, calls per request:")
    for (filename, line, name), (_, calls, *_rest) in sorted(stats.stats.items(), key=lambda item: -item[1][1])[:30]:
        print(f"{calls / requests:6.1f}  {name}  {filename.split('site-packages/')[-1]}:{line}")
    # Deterministic where CPU time is not (a shared machine's speed varies by a third): compare
    # two trees by this first.
    print(f"\nAll function calls per request: {sum(counts.values()) / requests:.0f}")
    print("\n| where | calls per request |\n|---|---:|")
    for where, calls in sorted(counts.items(), key=lambda item: -item[1])[:30]:
        print(f"| {where} | {calls / requests:.0f} |")


if __name__ == "__main__":
    main()
