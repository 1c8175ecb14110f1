"""Smooth weighted round robin (nginx's algorithm) between the workers of one model.

Each pick adds every candidate's weight to its running score, takes the highest, and
subtracts the total from the winner: weights 5, 1, 1 give a a b a c a a, spread out rather
than in bursts. The scores live in this process; each process balances on its own.
"""

import threading
from collections.abc import Sequence
from typing import Protocol


class Weighted(Protocol):
    id: int
    weight: int


class SmoothWeightedRoundRobin:
    def __init__(self) -> None:
        self._scores: dict[str, dict[int, int]] = {}
        self._lock = threading.Lock()

    def pick(self, group: str, candidates: Sequence[Weighted]) -> Weighted:
        """Choose one of ``candidates`` (all with weight > 0) for ``group``."""
        if not candidates:
            raise ValueError("pick() needs at least one candidate")
        with self._lock:
            scores = self._scores.setdefault(group, {})
            total = 0
            best = None
            for candidate in candidates:
                total += candidate.weight
                score = scores.get(candidate.id, 0) + candidate.weight
                scores[candidate.id] = score
                if best is None or score > scores[best.id]:
                    best = candidate
            scores[best.id] -= total
            return best

    def reset(self) -> None:
        with self._lock:
            self._scores.clear()
