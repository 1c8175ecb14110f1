"""Prometheus counters of tokens and cost (multiprocess mode under gunicorn, as console.metrics).

By model only: a series per client key would grow without bound; GET /api/usage and the
dashboard break usage down by key and team.
"""

from prometheus_client import Counter

from console.metrics import child, model_label

TOKENS = Counter(
    "mmm_usage_tokens",
    "Tokens settled, by model and direction (input includes cached; cached counts them again), "
    "and whether the gateway estimated them.",
    ["model", "direction", "estimated"],
)
COST = Counter(
    "mmm_usage_cost_usd", "Cost settled in USD, by model, at the price in force when each request started.", ["model"]
)


def observe_usage(row) -> None:
    model = model_label(row.model_name)
    estimated = "true" if row.estimated else "false"
    for direction, count in (("input", row.input_tokens), ("output", row.output_tokens), ("cached", row.cached_tokens)):
        if count:
            child(TOKENS, model, direction, estimated).inc(count)
    if row.cost_nanos:
        child(COST, model).inc(row.cost_nanos / 1e9)
