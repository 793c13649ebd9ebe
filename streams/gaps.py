"""What to do when a raw partition's offsets jump past the next one to apply.

Two causes look alike. Faust can skip records around a rebalance (acking ones it never
delivered): seeking back brings them again. But offsets can also be missing for good —
transaction markers, compaction, or retention that deleted records a stopped worker never
applied — and then no seek brings them back. The policy seeks back a few times, and
accepts the gap when the missing offset has not come back after `attempts` seeks over at
least `patience_s` seconds; records older than the partition's earliest offset are
accepted as gone at once. The clock is passed in, so the policy is tested without one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = ["GapDecision", "GapPolicy"]


@dataclass(frozen=True)
class GapDecision:
    """`seek`: rewind to `offset`; `accept`: move progress to `offset`, then seek there;
    `wait`: a seek is already under way."""

    action: Literal["seek", "accept", "wait"]
    offset: int


@dataclass
class GapPolicy:
    attempts: int = 3
    patience_s: float = 10.0
    reseek_after_s: float = 3.0
    _tries: dict[int, tuple[int, int, float, float]] = field(default_factory=dict)

    def decide(
        self, partition: int, expected: int, first_seen: int, earliest: int | None, now: float
    ) -> GapDecision:
        if earliest is not None and expected < earliest:
            self._tries.pop(partition, None)
            return GapDecision("accept", earliest)
        tried = self._tries.get(partition)
        if tried is None or tried[0] != expected:
            self._tries[partition] = (expected, 1, now, now)
            return GapDecision("seek", expected)
        _, tries, first, last = tried
        if tries >= self.attempts and now - first >= self.patience_s:
            self._tries.pop(partition, None)
            return GapDecision("accept", first_seen)
        if now - last >= self.reseek_after_s:
            self._tries[partition] = (expected, tries + 1, first, now)
            return GapDecision("seek", expected)
        return GapDecision("wait", expected)
