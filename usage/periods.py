"""The periods budgets count over, as labels of the counters they add to.

The same arithmetic runs in Python (the local store, reconciliation) and in Lua (the Redis
scripts, usage.budget_store_redis): a day is ``floor(t / 86400)`` (UTC), a month is
``year * 12 + month - 1`` (UTC), a rolling window is cut into slots of ``window / 60`` (at
least a minute) and counts the slots it covers, so it moves in steps of a slot.
"""

import math
from datetime import UTC, datetime

DAY = 86400


def slot_seconds(window: int) -> int:
    return max(60, math.ceil(window / 60))


def slots_in(window: int) -> int:
    return math.ceil(window / slot_seconds(window))


def month_index(t: float) -> int:
    moment = datetime.fromtimestamp(t, UTC)
    return moment.year * 12 + moment.month - 1


def month_start(index: int) -> float:
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC).timestamp()


def labels(*, period: str, window: int, t: float) -> list[tuple[str, float, float]]:
    """(label, start, end) of every counter a budget's current period is made of."""
    if period == "day":
        day = math.floor(t / DAY)
        return [(f"d{day}", day * DAY, (day + 1) * DAY)]
    if period == "month":
        index = month_index(t)
        return [(f"m{index}", month_start(index), month_start(index + 1))]
    slot = slot_seconds(window)
    current = math.floor(t / slot)
    return [
        (f"w{number}", number * slot, (number + 1) * slot)
        for number in range(current - slots_in(window) + 1, current + 1)
    ]


def charge_label(*, period: str, window: int, t: float) -> str:
    return labels(period=period, window=window, t=t)[-1][0]


def ttl(*, period: str, window: int) -> int:
    """How long a counter outlives its period (then Redis drops it)."""
    if period == "day":
        return 2 * DAY
    if period == "month":
        return 33 * DAY
    return window + slot_seconds(window) + 3600


KIND = {"day": "d", "month": "m", "rolling": "w"}
