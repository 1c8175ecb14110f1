"""Where the gateway's CPU goes under load: ``python -m bench.hot_path_profile`` (needs py-spy, dev-only).

Starts the fake upstream and the gateway as ``make serve`` does (bench.compare's setup), loads one
endpoint with wrk at c=32, and samples every gunicorn worker with py-spy meanwhile (without
pausing them). Each sample is put in one layer, the first that matches among: the request log,
metrics, log lines, the upstream client (requests, urllib3, http.client, geventhttpclient,
inference.upstream), then from the innermost frame out: DRF, Django, gunicorn and gevent, the gateway's own code. It
prints each layer's share of the samples and the functions that cost most themselves.
"""

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path

from bench.compare import CHAT_BODY, CHAT_PATH, SEED_BODY, SEED_PATH, STREAM_CHUNKS, STREAM_SECONDS, Call, mmm, wrk
from bench.compare import process_tree as tree_of
from bench.run import SetupError, upstream_process

PY_SPY = Path(sys.executable).with_name("py-spy")
# Sampling without pausing the process, so the profile does not slow what it measures.
SAMPLER = (str(PY_SPY), "record", "--nonblocking", "--rate", "250", "--format", "raw")
# (layer, any frame's file contains one of these): checked in order over the whole stack.
ANYWHERE = (
    ("request log", ("console/request_log.py", "mmm/bulk_rows.py")),
    ("metrics", ("prometheus_client/",)),
    ("log lines", ("logging/__init__.py", "console/log_format.py", "console/log_handler.py")),
    ("routing state", ("inference/routing_state", "inference/host_state.py")),
    ("usage and budgets", ("(usage/",)),
    (
        "upstream client",
        (
            "requests/",
            "urllib3/",
            "http/client.py",
            "geventhttpclient/",
            "inference/upstream.py",
            "inference/upstream_gevent.py",
            "inference/egress.py",
        ),
    ),
)
PROJECT_APPS = ("mmm", "inference", "console", "accounts", "registry", "usage", "jobs", "webhooks", "response_store")
# (layer, the innermost frame's file contains one of these).
INNERMOST = (
    ("DRF", ("rest_framework/",)),
    ("Django", ("django/",)),
    ("gunicorn and gevent I/O", ("gunicorn/", "gevent/", "socket.py", "selectors.py")),
    ("JSON", ("json/",)),
    # py-spy names the project's files relative to it ("name (inference/router.py:12)").
    ("mmm's own code", tuple(f"({app}/" for app in PROJECT_APPS)),
)


def layer_of(frames: list[str]) -> str:
    for layer, needles in ANYWHERE:
        if any(needle in frame for frame in frames for needle in needles):
            return layer
    for frame in reversed(frames):
        for layer, needles in INNERMOST:
            if any(needle in frame for needle in needles):
                return layer
    return "other (stdlib, uuid, ...)"


def read_collapsed(path: Path) -> Counter[tuple[str, ...]]:
    stacks: Counter[tuple[str, ...]] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks[tuple(stack.split(";"))] += int(count)
    return stacks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hot_path_profile", description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", choices=("seed", "v1"), default="seed")
    parser.add_argument("--duration", type=int, default=10, help="seconds of load and sampling (10)")
    parser.add_argument("--top", type=int, default=25, help="functions to list (25)")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="also copy py-spy's collapsed stacks here")
    parser.add_argument(
        "--gil",
        action="store_true",
        help="sample only the thread holding the GIL: Python's CPU, without a thread waiting in SQLite or "
        "fsync (which py-spy counts as busy otherwise), and without the syscalls that release the GIL",
    )
    args = parser.parse_args(argv)
    binary = shutil.which("wrk")
    if not PY_SPY.exists() or binary is None:
        print("needs py-spy (requirements-dev.txt) and wrk (Debian)", file=sys.stderr)
        return 1
    call = Call("/api/v1/chat/completions", SEED_BODY) if args.endpoint == "seed" else Call(CHAT_PATH, CHAT_BODY)
    specs = [f"--chat={CHAT_PATH}={STREAM_CHUNKS}:{STREAM_SECONDS}", f"{SEED_PATH}=0"]
    with (
        tempfile.TemporaryDirectory(prefix="mmm-profile-") as name,
        upstream_process("bench.upstream", fd_flag="--fd", args=specs) as upstream,
    ):
        tmp = Path(name)
        try:
            with mmm(upstream, tmp, {}) as (seed, _v1):
                wrk(binary, seed.port, call, connections=32, seconds=2, tmp=tmp)  # warm: connections, caches
                workers = [pid for pid in tree_of(seed.pid) if pid != seed.pid]
                samplers = [
                    subprocess.Popen(
                        [
                            *SAMPLER,
                            *(["--gil"] if args.gil else []),
                            "--duration",
                            str(args.duration),
                            "--pid",
                            str(pid),
                            "--output",
                            str(tmp / f"{pid}.txt"),
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                    for pid in workers
                ]
                load = threading.Thread(
                    target=wrk,
                    args=(binary, seed.port, call),
                    kwargs={"connections": 32, "seconds": args.duration, "tmp": tmp},
                )
                load.start()
                for sampler in samplers:
                    sampler.wait(args.duration + 60)
                load.join()
        except SetupError as exc:
            print(f"setup failed: {exc}", file=sys.stderr)
            return 1
        stacks: Counter[tuple[str, ...]] = Counter()
        for path in tmp.glob("[0-9]*.txt"):
            stacks.update(read_collapsed(path))
            if args.keep:
                args.keep.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, args.keep / path.name)
    total = sum(stacks.values()) or 1
    layers: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for frames, count in stacks.items():
        layers[layer_of(list(frames))] += count
        own[frames[-1]] += count
    print(f"{args.endpoint}: {total} samples of {len(workers)} workers at c=32 over {args.duration} s\n")
    print("| layer | share of samples |\n|---|---:|")
    for layer, count in layers.most_common():
        print(f"| {layer} | {100 * count / total:.1f}% |")
    print(f"\nTop {args.top} functions by their own samples:")
    for frame, count in own.most_common(args.top):
        print(f"  {100 * count / total:5.1f}%  {frame}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
