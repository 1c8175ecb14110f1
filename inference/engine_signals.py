"""What an inference engine says about its own load, read from its Prometheus /metrics.

The gateway sees only what it sent itself; an engine's queue may also hold requests from other
gateways and clients, and only the engine knows how full its KV cache is. vLLM, SGLang and
TGI publish both (names below, from each engine's metrics reference). ``manage.py
scrape_engines`` reads them and stores one ``EngineSignals`` per worker in the shared routing
state; the engine_aware and prefix_aware strategies read them back, and treat a signal older
than MMM_ENGINE_SIGNALS_STALE_SECONDS as missing.

Parsing is prometheus_client's (``text_string_to_metric_families``), never a hand-written parser.
Samples are matched by their full name, so a family declared as ``info`` or ``counter`` (whose
family name the parser shortens) is found all the same.
"""

import json
from dataclasses import asdict, dataclass, field

from prometheus_client.parser import text_string_to_metric_families


class EngineMetricsUnreadable(ValueError):
    """The page is not Prometheus text, or names none of the engine's load metrics."""


@dataclass(frozen=True)
class MetricNames:
    waiting: tuple[str, ...]
    running: tuple[str, ...]
    kv_cache: tuple[str, ...] = ()  # a fraction of the cache in use, 0..1
    lora_info: str = ""
    cache_tokens: str = ""  # the engine's KV cache size in tokens, when it says


# Newer names first: vLLM renamed gpu_cache_usage_perc to kv_cache_usage_perc (both 0..1).
ENGINE_METRICS: dict[str, MetricNames] = {
    "vllm": MetricNames(
        waiting=("vllm:num_requests_waiting",),
        running=("vllm:num_requests_running",),
        kv_cache=("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
        lora_info="vllm:lora_requests_info",
        cache_tokens="vllm:cache_config_info",
    ),
    "sglang": MetricNames(
        waiting=("sglang:num_queue_reqs",),
        running=("sglang:num_running_reqs",),
        kv_cache=("sglang:token_usage",),
        cache_tokens="sglang:max_total_num_tokens",
    ),
    # TGI reports no cache use: its batch size and queue are what there is.
    "tgi": MetricNames(waiting=("tgi_queue_size",), running=("tgi_batch_current_size",)),
}


@dataclass(frozen=True)
class EngineSignals:
    """One worker's engine, as last scraped. Times are the routing state's clock (Unix seconds)."""

    waiting: float = 0.0
    running: float = 0.0
    kv_cache_usage: float | None = None
    adapters: tuple[str, ...] = ()
    cache_tokens: int | None = None
    scraped_at: float = 0.0  # the last good scrape; 0 when there was none
    # This gateway's requests in flight at the worker (all processes and hosts) when the scrape
    # began: the rest of what the engine reported came from elsewhere.
    in_flight_at_scrape: int = 0
    error: str = ""  # why the last scrape failed; empty when it did not
    failed_at: float = 0.0
    consecutive_failures: int = 0
    counted_at: float = 0.0  # when a failed read last counted against the worker's health

    def is_fresh(self, *, now: float, stale_after: float) -> bool:
        return self.scraped_at > 0 and now - self.scraped_at <= stale_after

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "EngineSignals":
        data = json.loads(text)
        data["adapters"] = tuple(data.get("adapters", ()))
        return cls(**data)


@dataclass(frozen=True)
class EngineReading:
    """What one page of an engine's metrics says."""

    waiting: float
    running: float
    kv_cache_usage: float | None = None
    adapters: tuple[str, ...] = field(default_factory=tuple)
    cache_tokens: int | None = None


def parse_engine_metrics(*, engine: str, text: str) -> EngineReading:
    """The load an engine's /metrics page reports. Several series of one name (vLLM's data
    parallel engines, one per ``engine`` label) are summed; cache use is the fullest of them."""
    names = ENGINE_METRICS[engine]
    samples: dict[str, list] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples.setdefault(sample.name, []).append(sample)
    except (ValueError, TypeError, IndexError) as exc:
        raise EngineMetricsUnreadable(f"not Prometheus text: {exc}") from None

    def first_present(candidates: tuple[str, ...]) -> list | None:
        return next((samples[name] for name in candidates if name in samples), None)

    waiting, running = first_present(names.waiting), first_present(names.running)
    if waiting is None or running is None:
        missing = names.waiting[0] if waiting is None else names.running[0]
        raise EngineMetricsUnreadable(f"no {missing} on the page: is this a {engine} engine's /metrics?")
    kv = first_present(names.kv_cache) if names.kv_cache else None
    return EngineReading(
        waiting=sum(sample.value for sample in waiting),
        running=sum(sample.value for sample in running),
        kv_cache_usage=max(sample.value for sample in kv) if kv else None,
        adapters=_lora_adapters(samples.get(names.lora_info, [])),
        cache_tokens=_cache_tokens(engine, samples.get(names.cache_tokens, [])),
    )


def _lora_adapters(samples: list) -> tuple[str, ...]:
    """vLLM's ``lora_requests_info``: one series per change, valued by its Unix time; the
    latest names the adapters running and waiting, comma-separated."""
    if not samples:
        return ()
    latest = max(samples, key=lambda sample: sample.value)
    names = []
    for label in ("running_lora_adapters", "waiting_lora_adapters"):
        names += [name.strip() for name in latest.labels.get(label, "").split(",") if name.strip()]
    return tuple(dict.fromkeys(names))


def _cache_tokens(engine: str, samples: list) -> int | None:
    if not samples:
        return None
    if engine == "vllm":  # cache_config_info carries the sizes as labels
        labels = samples[0].labels
        try:
            return int(labels["num_gpu_blocks"]) * int(labels["block_size"])
        except (KeyError, ValueError):
            return None
    return int(max(sample.value for sample in samples))
