"""The /metrics pages of vLLM, SGLang and TGI, as each engine writes them.

Names, labels and types follow each engine's metrics reference (vLLM's "Production Metrics",
SGLang's docs/references/production_metrics.md, TGI's reference/metrics): gauges and counters
beside histograms, labels the engines attach (vLLM's ``engine`` and ``model_name``, SGLang's
``model_name``, TGI's none), so the scraper is tried on pages of the real shape, not on a
minimal subset. ``FakeEngine`` serves one on a real loopback port beside a seed-shaped API.
"""

from dataclasses import dataclass

from tests.conftest import SEED_ANSWER
from tests.fake_upstream import FakeUpstream, Reply

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


@dataclass
class EngineLoad:
    waiting: int = 0
    running: int = 0
    kv_cache: float = 0.0
    adapters: tuple[str, ...] = ()


def vllm_metrics(load: EngineLoad, *, old_cache_name: bool = False) -> str:
    cache_name = "vllm:gpu_cache_usage_perc" if old_cache_name else "vllm:kv_cache_usage_perc"
    labels = f'engine="0",model_name="{MODEL}"'
    return f"""# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{{{labels}}} {float(load.running)}
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{{{labels}}} {float(load.waiting)}
# HELP {cache_name} KV-cache usage. 1 means 100 percent usage.
# TYPE {cache_name} gauge
{cache_name}{{{labels}}} {load.kv_cache}
# HELP vllm:lora_requests_info Running stats on lora requests.
# TYPE vllm:lora_requests_info gauge
vllm:lora_requests_info{{max_lora="4",running_lora_adapters="",waiting_lora_adapters=""}} 1.7645e+09
vllm:lora_requests_info{{max_lora="4",running_lora_adapters="{",".join(load.adapters)}",waiting_lora_adapters=""}} 1.7646e+09
# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig
# TYPE vllm:cache_config_info gauge
vllm:cache_config_info{{block_size="16",cache_dtype="auto",enable_prefix_caching="True",gpu_memory_utilization="0.9",num_cpu_blocks="0",num_gpu_blocks="2048"}} 1.0
# HELP vllm:prompt_tokens_total Number of prefill tokens processed.
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{{{labels}}} 123456.0
# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{{{labels},le="0.1"}} 10.0
vllm:time_to_first_token_seconds_bucket{{{labels},le="+Inf"}} 12.0
vllm:time_to_first_token_seconds_count{{{labels}}} 12.0
vllm:time_to_first_token_seconds_sum{{{labels}}} 1.5
"""


def sglang_metrics(load: EngineLoad) -> str:
    labels = f'model_name="{MODEL}"'
    return f"""# HELP sglang:prompt_tokens_total Number of prefill tokens processed.
# TYPE sglang:prompt_tokens_total counter
sglang:prompt_tokens_total{{{labels}}} 8.128902e+06
# HELP sglang:max_total_num_tokens Maximum total number of tokens
# TYPE sglang:max_total_num_tokens gauge
sglang:max_total_num_tokens{{{labels}}} 161721.0
# HELP sglang:num_running_reqs The number of running requests.
# TYPE sglang:num_running_reqs gauge
sglang:num_running_reqs{{{labels}}} {float(load.running)}
# HELP sglang:num_queue_reqs The number of requests in the waiting queue.
# TYPE sglang:num_queue_reqs gauge
sglang:num_queue_reqs{{{labels}}} {float(load.waiting)}
# HELP sglang:token_usage The token usage
# TYPE sglang:token_usage gauge
sglang:token_usage{{{labels}}} {load.kv_cache}
# HELP sglang:cache_hit_rate The cache hit rate
# TYPE sglang:cache_hit_rate gauge
sglang:cache_hit_rate{{{labels}}} 0.0075
# HELP sglang:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE sglang:time_to_first_token_seconds histogram
sglang:time_to_first_token_seconds_bucket{{le="0.04",{labels}}} 1.0
sglang:time_to_first_token_seconds_bucket{{le="+Inf",{labels}}} 3.0
sglang:time_to_first_token_seconds_sum{{{labels}}} 0.3
sglang:time_to_first_token_seconds_count{{{labels}}} 3.0
"""


def tgi_metrics(load: EngineLoad) -> str:
    return f"""# TYPE tgi_request_count counter
tgi_request_count 1024
# TYPE tgi_queue_size gauge
tgi_queue_size {load.waiting}
# TYPE tgi_batch_current_size gauge
tgi_batch_current_size {load.running}
# TYPE tgi_batch_current_max_tokens gauge
tgi_batch_current_max_tokens 16000
# TYPE tgi_request_duration histogram
tgi_request_duration_bucket{{le="0.5"}} 3
tgi_request_duration_bucket{{le="+Inf"}} 10
tgi_request_duration_sum 12.5
tgi_request_duration_count 10
"""


PAGES = {"vllm": vllm_metrics, "sglang": sglang_metrics, "tgi": tgi_metrics}


class FakeEngine:
    """An engine on its own loopback port: the seed's API at /gen and its /metrics page, whose
    load a test sets (``load``) and which counts the requests it answered (``answered``)."""

    def __init__(self, engine: str = "vllm", **load):
        self.engine = engine
        self.load = EngineLoad(**load)
        self.metrics_status = 200
        self.server = FakeUpstream().start()
        self.server.on("/gen", lambda seen: Reply(json=SEED_ANSWER))
        self.server.on("/metrics", self._metrics)

    def _metrics(self, seen) -> Reply:
        if self.metrics_status != 200:
            return Reply(status=self.metrics_status, text="metrics are off")
        return Reply(text=PAGES[self.engine](self.load), headers={"Content-Type": PROMETHEUS_TEXT})

    @property
    def url(self) -> str:
        return self.server.url("/gen")

    @property
    def answered(self) -> int:
        return len(self.server.hits("/gen"))

    def stop(self) -> None:
        self.server.stop()
