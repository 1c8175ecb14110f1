"""gunicorn settings for the gateway (``gunicorn -c mmm/gunicorn.conf.py mmm.wsgi``).

An LLM call holds its request for seconds to minutes while doing nothing but wait on a
socket, so a worker process must hold hundreds of them at once: gevent workers give every
request a greenlet (Dify serves its API the same way). docs/deploy.md says more.
"""

import ipaddress
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from inference import routing_state_memory
from mmm import connection_balance
from mmm.env import env_bool, env_float, env_int, env_str

_host = env_str("HOST", "127.0.0.1")
bind = f"{_host}:{env_int('PORT', 8007, minimum=1, maximum=65535)}"


def _is_loopback(host: str) -> bool:
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# `make serve` turns keys off for local use; that must never face a network.
if not env_bool("MMM_REQUIRE_AUTH", True):
    if not _is_loopback(_host):
        sys.exit(
            f"refusing to serve on {_host} with MMM_REQUIRE_AUTH off: anyone could register workers and "
            "call models. Bind to 127.0.0.1, or unset MMM_REQUIRE_AUTH and create keys with "
            "`python manage.py create_api_key`."
        )
    print(
        "\n" + "!" * 78 + "\n"
        "!!  MMM_REQUIRE_AUTH is OFF: no API key is needed for any endpoint.\n"
        f"!!  Local use only (bound to {_host}). Production: unset it and create keys with\n"
        "!!  python manage.py create_api_key --name NAME --scope inference|worker|admin\n" + "!" * 78 + "\n",
        file=sys.stderr,
        flush=True,
    )
# gevent, answering what gunicorn refuses itself in JSON (mmm/gunicorn_worker.py).
worker_class = "mmm.gunicorn_worker.GeventWorker"
workers = env_int("MMM_WEB_WORKERS", os.cpu_count() or 2, minimum=1)
# Concurrent connections per worker process (each a greenlet of a few kB), idle keep-alive
# ones included: enough that a few thousand idle sockets cannot fill them. Past this gunicorn
# stops accepting until one ends; a front proxy should bound clients beyond (docs/deploy.md).
worker_connections = env_int("MMM_WEB_CONNECTIONS", 10_000, minimum=1)
# With gevent this is the heartbeat a worker must give the arbiter, not a per-request limit:
# upstream calls carry their own timeouts.
timeout = 60
# On restart, in-flight completions get this long to finish before their worker is killed.
graceful_timeout = env_int("MMM_GRACEFUL_TIMEOUT", 120, minimum=0)
# An idle keep-alive connection is closed after this many seconds, so idle sockets give their
# slots back soon; clients of a model call reconnect at no cost worth counting.
keepalive = env_int("MMM_KEEPALIVE_SECONDS", 2, minimum=0, maximum=300)
accesslog = env_str("MMM_ACCESS_LOG", None)  # "-" for stdout; off by default, the gateway logs each completion
errorlog = "-"
forwarded_allow_ips = env_str("FORWARDED_ALLOW_IPS", "127.0.0.1")


def _raise_open_files_limit() -> None:
    """Every connection is a descriptor: let the soft limit reach the hard one (often 1024
    soft, which a few thousand idle clients would exhaust). Children inherit it."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        if soft < wanted:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (ImportError, ValueError, OSError):
        pass  # not Unix, or not allowed: the system's limit stays


_raise_open_files_limit()


# --- Metrics across worker processes -------------------------------------------------------
# Each worker process writes its counters to files in this directory and /metrics adds them
# up, whichever process answers the scrape (prometheus_client's multiprocess mode). It must be
# in the environment before any worker imports prometheus_client; one directory per instance
# (var dir and port), emptied at start so a previous run's counts do not come back.
if not env_str("PROMETHEUS_MULTIPROC_DIR"):
    _var_dir = Path(env_str("MMM_VAR_DIR", str(Path(__file__).resolve().parent.parent / "var")))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_var_dir / "prometheus" / bind.rsplit(":", 1)[1])


def on_starting(server) -> None:
    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)
    _start_host_state()
    _start_sidecars()


# --- Routing and limit state shared by the worker processes, without Redis -----------------
# Rate limits, in-flight caps, ejections and the retry budget are one state for all processes:
# in Redis when REDIS_URL is set (every host), else in a small server this master starts on a
# unix socket (inference.host_state), so `make serve` is as exact as production on one host.
_host_state_process = None

# MMM_SHARED_HOST_STATE=false leaves each process its own state (inexact; for measuring the cost).
if (
    not env_str("REDIS_URL")
    and workers > 1
    and not env_str("MMM_HOST_STATE_SOCKET")
    and env_bool("MMM_SHARED_HOST_STATE", True)
):
    # A directory of its own, short enough for a unix socket's path limit (108 bytes).
    os.environ["MMM_HOST_STATE_SOCKET"] = os.path.join(tempfile.mkdtemp(prefix="mmm-state-"), "state.sock")


# The hot part of that state (in-flight counts, latency, ejections, the retry budget) lives in
# memory made here, before any worker is forked, that every worker changes itself
# (inference.routing_state_shared): no round trip to the server per call. The server is given
# it too, for the processes that ask it. A SIGHUP reload keeps this memory (and the server).
_routing_memory = None
if env_str("MMM_HOST_STATE_SOCKET") and not env_str("REDIS_URL") and env_bool("MMM_SHARED_MEMORY_STATE", True):
    # A column per worker process (its in-flight counts), with room for the workers TTIN adds.
    _routing_memory = routing_state_memory.share(columns=max(64, workers * 4 + 1))


def _start_host_state() -> None:
    global _host_state_process
    path = env_str("MMM_HOST_STATE_SOCKET")
    if not path or env_str("REDIS_URL"):
        return
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "mmm.settings"}
    pass_fds: tuple[int, ...] = ()
    if _routing_memory is not None:
        env["MMM_ROUTING_MEMORY_FD"] = str(_routing_memory.fd)
        pass_fds = (_routing_memory.fd,)
    _host_state_process = subprocess.Popen(
        [sys.executable, "-m", "inference.host_state", path],
        cwd=str(Path(__file__).resolve().parent.parent),
        env=env,
        pass_fds=pass_fds,
    )
    deadline = time.monotonic() + 15
    while not os.path.exists(path):
        if _host_state_process.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"the shared routing state server did not start on {path}")
        time.sleep(0.05)


# --- Processes beside gunicorn: the job runner, the webhook sender, the engine scraper -------
# Image and video jobs need a `manage.py run_jobs --loop` somewhere (docs/jobs.md), webhooks a
# `manage.py deliver_webhooks --loop` (docs/webhooks.md), and engine_aware and prefix_aware a
# `manage.py scrape_engines --loop` reading vLLM's, SGLang's and TGI's /metrics (docs/routing.md);
# `make serve` runs them beside gunicorn so they work with the one command. Each stops when this
# master does (--parent-pid), however the master ends. Production runs them as services of their
# own and sets MMM_JOB_RUNNER, MMM_WEBHOOK_SENDER or MMM_ENGINE_SCRAPER to false (docs/deploy.md).
# The scraper reads nothing while no worker names an engine (one query a second to see whether
# one does), and it needs a state the web workers share (Redis, or the host state above).
_sidecars: list[subprocess.Popen] = []


def _start_sidecars() -> None:
    shared_state = bool(env_str("REDIS_URL") or env_str("MMM_HOST_STATE_SOCKET"))
    if env_bool("MMM_JOB_RUNNER", True) and not env_str("MMM_JOB_WAKE_SOCKET"):
        # Where the runner hears from the web workers (forked after this) that a job was queued.
        os.environ["MMM_JOB_WAKE_SOCKET"] = os.path.join(tempfile.mkdtemp(prefix="mmm-jobs-"), "wake.sock")
    for setting, command, wanted in (
        ("MMM_JOB_RUNNER", "run_jobs", True),
        ("MMM_WEBHOOK_SENDER", "deliver_webhooks", True),
        ("MMM_ENGINE_SCRAPER", "scrape_engines", shared_state),
    ):
        if wanted and env_bool(setting, True):
            _sidecars.append(
                subprocess.Popen(
                    [sys.executable, "manage.py", command, "--loop", "--parent-pid", str(os.getpid())],
                    cwd=str(Path(__file__).resolve().parent.parent),
                    env={**os.environ, "DJANGO_SETTINGS_MODULE": "mmm.settings"},
                )
            )


def _stop(processes: list, *, timeout: float) -> None:
    for process in processes:
        if process is not None and process.poll() is None:
            process.terminate()  # each finishes its pass: every claim it holds is recorded or runs out
    for process in processes:
        if process is None:
            continue
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()


def on_exit(server) -> None:
    _stop(_sidecars, timeout=15)
    _stop([_host_state_process], timeout=5)
    for name, prefix in (("MMM_HOST_STATE_SOCKET", "mmm-state-"), ("MMM_JOB_WAKE_SOCKET", "mmm-jobs-")):
        path = env_str(name)
        if path and os.path.basename(os.path.dirname(path)).startswith(prefix):  # made above
            shutil.rmtree(os.path.dirname(path), ignore_errors=True)


# Each worker counts its connections where the others see them (mmm.connection_balance); room
# for the workers gunicorn may add on TTIN.
connection_balance.share(slots=max(64, workers * 4))


def pre_fork(server, worker) -> None:
    connection_balance.assign(worker, live_workers=list(server.WORKERS.values()))
    routing_state_memory.assign(worker, live_workers=list(server.WORKERS.values()))


# A worker's native threads (the request-log writer, the log-line writer) hold the GIL for up
# to this long while its event loop, and every request in it, waits; Python's 5 ms put that
# into the tail (p99 at c=1: 11.1-11.7 ms against 8.5-8.9 with 0.5 ms, the same CPU; bench.compare).
_GIL_SWITCH_SECONDS = env_float("MMM_GIL_SWITCH_SECONDS", 0.0005, minimum=0.0001, maximum=0.1)


def post_fork(server, worker) -> None:
    routing_state_memory.start(worker)
    sys.setswitchinterval(_GIL_SWITCH_SECONDS)


def child_exit(server, worker) -> None:
    # The dead process's in-flight gauge must stop counting; its counters stay in the sum.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
    connection_balance.release(worker)
    # Its in-flight requests and running retries too, even if it was SIGKILLed with them.
    routing_state_memory.release(worker)


def worker_exit(server, worker) -> None:
    # In the worker process, after its last request: write the request-log rows still queued.
    # (atexit does it too, but a worker may leave through os._exit.)
    request_log = sys.modules.get("console.request_log")
    if request_log is not None:
        request_log.request_log_writer.close()
    settlement = sys.modules.get("usage.settlement")
    if settlement is not None:  # before the ledger: settling queues ledger rows
        settlement.settle_writer.close()
    ledger = sys.modules.get("usage.ledger")
    if ledger is not None:
        ledger.ledger_writer.close()
    log_handler = sys.modules.get("console.log_handler")
    if log_handler is not None:  # last: the writers above may log
        log_handler.close_all()


def post_worker_init(worker) -> None:
    # gevent has patched sockets by now; psycopg2 is C code and must be told to yield to
    # other greenlets while it waits on PostgreSQL.
    if env_str("DATABASE_URL", "").startswith(("postgres", "postgresql")):
        from psycogreen.gevent import patch_psycopg

        patch_psycopg()
    # Django's start- and end-of-request work in one pass per signal (not in a process that
    # uses the test client, which needs Django's own receivers).
    from mmm import request_signals

    if not request_signals.install():
        worker.log.info("request signals: another receiver is connected; Django's own receivers stay")
    # A setting already read is a plain attribute (Django's LazyObject reads each in Python).
    from mmm import settings_reads

    if not settings_reads.install():
        worker.log.info("settings reads: django.conf.settings is not Django's LazySettings; left as it is")
    # The request's log line is queued; a native thread beside the loop writes it.
    from console import log_handler, log_records

    log_handler.go_background()
    # Nor does a record measure what no formatter prints (the caller's frame, the thread).
    log_records.leave_out_unprinted()
    # Keys, the routing table and policies are refreshed off the request path from now on.
    from mmm import background

    background.start()
    # Everything loaded so far (Django, the app, their modules) lives as long as the process:
    # left in the collector's oldest generation, each full collection walks all of it while the
    # whole event loop waits (50-100 ms here, a request's p99). Frozen, a collection walks only
    # what requests made (bench/request_log_stall.py).
    import gc

    gc.collect()
    gc.freeze()


# gunicorn's runtime control socket lives at one fixed path per user, which several gateway
# instances on one host would fight over; the gateway does not use it.
control_socket_disable = True

# --- What gunicorn refuses before the gateway sees a request -----------------------------
# A request line over 4094 bytes is a 414, a header over 8190 bytes or more than 100 headers a
# 431, unparseable HTTP a 400. gunicorn answers these before the application runs; the worker
# class above sends them as JSON errors with Connection: close. The gateway's own URLs and
# headers are far below these, so they stay at gunicorn's defaults, spelled out here.
limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190
