"""Streaming anomaly and fault detection for one series (one station and pollutant).

A :class:`SeriesDetector` reads its series in time order, never looks ahead, costs O(1)
time per reading and keeps about 2 KiB of state (:meth:`SeriesDetector.to_bytes`). For
each reading it returns a :class:`Verdict`: an anomaly ``score`` in [0, 1] and ``flags``.

Fault flags (:data:`FAULT_FLAGS`) mean the reading is not air and must stay out of the AQI:

* ``out_of_range`` — not a possible concentration: negative, infinite, or above the
  physical limit :data:`processors.validation.PLAUSIBLE_MAX` (EPA units). A generic
  series (no pollutant) may be negative; only infinity is out of its range.
* ``sentinel`` — a missing-value code (:data:`SENTINELS`: -200, -999, 9999 …), looked
  for in the number as it was sent (``raw``), before any unit conversion.
* ``stuck`` — one value repeated longer than honest data repeats it. The detector learns
  how often a reading at each level repeats the previous one, and how long runs of the
  values that do repeat (a floor, a quantisation step) go on; a run whose probability
  falls below :attr:`SeriesDetector.STUCK_PROBABILITY` is stuck. SO2 at its floor for
  days is honest and is not flagged.
* ``spike`` — an isolated jump that comes straight back. Only the *next* reading can tell
  a spike from a step, so the spike is reported by the next reading's verdict, in
  ``verdict.revision``: the previous reading's verdict again, now with ``spike``. Holding
  every verdict back by one reading instead would delay every flag and score by one
  sampling interval (an hour at hourly stations) for the sake of a rare case.

The ``anomaly`` flag means ``score >= SeriesDetector.threshold``, one value for every
series. The score borrows from the best detectors of the Numenta Anomaly Benchmark (NAB):

1. Two predictions of the next value: the level (an exponentially weighted mean) and the
   season (a profile of the week by hour). The one with the smaller recent error is used;
   the error in units of its typical error is the reading's raw surprise.
2. Numenta's anomaly likelihood: the surprise, averaged over the last few readings, is
   compared with its own long-run mean and spread; the Gaussian tail probability ``p`` of
   that average gives ``score = log(p) / log(1e-10)`` (0.5: a 1-in-100,000 chance).
3. HTM's spatial check: a value beyond everything the series has shown scores 1; so does
   a concentration a factor :attr:`SeriesDetector.UNIT_FACTOR` off the expected one (a
   µg/m³ – mg/m³ mix-up is a factor of 1000).
4. CAD-OSE's rest period: after an alert, scores stay just below the threshold for
   :attr:`SeriesDetector.REST` readings, unless the value is beyond the series' range: an
   anomaly alerts once, not on every reading while it lasts.

Concentrations are modelled as ``log(value + c)`` (:data:`NOISE_FLOOR`), because their
noise grows with their level; a generic series is modelled as it is. Missing readings and
readings with a fault flag are not scored (score 0) and teach the model nothing.
"""

from __future__ import annotations

import math
import struct
from array import array
from dataclasses import dataclass
from typing import ClassVar, Final

from processors._bands import BANDS, SLOTS, LevelBands
from processors.validation import PLAUSIBLE_MAX

__all__ = [
    "FAULT_FLAGS",
    "FLAGS",
    "NOISE_FLOOR",
    "SENTINELS",
    "SeriesDetector",
    "Verdict",
]

FLAGS: Final = ("out_of_range", "sentinel", "stuck", "spike", "anomaly")
"""Every flag a verdict can carry."""

FAULT_FLAGS: Final = frozenset({"out_of_range", "sentinel", "stuck", "spike"})
"""Flags that make a reading invalid for the AQI."""

SENTINELS: Final = frozenset(
    {-99999.0, -9999.0, -999.0, -200.0, -99.0, 9999.0, 99999.0, 999999.0, 32767.0, 65535.0}
)
"""Missing-value codes that loggers and exports put where a number should be (-200: the
UCI Air Quality set; -999 and -9999: many loggers; 32767 and 65535: 16-bit maxima)."""

NOISE_FLOOR: Final = {"pm25": 10.0, "pm10": 10.0, "o3": 0.01, "no2": 10.0, "so2": 10.0, "co": 1.0}
"""``c`` in ``log(value + c)``, in EPA units: about the noise of an analyser at low
concentrations. Below it a series varies additively, above it multiplicatively."""

_FLAG_BITS: Final = {name: 1 << i for i, name in enumerate(FLAGS)}
_SPIKE: Final = _FLAG_BITS["spike"]
_STUCK: Final = _FLAG_BITS["stuck"]
_ANOMALY: Final = _FLAG_BITS["anomaly"]
_NAN: Final = math.nan
_LOG_1E10: Final = math.log(1e-10)
_SQRT2: Final = math.sqrt(2.0)
_POLLUTANTS: Final = (None, "pm25", "pm10", "o3", "no2", "so2", "co")


def _flags(bits: int) -> frozenset[str]:
    return frozenset(name for name in FLAGS if bits & _FLAG_BITS[name])


# Not frozen: a frozen dataclass sets each field through object.__setattr__ (2-3x slower
# to build, and one is built per reading). Treated as a value all the same: never mutated.
# Its __init__ is written out: the one dataclasses generates runs interpreted even in the
# compiled build (mypyc compiles only what the class body holds).
@dataclass(slots=True, init=False)
class Verdict:
    """What the detector makes of one reading.

    ``expected`` is the range it expected (prediction ± 3 typical errors, in the units of
    the value), ``None`` while it is still learning the series. ``detail`` says in a few
    words why a flag was raised ("missing" for a missing reading; empty otherwise).
    ``revision``, when set, replaces the verdict on the previous reading of the series:
    the same verdict plus ``spike``, confirmed by this reading.
    """

    ts: float
    value: float | None
    score: float
    flags: frozenset[str]
    expected: tuple[float, float] | None
    detail: str
    revision: Verdict | None = None

    def __init__(
        self,
        ts: float,
        value: float | None,
        score: float,
        flags: frozenset[str],
        expected: tuple[float, float] | None,
        detail: str,
        revision: Verdict | None = None,
    ) -> None:
        self.ts = ts
        self.value = value
        self.score = score
        self.flags = flags
        self.expected = expected
        self.detail = detail
        self.revision = revision

    @property
    def is_fault(self) -> bool:
        """True when the reading must not enter the AQI (any of :data:`FAULT_FLAGS`)."""
        return not self.flags.isdisjoint(FAULT_FLAGS)

    @property
    def is_anomaly(self) -> bool:
        return "anomaly" in self.flags


# The scalar state in snapshot order, with its struct code.
_SCALARS: Final = (
    ("_n", "Q"),
    ("_rest", "I"),
    ("_run", "I"),
    ("_season_n", "I"),
    ("_run_band", "B"),
    ("_run_stuck", "?"),
    ("_after_gap", "?"),
    ("_flags_prev", "B"),
    ("_prev_ts", "d"),
    ("_dt", "d"),
    ("_prev", "d"),
    ("_prev_g", "d"),
    ("_pre_g", "d"),
    ("_pre_value", "d"),
    ("_pre_step", "d"),
    ("_score_prev", "d"),
    ("_lo_prev", "d"),
    ("_hi_prev", "d"),
    ("_level", "d"),
    ("_level_var", "d"),
    ("_mse_level", "d"),
    ("_season_var", "d"),
    ("_mse_season", "d"),
    ("_short", "d"),
    ("_long_mean", "d"),
    ("_long_var", "d"),
    ("_lo", "d"),
    ("_hi", "d"),
    ("_center", "d"),
    ("_spread", "d"),
    ("_step", "d"),
    ("_local", "d"),
)
_ARRAYS: Final = ("_season", "_bands", "_values")
_HEADER: Final = struct.Struct("<BB" + "".join(code for _, code in _SCALARS))
_VERSION: Final = 1


class SeriesDetector(LevelBands):
    """Causal detector for one series; the module docstring says what it flags and how.

    The class attributes in capitals are its parameters: one set for every series,
    chosen on NAB and on the Beijing fault injection (``bench/anomaly``).
    """

    threshold: ClassVar[float] = 0.6
    """Score at and above which a reading is flagged ``anomaly``, for every series."""

    WARMUP: ClassVar[int] = 150
    """Readings learned before scores, spikes and expected ranges are given."""
    REST: ClassVar[int] = 500
    """Readings after an alert whose scores stay below the threshold (CAD-OSE)."""
    ALPHA_LEVEL: ClassVar[float] = 0.1
    ALPHA_SEASON: ClassVar[float] = 0.1
    ALPHA_VAR: ClassVar[float] = 0.01
    ALPHA_MSE: ClassVar[float] = 0.01
    CLIP: ClassVar[float] = 4.0
    """An error beyond CLIP typical errors teaches the models as if it were CLIP."""
    SURPRISE_CAP: ClassVar[float] = 40.0
    ALPHA_SHORT: ClassVar[float] = 0.3
    """Weight of the newest surprise in the short-term average (about 3 readings)."""
    ALPHA_LONG: ClassVar[float] = 0.003
    """Weight of the newest average in its long-run mean and variance."""
    SPATIAL_MARGIN: ClassVar[float] = 0.02
    """A value further beyond the range seen so far than this share of it scores 1."""
    UNIT_FACTOR: ClassVar[float] = 300.0
    """A concentration this many times above or below the expected one scores 1."""
    BUCKETS_PER_DAY: ClassVar[int] = 24
    SEASON_DAYS: ClassVar[int] = 7
    SEASON_TRIALS: ClassVar[int] = 20
    """Predictions the season must have made before it may be chosen over the level."""
    SPIKE_RETURN: ClassVar[float] = 0.8
    """A spike leaves both neighbours by more than SPIKE_JUMP usual steps at its level,
    while they differ by less than SPIKE_RETURN of the smaller jump."""
    STUCK_PROBABILITY: ClassVar[float] = 3e-4
    STUCK_MIN_RUN: ClassVar[int] = 4
    GAP_FACTOR: ClassVar[float] = 3.0
    """A silence longer than GAP_FACTOR usual intervals breaks runs and spikes."""

    __slots__ = (
        "_after_gap",
        "_dt",
        "_flags_prev",
        "_floor",
        "_hi",
        "_hi_prev",
        "_level",
        "_level_var",
        "_lo",
        "_lo_prev",
        "_long_mean",
        "_long_var",
        "_mse_level",
        "_mse_season",
        "_n",
        "_pollutant",
        "_pre_g",
        "_pre_step",
        "_pre_value",
        "_prev",
        "_prev_g",
        "_prev_ts",
        "_rest",
        "_run",
        "_run_band",
        "_run_stuck",
        "_score_prev",
        "_season",
        "_season_n",
        "_season_var",
        "_short",
        "_upper",
    )

    def __init__(self, pollutant: str | None = None) -> None:
        if pollutant not in _POLLUTANTS:
            msg = f"unknown pollutant {pollutant!r}; expected one of {_POLLUTANTS}"
            raise ValueError(msg)
        self._pollutant = pollutant
        self._floor = NOISE_FLOOR[pollutant] if pollutant else 0.0
        self._upper = float(PLAUSIBLE_MAX[pollutant]) if pollutant else math.inf
        self._n = self._rest = self._run = self._run_band = self._flags_prev = self._season_n = 0
        self._run_stuck = False
        self._after_gap = True
        self._prev_ts = self._dt = self._prev = self._prev_g = _NAN
        self._pre_g = self._pre_value = self._score_prev = self._lo_prev = self._hi_prev = _NAN
        self._pre_step = 0.0
        self._level = self._lo = self._hi = self._center = _NAN
        self._level_var = self._mse_level = self._season_var = self._mse_season = 0.0
        self._short = self._long_mean = self._long_var = 0.0
        self._spread = self._step = self._local = 0.0
        self._season = array("d", [_NAN]) * (self.BUCKETS_PER_DAY * self.SEASON_DAYS)
        self._bands = array("d", [0.0]) * BANDS
        self._values = array("d", [_NAN, 0.0, 0.0]) * SLOTS

    @property
    def pollutant(self) -> str | None:
        return self._pollutant

    @property
    def spike_pending(self) -> bool:
        """True when the next reading may still flag the last one ``spike`` (in its
        ``revision``): the last reading was valid, the detector is warm and it left the
        reading before it by more than SPIKE_JUMP usual steps. When False, no next reading
        can revise the last verdict, so a caller holding results back for spikes may stop."""
        pre_g = self._pre_g
        if self._after_gap or self._n < self.WARMUP or pre_g != pre_g:
            return False
        step = self._pre_step
        return step > 0.0 and abs(self._prev_g - pre_g) > self.SPIKE_JUMP * step

    def update(self, ts: float, value: float | None, raw: float | None = None) -> Verdict:
        """The verdict on the series' next reading.

        ``ts``: event time in epoch seconds, not before the previous reading's.
        ``value``: the concentration in the pollutant's EPA unit (ug/m3 for PM, ppm for O3
        and CO, ppb for NO2 and SO2; any unit for a generic series), ``None`` or NaN when
        the reading is missing. ``raw``: the number as it was sent, before any unit
        conversion, where sentinel codes are looked for (default: ``value``).
        """
        if value is None or value != value:
            self._break_sequence()
            return Verdict(ts, None, 0.0, frozenset(), None, "missing")
        fault = self._fault(value, value if raw is None else raw)
        if fault is not None:
            self._break_sequence()
            return Verdict(ts, value, 0.0, frozenset({fault[0]}), self._expected(ts), fault[1])
        return self._valid(ts, value)

    # ------------------------------------------------------------------ hard faults

    def _fault(self, value: float, raw: float) -> tuple[str, str] | None:
        if raw in SENTINELS:
            return "sentinel", f"{raw:g} is a missing-value code"
        if math.isinf(value):
            return "out_of_range", f"{value} is not a finite number"
        if self._pollutant is None:
            return None
        if value < 0.0:
            return "out_of_range", f"{value:g} is negative"
        if value > self._upper:
            limit = f"the physical limit {self._upper:g} for {self._pollutant}"
            return "out_of_range", f"{value:g} is above {limit}"
        return None

    def _break_sequence(self) -> None:
        """A missing or faulty reading: no run, step or spike spans it."""
        self._after_gap = True
        self._run = 0
        self._pre_g = _NAN

    # ------------------------------------------------------------------ a valid reading

    def _valid(self, ts: float, value: float) -> Verdict:
        g = math.log(value + self._floor) if self._pollutant else value
        n = self._n
        prev_g = self._prev_g
        gap = self._after_gap or n == 0
        if not gap:
            dt = ts - self._prev_ts
            usual = self._dt
            if usual != usual:
                self._dt = dt
            elif dt > self.GAP_FACTOR * usual:
                gap = True
            elif dt > 0.0:
                self._dt = usual + 0.05 * (dt - usual)

        revision = self._confirm_spike(g, value) if not gap and n >= self.WARMUP else None
        self._pre_g = _NAN if gap else prev_g
        self._pre_value = self._prev
        # the usual step before this reading, so that a spike does not excuse itself
        self._pre_step = 0.0 if gap else self._typical_step(self._band(prev_g))

        score, expected, reason = self._score(ts, g, value, n)
        off_scale = reason == "unit"  # a unit mix-up teaches nothing

        # stuck: the run of equal readings, against how long honest runs at this level go
        repeat = not gap and value == self._prev
        prev_run = self._run
        run = prev_run + 1 if repeat else 1
        self._run = run
        bits = 0
        chance = 1.0
        if run >= self.STUCK_MIN_RUN:
            chance = self._run_probability(self._run_band, value, run)
            if chance < self.STUCK_PROBABILITY:
                bits = _STUCK
        if not gap and not bits and not off_scale:
            self._learn_step(self._band(prev_g), abs(g - prev_g), repeat)
        if not repeat and prev_run >= 2 and not self._run_stuck:
            self._learn_run(self._run_band, self._prev, prev_run)
        if run == 1:
            self._run_band = self._band(g)
            self._run_stuck = False
        elif bits:
            self._run_stuck = True

        if score >= self.threshold:
            bits |= _ANOMALY
        if not bits & _STUCK and not off_scale:
            self._learn(ts, g)
        self._prev, self._prev_g, self._prev_ts = value, g, ts
        self._after_gap = False
        self._score_prev, self._flags_prev = score, bits
        self._lo_prev, self._hi_prev = expected if expected is not None else (_NAN, _NAN)
        detail = self._detail(bits, value, score, expected, reason, run, chance) if bits else ""
        return Verdict(ts, value, score, _flags(bits), expected, detail, revision)

    def _confirm_spike(self, g: float, value: float) -> Verdict | None:
        """The previous reading's verdict plus ``spike``, if it stood out from both its
        neighbours by far more than the usual step while they agree with each other."""
        pre_g, prev_g = self._pre_g, self._prev_g
        up, down = prev_g - pre_g, g - prev_g
        if pre_g != pre_g or up * down >= 0.0:
            return None
        smaller = min(abs(up), abs(down))
        step = self._pre_step
        if not (step > 0.0 and smaller > self.SPIKE_JUMP * step):
            return None
        if not abs(g - pre_g) < self.SPIKE_RETURN * smaller:
            return None
        lo, hi = self._lo_prev, self._hi_prev
        detail = f"jumped from {self._pre_value:g} to {self._prev:g} and back to {value:g}"
        return Verdict(
            self._prev_ts,
            self._prev,
            self._score_prev,
            _flags(self._flags_prev | _SPIKE),
            (lo, hi) if lo == lo else None,
            detail,
        )

    # ------------------------------------------------------------------ the score

    def _value_of(self, g: float) -> float:
        return max(math.exp(g) - self._floor, 0.0) if self._pollutant else g

    def _bucket(self, ts: float) -> int:
        per_day = self.BUCKETS_PER_DAY
        day = math.floor(ts / 86400.0)
        hour = min(int((ts - day * 86400.0) * per_day / 86400.0), per_day - 1)
        return (day % self.SEASON_DAYS) * per_day + hour

    def _prediction(self, ts: float) -> tuple[float, float]:
        """The better model's prediction of g, and its typical error."""
        season = self._season[self._bucket(ts)]
        if (
            season == season
            and self._season_n >= self.SEASON_TRIALS
            and self._mse_season < self._mse_level
        ):
            return season, math.sqrt(self._season_var)
        return self._level, math.sqrt(self._level_var)

    def _expected(self, ts: float) -> tuple[float, float] | None:
        if self._n < self.WARMUP:
            return None
        center, spread = self._prediction(ts)
        return self._value_of(center - 3.0 * spread), self._value_of(center + 3.0 * spread)

    def _score(
        self, ts: float, g: float, value: float, n: int
    ) -> tuple[float, tuple[float, float] | None, str]:
        """Score, expected range and the reason for a score of 1 ("range", "unit")."""
        if n == 0:
            return 0.0, None, ""
        center, spread = self._prediction(ts)
        error = abs(g - center)
        cap = self.SURPRISE_CAP
        surprise = min(error / spread, cap) if spread > 0.0 else (0.0 if error == 0.0 else cap)
        short = self._short + self.ALPHA_SHORT * (surprise - self._short)
        self._short = short
        mean, var = self._long_mean, self._long_var
        if n < self.WARMUP:  # plain running mean and variance of the average
            self._long_mean = mean + (short - mean) / n
            self._long_var = var + ((short - self._long_mean) ** 2 - var) / n
            return 0.0, None, ""
        z = (short - mean) / max(math.sqrt(var), 1e-6)
        tail = 0.5 * math.erfc(z / _SQRT2)
        score = max(0.0, min(1.0, math.log(tail + 1e-10) / _LOG_1E10))
        mean += self.ALPHA_LONG * (short - mean)
        self._long_mean = mean
        self._long_var = var + self.ALPHA_LONG * ((short - mean) ** 2 - var)

        reason = ""
        span = self._hi - self._lo
        beyond = max(g - self._hi, self._lo - g) > self.SPATIAL_MARGIN * span
        if beyond:
            score, reason = 1.0, "range"
        if self._pollutant:
            usual = self._value_of(center)
            if value * self.UNIT_FACTOR < usual or value > usual * self.UNIT_FACTOR:
                score, reason, beyond = 1.0, "unit", True
        if self._rest > 0:
            self._rest -= 1
            if not beyond:
                score = min(score, self.threshold * 0.999)
        elif score >= self.threshold:
            self._rest = self.REST
        expected = self._value_of(center - 3.0 * spread), self._value_of(center + 3.0 * spread)
        return score, expected, reason

    # ------------------------------------------------------------------ learning

    def _track(
        self, error: float, mse: float, var: float, count: int
    ) -> tuple[float, float, float]:
        """A model's new mean square error (how well it predicts), error variance
        (clipped, so that one wild reading does not blow it up) and clipped error, after
        its ``count``-th error: plain means at first, exponentially weighted later."""
        weight_mse = max(self.ALPHA_MSE, 1.0 / count)
        weight_var = max(self.ALPHA_VAR, 1.0 / count)
        if var > 0.0:
            limit = self.CLIP * math.sqrt(var)
            clipped = max(-limit, min(limit, error))
            mse += weight_mse * (min(error * error, limit * limit) - mse)
            return mse, var + weight_var * (clipped * clipped - var), clipped
        return mse + weight_mse * (error * error - mse), error * error, error

    def _learn(self, ts: float, g: float) -> None:
        """Teach the level, the season, the range and the bands' centre one reading."""
        n = self._n
        self._n = n + 1
        bucket = self._bucket(ts)
        if n == 0:
            self._level = self._lo = self._hi = self._center = g
            self._season[bucket] = g
            return
        self._mse_level, self._level_var, clipped = self._track(
            g - self._level, self._mse_level, self._level_var, n
        )
        self._level += self.ALPHA_LEVEL * clipped
        season = self._season[bucket]
        if season != season:
            self._season[bucket] = g
        else:
            self._season_n = min(self._season_n + 1, 1 << 30)
            self._mse_season, self._season_var, clipped = self._track(
                g - season, self._mse_season, self._season_var, self._season_n
            )
            self._season[bucket] = season + self.ALPHA_SEASON * clipped
        if g < self._lo:
            self._lo = g
        elif g > self._hi:
            self._hi = g
        self._learn_level(g)

    # ------------------------------------------------------------------ explanation

    def _detail(
        self,
        bits: int,
        value: float,
        score: float,
        expected: tuple[float, float] | None,
        reason: str,
        run: int,
        chance: float,
    ) -> str:
        parts = []
        if bits & _STUCK:
            parts.append(f"{value:g} {run} times in a row (chance {chance:.1e})")
        if bits & _ANOMALY:
            where = f"expected {expected[0]:.4g} to {expected[1]:.4g}" if expected else ""
            if reason == "unit" and expected:
                usual = (expected[0] + expected[1]) / 2.0
                ratio = max(usual, value) / max(min(usual, value), 1e-300)
                parts.append(f"{value:g} is {ratio:.3g} times off, {where}: a unit mix-up?")
            elif reason == "range":
                parts.append(f"{value:g} is beyond anything the series has shown, {where}")
            else:
                parts.append(f"{value:g} is unusual (score {score:.2f}), {where}")
        return "; ".join(parts)

    # ------------------------------------------------------------------ snapshot

    def to_bytes(self) -> bytes:
        """The whole state, compact; :meth:`from_bytes` continues exactly from it."""
        header = _HEADER.pack(
            _VERSION,
            _POLLUTANTS.index(self._pollutant),
            *(getattr(self, name) for name, _ in _SCALARS),
        )
        return header + b"".join(getattr(self, name).tobytes() for name in _ARRAYS)

    @classmethod
    def from_bytes(cls, data: bytes) -> SeriesDetector:
        """The detector whose state :meth:`to_bytes` returned."""
        fields = _HEADER.unpack_from(data)
        if fields[0] != _VERSION:
            msg = f"anomaly detector state of version {fields[0]}, expected {_VERSION}"
            raise ValueError(msg)
        detector = cls(_POLLUTANTS[fields[1]])
        for (name, _), field in zip(_SCALARS, fields[2:], strict=True):
            setattr(detector, name, field)
        start = _HEADER.size
        for name in _ARRAYS:
            size = len(getattr(detector, name)) * 8
            setattr(detector, name, array("d", data[start : start + size]))
            start += size
        if start != len(data):
            msg = f"anomaly detector state of {len(data)} bytes, expected {start}"
            raise ValueError(msg)
        return detector
