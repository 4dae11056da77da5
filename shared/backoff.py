"""Capped exponential backoff with full jitter, as data rather than loops."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

__all__ = ["Backoff"]


@dataclass
class Backoff:
    """Delays of ``initial * factor**n`` capped at ``maximum``, each drawn uniformly from
    ``[delay/2, delay]`` so that many processes reconnecting at once do not stampede.

    Call ``next_delay()`` after each failure and ``reset()`` after a success.
    """

    initial: float = 0.1
    maximum: float = 5.0
    factor: float = 2.0
    rng: random.Random = field(default_factory=random.Random)
    attempts: int = 0

    def next_delay(self) -> float:
        try:
            delay = min(self.maximum, self.initial * self.factor**self.attempts)
        except OverflowError:  # a long outage: factor**attempts no longer fits a float
            delay = self.maximum
        self.attempts += 1
        return self.rng.uniform(delay / 2, delay)

    def reset(self) -> None:
        self.attempts = 0
