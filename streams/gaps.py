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

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["CommitWatch", "GapDecision", "GapPolicy", "StallWatch"]


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


@dataclass
class StallWatch:
    """Which partitions the worker's watchdog rewinds: those whose consumer is ahead of the
    records applied (committed or read offset > applied progress) with no progress.

    Ahead is also the normal state of a busy worker: records read but still queued for the
    agent. A batch that takes longer than two watchdog ticks (an hour closing for many
    stations on a loaded machine) leaves every partition's queued records waiting, and a
    rewind then only disturbs a worker that is doing its job (the soak run saw all
    partitions rewound that way, again and again, while the lag grew). So a partition with
    records in flight (delivered to the worker's task, not yet acked, at or above its
    progress) is given `in_flight_patience_s` to progress; one with none is rewound on the
    second tick without progress, as before.
    """

    in_flight_patience_s: float = 60.0
    _seen: dict[Hashable, tuple[int, float]] = field(default_factory=dict)
    _end_tried: dict[Hashable, int] = field(default_factory=dict)

    def check(
        self,
        tp: Hashable,
        applied: int | None,
        ahead: int | None,
        in_flight: bool,
        now: float,
        *,
        log_end: int | None = None,
    ) -> bool:
        """True when `tp` is to be rewound to `applied` now.

        `log_end` (the partition's end offset as last fetched) counts as ahead too, once per
        applied offset: Faust drops records it fetched around a rebalance and then seeks
        back to the committed offset, which does nothing for a partition with none
        committed, so neither the committed nor the read offset shows that records were
        skipped. Once, because offsets without records (transaction markers) can end a
        partition: a rewind there brings nothing, and is not repeated.
        """
        if applied is not None and self._end_tried.get(tp, applied) != applied:
            del self._end_tried[tp]  # progress since the last rewind to the end
        by_end = (
            applied is not None
            and (ahead is None or ahead <= applied)
            and log_end is not None
            and log_end > applied
            and self._end_tried.get(tp) != applied
        )
        if by_end:
            ahead = log_end
        if applied is None or ahead is None or ahead <= applied:
            self._seen.pop(tp, None)
            return False
        seen = self._seen.get(tp)
        if seen is None or seen[0] != applied:
            self._seen[tp] = (applied, now)  # first sighting, or progress since the last
            return False
        if in_flight and now - seen[1] < self.in_flight_patience_s:
            return False  # queued for the task: busy, not stalled
        del self._seen[tp]
        if by_end:
            self._end_tried[tp] = applied
        return True


@dataclass
class CommitWatch:
    """Which partitions' applied progress the worker's watchdog commits itself.

    Faust commits the offsets of the records the worker acks. Records applied by a
    partition's previous owner and not committed before the partition moved are delivered
    again to the next owner and skipped there (acked, so committed), unless Faust drops
    them as fetched around a rebalance: with no committed offset to seek back to, the new
    owner never reads them, acks nothing, and the group's committed offset stays behind
    for good (its lag never falls; found by the scale-out test, one run in seven). Faust
    also commits nothing while the lowest offset it holds as acked is more than one above
    the committed one, so one offset never acked there stalls its commits for good. The
    applied progress is durable after the records' outputs, so committing it is always
    safe: done when the committed offset is behind it with nothing of the partition
    pending (delivered to the worker's task and not acked) on two ticks in a row; Faust
    commits every second, so two ticks without its commit catching up mean it will not.
    """

    _seen: dict[Hashable, tuple[int, int | None]] = field(default_factory=dict)

    def check(
        self, tp: Hashable, applied: int | None, committed: int | None, pending: bool
    ) -> int | None:
        """The offset to commit for `tp` now, if any."""
        if applied is None or pending or (committed is not None and committed >= applied):
            self._seen.pop(tp, None)
            return None
        if self._seen.get(tp) != (applied, committed):
            self._seen[tp] = (applied, committed)  # first sighting, or something moved
            return None
        del self._seen[tp]
        return applied
