"""What to do when a raw partition's offsets jump past the next one to apply.

Two causes look alike. Faust can skip records around a rebalance (acking ones it never
delivered): seeking back brings them again. But offsets can also be missing for good —
transaction markers, compaction, or retention that deleted records a stopped worker never
applied — and then no seek brings them back. The worker tells them apart by asking the
broker for the first record at or after the missing offset (a probe with its own
consumer): if that is the missing offset itself, the records exist and the partition is
rewound; if it is later, the offsets in between hold no record and progress moves on.
Nothing is ever skipped on a guess. Records still buffered from before a seek would ask
for the same seek again, so one action per partition and offset is taken every few
seconds. The clock is passed in, so the policy is tested without one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = ["GapDecision", "GapPolicy"]


@dataclass(frozen=True)
class GapDecision:
    """`seek`: rewind to `offset`; `accept`: move progress to `offset`, then seek there."""

    action: Literal["seek", "accept"]
    offset: int


@dataclass
class GapPolicy:
    reseek_after_s: float = 3.0
    _last: dict[int, tuple[int, float]] = field(default_factory=dict)

    def due(self, partition: int, expected: int, now: float) -> bool:
        """True unless the same gap was acted on less than `reseek_after_s` ago."""
        last = self._last.get(partition)
        if last is not None and last[0] == expected and now - last[1] < self.reseek_after_s:
            return False
        self._last[partition] = (expected, now)
        return True

    @staticmethod
    def resolve(expected: int, first_existing: int | None) -> GapDecision:
        """Decide from the probe: the first record at or after `expected`, if any."""
        if first_existing is not None and first_existing > expected:
            return GapDecision("accept", first_existing)
        return GapDecision("seek", expected)
