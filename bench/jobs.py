"""Jobs benchmark: 1,000 video jobs submitted at once to 4 fake /v1/videos workers of capacity 2
whose jobs take 3 s each, through a real gateway (gunicorn, 2 gevent workers, and the job
runner it starts beside itself).

    .venv/bin/python -m bench.jobs                    # the full run (over 6 minutes)
    .venv/bin/python -m bench.jobs --jobs 80 --seconds 1
    DATABASE_URL=postgres://... .venv/bin/python -m bench.jobs   # on PostgreSQL

Prints: the time until every job completed against the ideal (jobs / 8 slots x seconds); jobs
lost (never completed) and run twice (submitted to a worker more than once), which must be 0;
the time from a fake worker finishing a job to the client seeing it ``completed`` (the client
lists its oldest unfinished jobs every 0.2 s, so up to 0.2 s of it is the client's own), p50
and p99; and the
CPU time the gateway's processes (gunicorn master, workers, runner) spent per job.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mmm.settings")
django.setup()

import requests  # noqa: E402

from bench.compare import cpu_seconds  # noqa: E402
from tests.fake_openai_videos import OpenAIVideosServer  # noqa: E402
from tests.gateway_process import GatewayProcess, gateway_database  # noqa: E402

WORKERS = 4
CAPACITY = 2
LIST_EVERY = 0.2


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run(*, jobs: int, seconds: float) -> list[str]:
    fakes = [OpenAIVideosServer(duration=seconds).start() for _ in range(WORKERS)]
    try:
        with tempfile.TemporaryDirectory() as tmp, gateway_database(Path(tmp)) as env:
            env = {**env, "MMM_WEB_WORKERS": "2"}
            GatewayProcess(env=env).manage("migrate", "--noinput", "-v0").check_returncode()
            gateway = GatewayProcess(env=env).start()
            try:
                return _measure(gateway, fakes, jobs=jobs, seconds=seconds)
            finally:
                gateway.stop()
    finally:
        for fake in fakes:
            fake.stop()


def _measure(gateway: GatewayProcess, fakes: list, *, jobs: int, seconds: float) -> list[str]:
    for fake in fakes:
        gateway.post(
            "/api/server/register",
            {
                "model_name": "bench-video",
                "preset": "openai-videos",
                "base_url": fake.url + "/v1",
                "api_key": "sk-test-videos",
                "upstream_model": "sora-2",
                "capacity": CAPACITY,
            },
        ).raise_for_status()
    session = requests.Session()
    cpu_before = cpu_seconds(gateway.process.pid)
    started = time.monotonic()

    def create(number: int) -> str:
        body = {"model": "bench-video", "prompt": f"bench job {number}", "seconds": "4"}
        response = requests.post(gateway.url + "/v1/videos", json=body, timeout=60)
        response.raise_for_status()
        return response.json()["id"]

    with ThreadPoolExecutor(max_workers=32) as pool:
        ids = list(pool.map(create, range(jobs)))
    submitted_in = time.monotonic() - started
    prompt_of = {job_id: f"bench job {number}" for number, job_id in enumerate(ids)}
    seen_completed: dict[str, float] = {}
    failed: set[str] = set()
    deadline = started + jobs / (WORKERS * CAPACITY) * seconds * 3 + 120
    # A client watches its jobs as one would: the oldest page it has not yet seen all done (the
    # jobs run in order, so that is where they finish), and every 5 s the whole list for any
    # that finished out of order. Listing all 1,000 every 0.2 s would make the gateway's CPU
    # mostly the client's.
    ordered = _all_in_order(session, gateway.url)  # as the gateway numbered them
    done_prefix = 0  # ordered[:done_prefix] are all seen finished
    next_full = time.monotonic() + 5
    watching_since = time.monotonic()  # jobs that finished while the creates went on are not timed
    while len(seen_completed) + len(failed) < jobs and time.monotonic() < deadline:
        full = time.monotonic() >= next_full
        after = ordered[done_prefix - 1] if done_prefix and not full else None
        while True:
            query = {"limit": 100, "order": "asc", **({"after": after} if after else {})}
            page = session.get(gateway.url + "/v1/videos", params=query, timeout=60).json()
            now = time.monotonic()
            for video in page["data"]:
                if video["status"] == "completed":
                    seen_completed.setdefault(video["id"], now)
                elif video["status"] == "failed":
                    failed.add(video["id"])
            if not full or not page["has_more"]:
                break
            after = page["last_id"]
        while done_prefix < jobs and (ordered[done_prefix] in seen_completed or ordered[done_prefix] in failed):
            done_prefix += 1
        if full:
            next_full = time.monotonic() + 5
        time.sleep(LIST_EVERY)
    elapsed = max(seen_completed.values(), default=time.monotonic()) - started
    cpu = cpu_seconds(gateway.process.pid) - cpu_before

    finished_at: dict[str, float] = {}
    submissions: dict[str, int] = {}
    max_running = []
    for fake in fakes:
        max_running.append(fake.book.max_running)
        for upstream in fake.book.all():
            prompt = upstream.extra["prompt"]
            submissions[prompt] = submissions.get(prompt, 0) + 1
            if upstream.finished_at is not None:
                finished_at[prompt] = upstream.finished_at
    latencies = [
        seen_completed[job_id] - finished_at[prompt_of[job_id]]
        for job_id in seen_completed
        if finished_at.get(prompt_of[job_id], 0.0) >= watching_since
    ]
    lost = jobs - len(seen_completed)
    twice = sum(1 for count in submissions.values() if count > 1)
    ideal = jobs / (WORKERS * CAPACITY) * seconds
    return [
        f"{jobs} jobs of {seconds:g} s on {WORKERS} workers x capacity {CAPACITY} "
        f"(created in {submitted_in:.1f} s by 32 client threads)",
        "",
        "| measure | value |",
        "|---|---|",
        f"| time until all completed | {elapsed:.1f} s |",
        f"| ideal (jobs / {WORKERS * CAPACITY} x {seconds:g} s) | {ideal:.1f} s |",
        f"| ratio to ideal | {elapsed / ideal:.3f} |",
        f"| jobs lost (not completed) | {lost} (failed: {len(failed)}) |",
        f"| jobs run twice | {twice} |",
        f"| most running at once on a worker | {max(max_running)} (capacity {CAPACITY}) |",
        f"| upstream finished -> client saw completed, p50 (of {len(latencies)} finished while watched) "
        f"| {statistics.median(latencies):.2f} s |"
        if latencies
        else "| latency | none measured |",
        f"| upstream finished -> client saw completed, p99 | {percentile(latencies, 0.99):.2f} s |"
        if latencies
        else "",
        f"| gateway CPU (master, 2 workers, runner) | {cpu:.1f} s, {cpu / jobs * 1000:.1f} ms per job |",
    ]


def _all_in_order(session: requests.Session, url: str) -> list[str]:
    ids, after = [], None
    while True:
        query = {"limit": 100, "order": "asc", **({"after": after} if after else {})}
        page = session.get(url + "/v1/videos", params=query, timeout=60).json()
        ids += [video["id"] for video in page["data"]]
        if not page["has_more"]:
            return ids
        after = page["last_id"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=3.0, help="How long each fake job runs.")
    args = parser.parse_args()
    if args.jobs < 1 or args.seconds <= 0:
        sys.exit("--jobs must be at least 1 and --seconds above 0")
    print("\n".join(run(jobs=args.jobs, seconds=args.seconds)), flush=True)


if __name__ == "__main__":
    main()
