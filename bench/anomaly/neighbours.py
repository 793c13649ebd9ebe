"""`python -m bench.anomaly.neighbours` (or `make bench-neighbours`): how often the neighbour
check (`processors.neighbours`) flags real Beijing station hours, and how many injected
faults it catches.

The 12 Beijing stations (2013-03 .. 2017-02, hourly) are read in EPA units; readings the
series detector marks as faults are left out first, as the stream leaves them out of the
hourly means (`--no-mask` keeps them). Then every hour, pollutant by pollutant, every
station is judged against its neighbours (radius, neighbour counts: the city file's
`[neighbours]` defaults), in time order, its baseline learning as it goes:

1. **Clean run**: the share of judged station hours flagged (the data's own faults and
   local events included, so an upper bound of the false-flag rate), by pollutant and
   station; and, for every judged station hour, whether the same hour multiplied by 3 or
   5, or divided by 10 or 1000 (µg/m³ sent as mg/m³), would have been flagged (the
   expected range of its verdict): the single-hour recall, for all hours and for hours
   at or above the pollutant's median level.
2. **Injected run** (seeded): after a month, every :data:`SLOT` hours one fault goes into
   one random station and pollutant, and goes through the check like real data (it is
   its neighbours' neighbour, and a lasting one reaches its baseline): a fault is caught
   when one of its hours is flagged. Untouched station hours flagged meanwhile are
   counted too.
3. **Cost**: microseconds per area-hour (12 stations, 6 pollutants) of the check itself
   and of the stream's area step (`streams.neighbourhood`: decode, state, snapshot), and
   the bytes of an area's state.

Prints a markdown report and writes it to bench/anomaly/NEIGHBOURS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from bench.anomaly import faults
from civicstream.settings import BUNDLED_CITY, load_city
from processors import neighbours as nb
from processors.anomaly import FAULT_FLAGS

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT / ".." / "shared" / "data"
RESULTS = Path(__file__).with_name("NEIGHBOURS.md")
POLLUTANTS = tuple(faults.COLUMNS)
FACTORS = {"× 3": 3.0, "× 5": 5.0, "÷ 10": 0.1, "÷ 1000": 0.001}
LEARN = 720  # hours before the first injected fault
SLOT = 60  # hours between injected faults
KINDS = {
    # kind: (factor, shortest, longest run in hours)
    "× 3, 1 h": (3.0, 1, 1),
    "× 5, 1 h": (5.0, 1, 1),
    "÷ 10, 1 h": (0.1, 1, 1),
    "× 3, 6–24 h": (3.0, 6, 24),
    "unit mix-up (÷ 1000), 1–24 h": (0.001, 1, 24),
}

Values = dict[str, dict[str, list[float | None]]]  # station → pollutant → hourly values


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load(directory: Path, mask: bool, workers: int) -> tuple[Values, int]:
    """Station → pollutant → hourly values in EPA units (None: missing or a fault)."""
    series = faults.load_beijing(directory)
    if mask:
        from bench.anomaly.__main__ import parallel

        _MASK_SERIES[:] = series
        flags = parallel(_detect, list(range(len(series))), workers, "series detector")
    values: Values = {}
    for index, one in enumerate(series):
        factor = faults.epa_factor(one.pollutant)
        hourly = [None if v is None else v * factor for v in one.raw]
        if mask:
            hourly = [
                None if f & FAULT_FLAGS else v for v, f in zip(hourly, flags[index], strict=True)
            ]
        values.setdefault(one.station.lower(), {})[one.pollutant] = hourly
    return values, len(series[0].ts)


_MASK_SERIES: list[faults.Series] = []


def _detect(index: int) -> list[frozenset[str]]:
    one = _MASK_SERIES[index]
    return faults.run_detector(one, one.raw)


@dataclass
class Fault:
    kind: str
    station: str
    pollutant: str
    start: int
    length: int
    level: float  # the true value at the first faulted hour


@dataclass
class Tally:
    judged: Counter[str] = field(default_factory=Counter)  # by pollutant
    flagged: Counter[str] = field(default_factory=Counter)
    judged_station: Counter[str] = field(default_factory=Counter)
    flagged_station: Counter[str] = field(default_factory=Counter)
    what_if: Counter[tuple[str, bool]] = field(default_factory=Counter)  # (factor, high)
    high: int = 0
    seconds: float = 0.0
    hours: int = 0


def plan_faults(values: Values, hours: int, seed: int) -> list[Fault]:
    rng = np.random.default_rng(seed)
    stations = sorted(values)
    kinds = list(KINDS)
    out = []
    for slot, slot_start in enumerate(range(LEARN, hours - SLOT, SLOT)):
        kind = kinds[slot % len(kinds)]
        _, shortest, longest = KINDS[kind]
        station = stations[int(rng.integers(len(stations)))]
        pollutant = POLLUTANTS[int(rng.integers(len(POLLUTANTS)))]
        series = values[station][pollutant]
        start = slot_start + int(rng.integers(0, SLOT // 2))
        while start < slot_start + SLOT - longest and series[start] is None:
            start += 1
        level = series[start]
        if level is None:
            continue
        length = int(rng.integers(shortest, longest + 1))
        out.append(Fault(kind, station, pollutant, start, length, level))
    return out


def run(
    values: Values,
    hours: int,
    neighbours: dict[str, tuple[str, ...]],
    rules: nb.NeighbourRules,
    medians: dict[str, float],
    injected: list[Fault] | None = None,
) -> tuple[Tally, dict[int, set[int]]]:
    """The check over every hour, in time order; `injected` faults change the values they
    touch. Returns the tally of untouched station hours and, per fault, the hours flagged."""
    stations = sorted(values)
    touched: dict[tuple[str, str, int], tuple[int, float]] = {}
    for index, fault in enumerate(injected or []):
        factor = KINDS[fault.kind][0]
        for t in range(fault.start, min(fault.start + fault.length, hours)):
            touched[(fault.station, fault.pollutant, t)] = (index, factor)
    caught: dict[int, set[int]] = {i: set() for i in range(len(injected or []))}
    baselines: dict[str, dict[str, nb.Baseline]] = {p: {} for p in POLLUTANTS}
    tally = Tally()
    started = time.perf_counter()
    for t in range(hours):
        for pollutant in POLLUTANTS:
            hour: dict[str, float] = {}
            for station in stations:
                value = values[station][pollutant][t]
                if value is None:
                    continue
                fault = touched.get((station, pollutant, t))
                hour[station] = value * fault[1] if fault else value
            if len(hour) <= rules.min_neighbours:
                continue
            verdicts, learnt = nb.judge(
                pollutant, hour, neighbours, baselines[pollutant], stations, rules.min_neighbours
            )
            baselines[pollutant].update(learnt)
            for verdict in verdicts:
                fault = touched.get((verdict.station_id, pollutant, t))
                if fault is not None:
                    if verdict.disagrees:
                        caught[fault[0]].add(t)
                    continue
                tally.judged[pollutant] += 1
                tally.judged_station[verdict.station_id] += 1
                if verdict.disagrees:
                    tally.flagged[pollutant] += 1
                    tally.flagged_station[verdict.station_id] += 1
                if injected is None:
                    high = verdict.value >= medians[pollutant]
                    tally.high += high
                    low_end, high_end = verdict.expected
                    for name, factor in FACTORS.items():
                        wrong = verdict.value * factor
                        if wrong > high_end or wrong < low_end:
                            tally.what_if[(name, high)] += 1
        tally.hours += 1
    tally.seconds = time.perf_counter() - started
    return tally, caught


def stream_cost(values: Values, hours: int, coordinates: dict[str, tuple[float, float]]) -> dict:
    """The stream's area step on real hourly records: µs per area-hour, state bytes."""
    from schemas import Topics, encode
    from streams.air_quality import SourceRecord
    from streams.neighbourhood import AreaPlan, NeighbourConfig, NeighbourPipeline

    plan = AreaPlan.of(coordinates, NeighbourConfig())
    pipeline = NeighbourPipeline(Topics(), plan)
    stations = sorted(values)
    span = min(hours, 24 * 60)
    start_ms = 1_362_067_200_000
    records = []
    for t in range(span):
        for station in stations:
            means = {
                p: values[station][p][t] for p in POLLUTANTS if values[station][p][t] is not None
            }
            record = {
                "station_id": station,
                "hour_start": start_ms + t * 3_600_000,
                "hourly_means": means,
                "reading_count": len(means),
            }
            area = plan.home[station]
            value = encode("aqi_hourly", record)
            records.append(SourceRecord("internal", 0, len(records), area.encode(), value))

    class Store(dict):  # type: ignore[type-arg]
        def load(self, key: str) -> bytes | None:
            return self.get(key)

    store = Store()
    started = time.perf_counter()
    batch = 12 * 6  # six hours of the city per batch
    events = 0
    for first in range(0, len(records), batch):
        result = pipeline.process(records[first : first + batch], store)
        events += result.disagreements
        for update in result.state_updates:
            store[update.station_id] = update.data
    seconds = time.perf_counter() - started
    area_state = max(len(v) for k, v in store.items() if not k.startswith("\x00"))
    return {"us_per_area_hour": seconds / span * 1e6, "state_bytes": area_state, "hours": span}


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.2f} %" if whole else "–"


def report(
    clean: Tally,
    injected: Tally,
    faults_list: list[Fault],
    caught: dict[int, set[int]],
    medians: dict[str, float],
    rules: nb.NeighbourRules,
    neighbours: dict[str, tuple[str, ...]],
    cost: dict,
    meta: dict[str, str],
) -> str:
    judged = sum(clean.judged.values())
    flagged = sum(clean.flagged.values())
    lines = [
        "# Neighbour check: latest results",
        "",
        f"`python -m bench.anomaly.neighbours` ({meta['when']}, {meta['machine']}, "
        f"{meta['runtime']}). Beijing, 12 stations, 2013-03 .. 2017-02; radius "
        f"{rules.radius_km:g} km, at most {rules.max_neighbours} and at least "
        f"{rules.min_neighbours} neighbours; threshold z > {nb.THRESHOLD:g}, scale floor "
        f"{nb.SCALE_FLOOR:g}, baseline half-life {nb.HALF_LIFE_HOURS:g} h. "
        f"{meta['mask']}",
        "",
        "Neighbours: "
        + "; ".join(f"{s} {len(n)}" for s, n in sorted(neighbours.items()))
        + " (fewer than the minimum: no verdict).",
        "",
        "## Clean data: station hours flagged",
        "",
        f"{judged:,} station hours judged, **{_pct(flagged, judged)} flagged** (an upper "
        "bound of the false-flag rate: the data's own faults and local events are in it).",
        "",
        "| " + " | ".join(POLLUTANTS) + " |",
        "|" + "---|" * len(POLLUTANTS),
        "| " + " | ".join(_pct(clean.flagged[p], clean.judged[p]) for p in POLLUTANTS) + " |",
        "",
        "By station: "
        + ", ".join(
            f"{s} {_pct(clean.flagged_station[s], clean.judged_station[s])}"
            for s in sorted(clean.judged_station)
        )
        + ".",
        "",
        "## Single-hour recall (every judged station hour, altered alone)",
        "",
        "| fault | all hours | hours at or above the pollutant's median |",
        "|---|---|---|",
    ]
    for name in FACTORS:
        hits_high = clean.what_if[(name, True)]
        hits = hits_high + clean.what_if[(name, False)]
        lines.append(
            f"| {name} | {hits / judged:.3f} | {hits_high / clean.high:.3f} |"
            if judged and clean.high
            else f"| {name} | – | – |"
        )
    medians_text = ", ".join(f"{p} {medians[p]:.4g}" for p in POLLUTANTS)
    lines += [
        "",
        f"Medians (EPA units): {medians_text}. Below the median, a factor of 3 is often "
        "within what stations honestly differ by at low levels (3 vs 9 µg/m³).",
        "",
        f"## Injected faults ({len(faults_list)}, one every {SLOT} h after a month)",
        "",
        "A fault is caught when one of its hours is flagged; `high`: its first hour at or "
        "above the pollutant's median.",
        "",
        "| fault | injected | caught | recall | recall, high | hours flagged |",
        "|---|---|---|---|---|---|",
    ]
    for kind in KINDS:
        chosen = [i for i, f in enumerate(faults_list) if f.kind == kind]
        high = [i for i in chosen if faults_list[i].level >= medians[faults_list[i].pollutant]]
        hits = sum(1 for i in chosen if caught[i])
        hits_high = sum(1 for i in high if caught[i])
        hours_all = sum(faults_list[i].length for i in chosen)
        hours_hit = sum(len(caught[i]) for i in chosen)
        lines.append(
            f"| {kind} | {len(chosen)} | {hits} | {hits / len(chosen):.3f} "
            f"| {hits_high / len(high):.3f} ({len(high)}) | {_pct(hours_hit, hours_all)} |"
            if chosen and high
            else f"| {kind} | {len(chosen)} | {hits} | – | – | – |"
        )
    untouched = sum(injected.judged.values())
    lines += [
        "",
        f"Untouched station hours of the injected run: {untouched:,}, "
        f"{_pct(sum(injected.flagged.values()), untouched)} flagged (clean run: "
        f"{_pct(flagged, judged)}): a faulty station does not make its neighbours disagree.",
        "",
        "## Cost",
        "",
        "| the check, per area-hour (12 stations × 6 pollutants) | the stream's area step, "
        "per area-hour | area state (snapshot) |",
        "|---|---|---|",
        f"| {clean.seconds / clean.hours * 1e6:,.0f} µs | {cost['us_per_area_hour']:,.0f} µs "
        f"| {cost['state_bytes']:,} bytes |",
        "",
        "The check: `processors.neighbours.judge` for the six pollutants of an hour, "
        f"baselines included, over {clean.hours:,} hours. The area step: "
        "`streams.neighbourhood.NeighbourPipeline` on encoded hourly records (decode, "
        f"state, the check, events, snapshot), {cost['hours']:,} hours in batches of six "
        "hours; the state is the largest snapshot written.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.anomaly.neighbours", description=__doc__)
    parser.add_argument(
        "--beijing", type=Path, default=SHARED / "airquality", help="PRSA_Data_*.csv files"
    )
    parser.add_argument("--seed", type=int, default=1, help="fault injection seed")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument(
        "--no-mask", action="store_true", help="keep readings the series detector rejects"
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="markdown report")
    args = parser.parse_args(argv)

    started = time.monotonic()
    from streams.neighbourhood import NeighbourConfig

    city = load_city(BUNDLED_CITY)
    coordinates = {s.station_id: (s.lat, s.lon) for s in city.stations.values()}
    rules = NeighbourConfig().rules
    neighbours = nb.neighbours_within(coordinates, rules)
    progress(f"• reading {args.beijing}")
    values, hours = load(args.beijing.resolve(), not args.no_mask, args.workers)
    assert set(values) == set(coordinates), (sorted(values), sorted(coordinates))
    medians = {
        p: float(np.median([v for s in values for v in values[s][p] if v is not None]))
        for p in POLLUTANTS
    }
    progress("• clean run")
    clean, _ = run(values, hours, neighbours, rules, medians)
    progress("• injected run")
    plan = plan_faults(values, hours, args.seed)
    injected, caught = run(values, hours, neighbours, rules, medians, plan)
    progress("• stream cost")
    cost = stream_cost(values, hours, coordinates)
    meta = {
        "when": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": f"{os.cpu_count()} cores, Python {platform.python_version()}",
        "runtime": f"{time.monotonic() - started:.0f} s",
        "mask": (
            "Readings kept as they are (`--no-mask`)."
            if args.no_mask
            else "Readings the series detector marks as faults are left out first, as in "
            "the stream."
        ),
    }
    text = report(clean, injected, plan, caught, medians, rules, neighbours, cost, meta)
    print(text)
    args.output.write_text(text, encoding="utf-8")
    progress(f"• written to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
