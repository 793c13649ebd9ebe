"""The neighbour check: a station's hourly value against the stations around it.

A station can be wrong in ways its own series does not show (a calibration off by a
factor, a unit mix-up that lasts, a local fault that looks like weather). Stations a few
kilometres apart breathe mostly the same air, so at each hour each station's hourly mean
is compared with the *consensus* of its neighbours: the median of their hourly means of
the same pollutant at the same hour. A station disagrees with its neighbours when

    z = |log(x + c) - log(median + c) - centre| / max(scale, SCALE_FLOOR) > THRESHOLD

where ``c`` (:data:`LEVEL_OFFSET`) makes low concentrations compare additively (3 vs
9 µg/m³ is not a disagreement) and high ones by their ratio, and ``centre`` and
``scale`` (a :class:`Baseline`) are what the station usually shows against its
neighbours: a station by a road reads more NO2 than its park-side neighbours every hour,
and a station 30 km out shows a wider spread than one in the middle of the city. The
baseline is learnt online (a robust exponentially weighted mean and spread with a
half-life of :data:`HALF_LIFE_HOURS` judged hours, starting from a cautious prior), and
a flagged hour does not widen it, so a fault that lasts stays flagged.

A verdict needs at least ``min_neighbours`` neighbours with a value that hour: with
fewer, the median is not robust (one faulty neighbour would move it), and no verdict is
given. The median also means one faulty neighbour cannot make the others disagree.

The thresholds were chosen on the Beijing data (12 stations, 2013-2017; see
``python -m bench.anomaly.neighbours``): with these values about 0.5 % of real station
hours are flagged, and an hour multiplied by 5 is flagged in about 9 cases out of 10 when
the air is above its median level.

Neighbours are precomputed once from the station coordinates (:func:`neighbours_within`):
a k-d tree on points of the unit sphere finds the ``max_neighbours`` nearest stations
within the radius in O(log n) per station, so a network of 100,000 stations is planned
in about a second. Judging an hour then costs O(max_neighbours) per station.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from scipy.spatial import cKDTree  # type: ignore[import-untyped]

__all__ = [
    "CLIP",
    "EARTH_RADIUS_KM",
    "HALF_LIFE_HOURS",
    "KIND",
    "LEVEL_OFFSET",
    "PRIOR_SCALE",
    "PRIOR_WEIGHT",
    "SCALE_FLOOR",
    "THRESHOLD",
    "Baseline",
    "NeighbourRules",
    "Verdict",
    "haversine_km",
    "judge",
    "neighbours_within",
]

KIND: Final = "disagrees_with_neighbours"
"""The anomaly kind of a flagged verdict."""

EARTH_RADIUS_KM: Final = 6371.0088
"""The mean Earth radius (IUGG)."""

LEVEL_OFFSET: Final = {
    "pm25": 5.0,
    "pm10": 10.0,
    "o3": 0.01,
    "no2": 5.0,
    "so2": 2.0,
    "co": 0.2,
}
"""``c`` in ``log(x + c)``, in EPA units (µg/m³, ppm for O3 and CO, ppb for NO2 and
SO2): near the 5th percentile of PM, NO2 and CO in Beijing, higher for SO2 and O3, which
spend long hours near zero (O3 at night). Below it, differences between stations are
noise at the bottom of the analysers' range, not disagreement. Chosen on the Beijing
data: O3 at 0.005 ppm flagged 1.0 % of its station hours, at 0.01 ppm 0.6 %, with the
same recall."""

THRESHOLD: Final = 4.0
"""A station disagrees when its ``z`` exceeds this."""
SCALE_FLOOR: Final = 0.2
"""The smallest scale used (log units): a factor exp(4 × 0.2) = 2.2 at least."""
HALF_LIFE_HOURS: Final = 72.0
"""How fast a station's baseline follows a change (judged hours)."""
PRIOR_SCALE: Final = 0.3
PRIOR_WEIGHT: Final = 12.0
"""A new baseline: centre 0 and scale 0.3 (a factor of about 3.3 flags), worth 12 judged
hours. Beijing's stations settle between 0.15 and 0.55."""
CLIP: Final = 3.0
"""Residuals beyond this many scales teach the baseline only this much."""

_RATE: Final = 1.0 - 0.5 ** (1.0 / HALF_LIFE_HOURS)
_LOG_SCORE_BASE: Final = math.log(0.4)


def haversine_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance between two (lat, lon) points in degrees."""
    lat1, lon1 = math.radians(a[0]), math.radians(a[1])
    lat2, lon2 = math.radians(b[0]), math.radians(b[1])
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def _unit_vector(lat: float, lon: float) -> tuple[float, float, float]:
    phi, lam = math.radians(lat), math.radians(lon)
    return (math.cos(phi) * math.cos(lam), math.cos(phi) * math.sin(lam), math.sin(phi))


@dataclass(frozen=True)
class NeighbourRules:
    """Which stations count as a station's neighbours, and how many a verdict needs."""

    radius_km: float = 40.0
    max_neighbours: int = 8
    min_neighbours: int = 3

    def __post_init__(self) -> None:
        if not self.radius_km > 0:
            msg = f"radius_km must be positive, not {self.radius_km!r}"
            raise ValueError(msg)
        if self.min_neighbours < 1 or self.max_neighbours < self.min_neighbours:
            msg = (
                f"need 1 <= min_neighbours <= max_neighbours, not {self.min_neighbours} "
                f"and {self.max_neighbours}"
            )
            raise ValueError(msg)


def neighbours_within(
    coordinates: Mapping[str, tuple[float, float]], rules: NeighbourRules
) -> dict[str, tuple[str, ...]]:
    """Each station's nearest other stations within ``rules.radius_km``, nearest first
    (ties by id), at most ``rules.max_neighbours`` of them.

    The stations are points on the unit sphere in a k-d tree; the great-circle radius is
    the chord ``2 sin(r / 2R)``. Distances are then measured exactly (haversine).
    """
    ids = sorted(coordinates)
    if len(ids) < 2:
        return {station: () for station in ids}
    points = [_unit_vector(*coordinates[station]) for station in ids]
    tree = cKDTree(points)
    chord = 2.0 * math.sin(min(math.pi, rules.radius_km / EARTH_RADIUS_KM) / 2.0)
    # A few more than needed: the tree's chord distances and the exact ones may order
    # stations at the same distance differently.
    k = min(len(ids), rules.max_neighbours + 3)
    _, found = tree.query(points, k=k, distance_upper_bound=chord * (1 + 1e-9))
    result: dict[str, tuple[str, ...]] = {}
    for i, station in enumerate(ids):
        here = coordinates[station]
        candidates = []
        for j in found[i].tolist():
            if j >= len(ids) or j == i:
                continue  # no such neighbour (beyond the radius), or the station itself
            distance = haversine_km(here, coordinates[ids[j]])
            if distance <= rules.radius_km:
                # to the millimetre: stations at the same distance are ordered by id
                candidates.append((round(distance, 6), ids[j]))
        candidates.sort()
        result[station] = tuple(other for _, other in candidates[: rules.max_neighbours])
    return result


@dataclass(frozen=True, slots=True)
class Baseline:
    """How a station's hourly values usually compare with its neighbours' median, for one
    pollutant: the mean (``centre``) and spread (``scale``) of its log-ratio residuals,
    and how many judged hours they are worth (``weight``, the prior's included)."""

    centre: float = 0.0
    scale: float = PRIOR_SCALE
    weight: float = PRIOR_WEIGHT

    def learn(self, residual: float, flagged: bool) -> Baseline:
        """The baseline after one more judged hour.

        The residual is clipped at :data:`CLIP` scales (Huber), so one odd hour moves the
        baseline little; a flagged hour moves the centre (a station that really changed is
        learnt in a week or so) but not the scale (a lasting fault must not teach the
        baseline to tolerate it).
        """
        rate = max(_RATE, 1.0 / (self.weight + 1.0))
        deviation = residual - self.centre
        limit = CLIP * self.scale
        clipped = max(-limit, min(limit, deviation))
        scale = self.scale
        if not flagged:
            scale = math.sqrt((1.0 - rate) * scale * scale + rate * clipped * clipped)
        return Baseline(self.centre + rate * clipped, scale, self.weight + 1.0)

    def to_row(self) -> list[float]:
        return [self.centre, self.scale, self.weight]

    @classmethod
    def from_row(cls, row: Sequence[float]) -> Baseline:
        centre, scale, weight = row
        return cls(float(centre), float(scale), float(weight))


@dataclass(frozen=True, slots=True)
class Verdict:
    """The neighbour check of one station's hourly value of one pollutant.

    ``consensus`` is the median of the neighbours' values; ``expected`` the range of
    values the station could have had without disagreeing (its baseline applied to the
    consensus); ``neighbours`` the (station, value) pairs used, nearest first.
    """

    station_id: str
    pollutant: str
    value: float
    consensus: float
    expected: tuple[float, float]
    z: float
    score: float
    neighbours: tuple[tuple[str, float], ...]

    @property
    def disagrees(self) -> bool:
        return self.z > THRESHOLD

    @property
    def detail(self) -> str:
        """Why, in a few words, with the neighbours' values."""
        values = ", ".join(f"{station} {value:.4g}" for station, value in self.neighbours)
        if self.consensus > 0:
            how = f"{self.value / self.consensus:.3g}× the median"
        else:
            how = f"{self.value:.4g} against the median"
        return (
            f"{how} {self.consensus:.4g} of {len(self.neighbours)} neighbours "
            f"({values}); z {self.z:.1f} > {THRESHOLD:g}"
        )


def _score(z: float) -> float:
    """0.6 at the threshold (as the series detector's threshold), 0.97 at twice it."""
    return 1.0 - math.exp(_LOG_SCORE_BASE * (z / THRESHOLD) ** 2)


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2.0


def judge(
    pollutant: str,
    values: Mapping[str, float],
    neighbours: Mapping[str, Sequence[str]],
    baselines: Mapping[str, Baseline],
    stations: Iterable[str],
    min_neighbours: int = 3,
) -> tuple[list[Verdict], dict[str, Baseline]]:
    """Judge one hour of one pollutant.

    ``values`` holds the hour's values (EPA units) of every station that reported one,
    the judged ones and their neighbours; ``stations`` are the stations to judge (those
    without a value, or with fewer than ``min_neighbours`` neighbours with one, get no
    verdict). Returns the verdicts (by station id) and the judged stations' new
    baselines; ``baselines`` is not changed. Deterministic: the same values give the same
    verdicts whatever order the mappings are in.
    """
    offset = LEVEL_OFFSET.get(pollutant)
    if offset is None:
        return [], {}
    verdicts: list[Verdict] = []
    learnt: dict[str, Baseline] = {}
    for station in sorted(set(stations)):
        value = values.get(station)
        if value is None or not math.isfinite(value):
            continue
        around = [
            (other, values[other])
            for other in neighbours.get(station, ())
            if other in values and math.isfinite(values[other])
        ]
        if len(around) < min_neighbours:
            continue
        consensus = _median([max(v, 0.0) for _, v in around])
        centre_log = math.log(consensus + offset)
        baseline = baselines.get(station, Baseline())
        residual = math.log(max(value, 0.0) + offset) - centre_log
        scale = max(baseline.scale, SCALE_FLOOR)
        z = abs(residual - baseline.centre) / scale
        expected = (
            max(0.0, math.exp(centre_log + baseline.centre - THRESHOLD * scale) - offset),
            math.exp(centre_log + baseline.centre + THRESHOLD * scale) - offset,
        )
        verdict = Verdict(
            station, pollutant, value, consensus, expected, z, _score(z), tuple(around)
        )
        verdicts.append(verdict)
        learnt[station] = baseline.learn(residual, verdict.disagrees)
    return verdicts, learnt
