"""Fixed costs of every request in a gevent worker: ``python -m bench.per_request_costs``.

Sets Django up as a gunicorn worker runs it (gevent patched, the SQLite database connected, the
default cache used, the log configured from mmm.settings), then times, in this process:
- ``request_started`` and ``request_finished`` as Django sends them for every request, with
  Django's own receivers and with mmm.request_signals' two in their place;
- one completion's log line (``mmm.request``'s INFO with its fields) into a handler that keeps
  the record and writes nothing, with every record field logging fills and with
  console.log_records' switches off;
- a read of a setting already read, through Django's LazySettings and with mmm.settings_reads
  installed, and a read of gunicorn's config, as Config and as the worker's _SettledConfig;
- the response's Date header, as gunicorn formats it and as mmm.gunicorn_response keeps it;
- gunicorn's check of whether the peer may set forwarded headers, as gunicorn makes it and as
  mmm.gunicorn_worker remembers it;
- a change of a multiprocess metric value (what each counter increment and histogram
  observation makes, about ten per completion), under gevent's lock and under the OS lock
  console.metric_values gives it;
- a chat completion's JSON (the client's body read by the strict parser, the upstream's body
  written, its answer read), through the standard library and through mmm.json_codec.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import logging  # noqa: E402
import time  # noqa: E402

from bench.scratch_django import set_up  # noqa: E402


def per_call_us(call, *, rounds: int, repeat: int) -> float:
    """The median over ``repeat`` timings of ``rounds`` calls, in µs per call."""
    call()
    timings = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(rounds):
            call()
        timings.append((time.perf_counter() - start) / rounds * 1e6)
    return sorted(timings)[repeat // 2]


class _Kept(logging.StreamHandler):
    """Keeps the last record (as the worker's stream handler queues it) and writes nothing."""

    def emit(self, record):
        self.last = record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.per_request_costs", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5, help="medians of this many timings (5)")
    args = parser.parse_args(argv)
    set_up(prefix="mmm-bench-costs-")
    from django.core import signals
    from django.core.cache import cache
    from django.core.handlers.wsgi import WSGIHandler
    from django.db import connection

    from console import log_records
    from mmm import request_signals

    connection.ensure_connection()  # a worker that has served a request holds one
    cache.get("warm")

    def both() -> None:
        signals.request_started.send(sender=WSGIHandler, environ={})
        signals.request_finished.send(sender=WSGIHandler)

    djangos = per_call_us(both, rounds=args.rounds, repeat=args.repeat)
    if not request_signals.install():
        print("Django's receivers are not all connected; nothing to compare")
        return 1
    ours = per_call_us(both, rounds=args.rounds, repeat=args.repeat)
    request_signals.uninstall()

    logger = logging.getLogger("mmm.request")
    logger.addHandler(_Kept())
    logger.propagate = False  # the configured handlers would write to the terminal
    fields = {"request_id": "0" * 32, "model": "bench", "status": 200, "latency_ms": 1.2}

    def line() -> None:
        logger.info("POST /v1/chat/completions 200", extra={"fields": fields})

    every_field = per_call_us(line, rounds=args.rounds, repeat=args.repeat)
    logger.propagate = True  # so the configured formatters are what decides
    off = log_records.leave_out_unprinted()
    logger.propagate = False
    printed_only = per_call_us(line, rounds=args.rounds, repeat=args.repeat)

    from django.conf import settings
    from gunicorn import util
    from gunicorn.config import Config

    from mmm import gunicorn_response, settings_reads
    from mmm.gunicorn_worker import _SettledConfig

    def setting() -> None:
        settings.MMM_CONNECT_TIMEOUT  # noqa: B018

    djangos_read = per_call_us(setting, rounds=args.rounds, repeat=args.repeat)
    if not settings_reads.install():
        print("django.conf.settings is not Django's LazySettings; nothing to compare")
        return 1
    direct_read = per_call_us(setting, rounds=args.rounds, repeat=args.repeat)
    settings_reads.uninstall()
    cfg = Config()

    def config() -> None:
        cfg.limit_request_line  # noqa: B018

    configs_read = per_call_us(config, rounds=args.rounds, repeat=args.repeat)
    cfg.__class__ = _SettledConfig
    settled_read = per_call_us(config, rounds=args.rounds, repeat=args.repeat)
    gunicorns_date = per_call_us(util.http_date, rounds=args.rounds, repeat=args.repeat)
    kept_date = per_call_us(gunicorn_response.http_date, rounds=args.rounds, repeat=args.repeat)

    from gunicorn.http import message

    from mmm.gunicorn_worker import remembered_allow_list_check

    allowed = cfg.forwarded_allow_ips
    networks = cfg.forwarded_allow_networks()
    gunicorns_peer = per_call_us(
        lambda: message._ip_in_allow_list("127.0.0.1", allowed, networks), rounds=args.rounds, repeat=args.repeat
    )
    remembered = remembered_allow_list_check(message._ip_in_allow_list)
    remembered_peer = per_call_us(
        lambda: remembered("127.0.0.1", allowed, networks), rounds=args.rounds, repeat=args.repeat
    )

    import os
    import tempfile

    from prometheus_client import values

    from console.metric_values import multiprocess_value_class
    from mmm.process import current_pid

    def value_change_us(value_class) -> float:
        value = value_class("counter", "bench", "bench_total", (), (), "help")
        return per_call_us(lambda: value.inc(1), rounds=args.rounds, repeat=args.repeat)

    with tempfile.TemporaryDirectory(prefix="mmm-bench-metrics-") as metrics_dir:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        try:
            gevents_lock = value_change_us(values.MultiProcessValue(process_identifier=current_pid))
            os_lock = value_change_us(multiprocess_value_class())
        finally:
            del os.environ["PROMETHEUS_MULTIPROC_DIR"]

    import json

    from mmm import json_codec, parsers

    chat = {"model": "bench", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 64, "stream": False}
    chat_raw = json.dumps(chat).encode()
    answer_raw = json.dumps(
        {
            "id": "chatcmpl-0123456789",
            "object": "chat.completion",
            "created": 1764720000,
            "model": "bench",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
        }
    ).encode()

    def stdlib_json() -> None:
        # The strict parser's standard-library path (orjson's turned away), and what
        # inference.upstream wrote and read before mmm.json_codec.
        body = parsers.parse_json_body(chat_raw)
        json.dumps(body, ensure_ascii=False).encode("utf-8")
        json.loads(answer_raw)

    def codec_json() -> None:
        body = parsers.parse_json_body(chat_raw)
        json_codec.dumps(body)
        json_codec.loads(answer_raw)

    orjsons = json_codec.fast_loads
    json_codec.fast_loads = lambda raw: (False, None)
    try:
        stdlib_json_us = per_call_us(stdlib_json, rounds=args.rounds, repeat=args.repeat)
    finally:
        json_codec.fast_loads = orjsons
    codec_json_us = per_call_us(codec_json, rounds=args.rounds, repeat=args.repeat)

    print(f"medians of {args.repeat} x {args.rounds} calls, µs per request:")
    print(f"  request signals, Django's five receivers:      {djangos:6.1f}")
    print(f"  request signals, mmm.request_signals' two:     {ours:6.1f}")
    print(f"  a log line, every record field:                {every_field:6.1f}")
    print(f"  a log line, switched off: {', '.join(off) or 'none'}: {printed_only:6.1f}")
    print(f"  a chat completion's JSON, the standard library: {stdlib_json_us:5.1f}")
    print(f"  a chat completion's JSON, mmm.json_codec:      {codec_json_us:6.1f}")
    print("µs per read or call:")
    print(f"  a setting, Django's LazySettings:              {djangos_read:6.2f}")
    print(f"  a setting, mmm.settings_reads installed:       {direct_read:6.2f}")
    print(f"  gunicorn's config, Config:                     {configs_read:6.2f}")
    print(f"  gunicorn's config, _SettledConfig:             {settled_read:6.2f}")
    print(f"  the Date header, gunicorn's http_date:         {gunicorns_date:6.2f}")
    print(f"  the Date header, mmm.gunicorn_response's:      {kept_date:6.2f}")
    print(f"  the forwarded-header peer check, gunicorn's:   {gunicorns_peer:6.2f}")
    print(f"  the same check, mmm.gunicorn_worker's memo:    {remembered_peer:6.2f}")
    print(f"  a metric value's change, gevent's lock:        {gevents_lock:6.2f}")
    print(f"  the same, console.metric_values' OS lock:      {os_lock:6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
