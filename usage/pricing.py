"""What a request costs, in nano-dollars, by the price in force when it started."""

import math
from decimal import Decimal

from usage.catalog import BudgetRule, PriceRow
from usage.metering import Tokens


def token_cost(tokens: Tokens, price: PriceRow | None) -> int:
    if price is None:
        return 0
    cached = min(tokens.cached, tokens.input)
    return (
        (tokens.input - cached) * price.input_nanos + cached * price.cached_nanos + tokens.output * price.output_nanos
    )


def job_cost(*, images: int, video_seconds: Decimal, price: PriceRow | None) -> int:
    if price is None:
        return 0
    return images * price.image_nanos + math.ceil(Decimal(video_seconds) * price.video_second_nanos)


def amount_for(rule: BudgetRule, *, tokens: int, cost_nanos: int) -> int:
    """What one request adds to a budget's counter: its tokens, or its cost."""
    return tokens if rule.unit == "tokens" else cost_nanos
