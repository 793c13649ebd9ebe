"""What honest steps and runs look like at each level of a series.

The ``spike`` and ``stuck`` flags of :mod:`processors.anomaly` judge a reading against
the series' own habits *at that level*: a concentration near its floor changes in
quantisation steps and repeats for hours, one high up moves every hour. The series'
level range is cut into :data:`LEVELS` bands of half a standard deviation around its
long-run centre; per band the detector keeps the usual size of a change and how often
readings repeat, and for the few values that repeat most, how long their runs go on.
"""

from __future__ import annotations

import math
from array import array
from typing import ClassVar, Final

__all__ = ["BANDS", "LEVELS", "SLOTS", "LevelBands"]

LEVELS: Final = 8
_WIDTH: Final = 6  # per band: step weight, mean step, repeat trials, repeats, run trials, runs
BANDS: Final = LEVELS * _WIDTH
"""Numbers kept for the level bands."""
SLOTS: Final = 8
"""Values whose runs are followed one by one (value, chances to go on, taken)."""


class LevelBands:
    """Mixin of :class:`processors.anomaly.SeriesDetector`: its level-band statistics.

    The state lives in the detector's slots so that one snapshot holds all of it.
    """

    SPIKE_JUMP: ClassVar[float] = 4.0
    """A spike leaves its neighbours by more than SPIKE_JUMP usual steps; a step learnt
    is capped there, so that one spike does not make the next look usual."""
    LOCAL_WEIGHT: ClassVar[float] = 0.5
    """Share of the last few steps' size that counts as usual when the series is restless."""
    ALPHA_LOCAL: ClassVar[float] = 0.2
    ALPHA_BAND: ClassVar[float] = 0.002
    """Weight of a reading in the series' centre and spread, which place the bands."""
    STEP_MEMORY: ClassVar[float] = 0.998
    RUN_MEMORY: ClassVar[float] = 0.99
    VALUE_PRIOR: ClassVar[float] = 2.0
    """Weight of the band's run statistics in those of a single value."""

    __slots__ = ("_bands", "_center", "_local", "_spread", "_step", "_values")

    _bands: array[float]
    _values: array[float]
    _center: float
    _spread: float
    _step: float
    _local: float

    def _learn_level(self, g: float) -> None:
        """Move the series' long-run centre and spread towards g (clipped at 3 sd)."""
        deviation = g - self._center
        spread = self._spread
        if spread > 0.0:
            limit = 3.0 * math.sqrt(spread)
            deviation = max(-limit, min(limit, deviation))
        self._center += self.ALPHA_BAND * deviation
        self._spread = spread + self.ALPHA_BAND * (deviation * deviation - spread)

    def _band(self, g: float) -> int:
        """The level band of g."""
        spread = self._spread
        if not spread > 0.0:
            return LEVELS // 2
        band = math.floor((g - self._center) / math.sqrt(spread) * 2.0) + LEVELS // 2
        return 0 if band < 0 else LEVELS - 1 if band >= LEVELS else band

    def _typical_step(self, band: int) -> float:
        """The usual size of a change at this level (repeats left out, so that one
        quantisation step at the floor is the small change it is), or a share of the
        last few steps' size when the series is restless."""
        i = band * _WIDTH
        usual = self._bands[i + 1] if self._bands[i] >= 20.0 else self._step
        return max(usual, self.LOCAL_WEIGHT * self._local)

    def _learn_step(self, band: int, step: float, repeat: bool) -> None:
        """One step between consecutive readings: its size, and whether it repeated."""
        bands = self._bands
        memory = self.STEP_MEMORY
        typical = self._typical_step(band)
        if typical > 0.0:
            step = min(step, self.SPIKE_JUMP * typical)
        self._local += self.ALPHA_LOCAL * (step - self._local)
        i = band * _WIDTH
        if not repeat:
            self._step += 0.01 * (step - self._step)
            weight = bands[i] * memory + 1.0
            bands[i] = weight
            bands[i + 1] += (step - bands[i + 1]) / weight
        bands[i + 2] = bands[i + 2] * memory + 1.0
        bands[i + 3] = bands[i + 3] * memory + (1.0 if repeat else 0.0)

    def _learn_run(self, band: int, value: float, run: int) -> None:
        """An honest run of ``run >= 2`` equal readings ended: after its first repeat it
        had ``run - 1`` chances to go on and took ``run - 2``."""
        memory = self.RUN_MEMORY
        bands = self._bands
        i = band * _WIDTH
        bands[i + 4] = bands[i + 4] * memory + (run - 1)
        bands[i + 5] = bands[i + 5] * memory + (run - 2)
        values = self._values
        slot = self._slot(value)
        if slot < 0:  # the value takes over the least followed slot
            slot = min(range(0, len(values), 3), key=lambda j: values[j + 1])
            values[slot], values[slot + 1], values[slot + 2] = value, 0.0, 0.0
        values[slot + 1] = values[slot + 1] * memory + (run - 1)
        values[slot + 2] = values[slot + 2] * memory + (run - 2)

    def _slot(self, value: float) -> int:
        values = self._values
        for j in range(0, len(values), 3):
            if values[j] == value:
                return j
        return -1

    def _run_probability(self, band: int, value: float, run: int) -> float:
        """Chance that honest data repeats this value ``run`` times in a row: how often a
        reading at its level repeats the previous one, and how often runs of this very
        value (else: of values at its level) go on."""
        bands = self._bands
        i = band * _WIDTH
        repeat = (bands[i + 3] + 1.0) / (bands[i + 2] + 2.0)
        carry_on = (bands[i + 5] + 9.0) / (bands[i + 4] + 10.0)
        slot = self._slot(value)
        if slot >= 0:
            values = self._values
            prior = self.VALUE_PRIOR
            carry_on = (values[slot + 2] + prior * carry_on) / (values[slot + 1] + prior)
        return repeat * carry_on ** (run - 2)
