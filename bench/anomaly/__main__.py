"""`python -m bench.anomaly` (or `make bench-anomaly`): how good and how cheap the
streaming anomaly detector (`processors.anomaly`) is.

1. NAB: the detector reads each of the 58 series of the Numenta Anomaly Benchmark, in
   time order, one reading at a time; the scores are scored the way NAB does
   (`bench/anomaly/nab.py`) for the three profiles, each with its own corpus-wide
   threshold, and at the detector's own fixed threshold.
2. Faults: the Beijing series with faults injected (`bench/anomaly/faults.py`, seeded):
   recall per kind of fault and the share of untouched readings with a fault flag.
3. Cost: readings per second of one detector, and the bytes of its state.

Prints a markdown report and writes it to bench/anomaly/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path
from typing import TypeVar

import numpy as np

from bench.anomaly import faults, nab
from processors.anomaly import FAULT_FLAGS, SeriesDetector

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT / ".." / "shared" / "data"
RESULTS = Path(__file__).with_name("RESULTS.md")

# Published standard-profile scores (NAB scoreboard, v1.1), for comparison.
PUBLISHED = (
    ("Numenta HTM", 70.5),
    ("CAD OSE", 69.9),
    ("KNN CAD", 58.0),
    ("Relative Entropy", 54.6),
    ("Random Cut Forest", 51.7),
    ("Twitter ADVec", 47.1),
    ("Windowed Gaussian", 39.6),
    ("Etsy Skyline", 35.7),
    ("Bayesian Changepoint", 17.7),
    ("random", 11.0),
)
PROFILE_TITLES = {
    "standard": "standard",
    "reward_low_FP_rate": "reward low FP",
    "reward_low_FN_rate": "reward low FN",
}

T = TypeVar("T")
R = TypeVar("R")


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parallel(function: Callable[[T], R], items: list[T], workers: int, label: str) -> list[R]:
    """``map`` over a process pool, in order, with a progress line every few items."""
    results: list[R] = []
    started = time.monotonic()
    every = max(1, len(items) // 10)
    with get_context("fork").Pool(workers) as pool:  # workers inherit the loaded data
        for done, result in enumerate(pool.imap(function, items), start=1):
            results.append(result)
            if done % every == 0 or done == len(items):
                elapsed = time.monotonic() - started
                progress(f"  {label}: {done}/{len(items)} ({elapsed:.0f}s)")
    return results


# ---------------------------------------------------------------- NAB


_CORPUS: list[nab.DataFile] = []


def _nab_scores(index: int) -> np.ndarray:
    data = _CORPUS[index]
    detector = SeriesDetector()
    update = detector.update
    pairs = zip(data.ts.tolist(), data.values.tolist(), strict=True)
    return np.array([update(ts, value).score for ts, value in pairs])


def run_nab(root: Path, workers: int) -> list[dict[str, object]]:
    progress(f"• NAB: reading {root}")
    _CORPUS[:] = nab.load_corpus(root)
    rows = sum(len(d.values) for d in _CORPUS)
    windows = sum(len(d.windows) for d in _CORPUS)
    progress(f"  {len(_CORPUS)} series, {rows:,} rows, {windows} windows; detecting")
    scores = parallel(_nab_scores, list(range(len(_CORPUS))), workers, "NAB series")
    profiles = nab.load_profiles(root / "config" / "profiles.json")
    out = []
    for name, profile in profiles.items():
        best = nab.optimise(_CORPUS, scores, profile)
        fixed = nab.score_at(_CORPUS, scores, profile, SeriesDetector.threshold)
        out.append(
            {
                "profile": PROFILE_TITLES[name],
                "score": nab.normalised(best.score, profile, windows),
                "threshold": best.threshold,
                "detected": best.windows_detected,
                "windows": windows,
                "false_positives": best.false_positives,
                "fixed": nab.normalised(fixed.score, profile, windows),
            }
        )
    return out


# ---------------------------------------------------------------- faults


_SERIES: list[faults.Series] = []
_SEED = [1]


def _fault_tally(index: int) -> faults.FaultTally:
    return faults.evaluate_series(_SERIES[index], faults.series_seed(_SEED[0], index))


def run_faults(directory: Path, seed: int, workers: int) -> dict[str, faults.FaultTally]:
    progress(f"• faults: reading {directory}")
    _SERIES[:] = faults.load_beijing(directory)
    _SEED[0] = seed
    readings = sum(len(s.raw) for s in _SERIES)
    progress(f"  {len(_SERIES)} series, {readings:,} readings; injecting (seed {seed})")
    tallies = parallel(_fault_tally, list(range(len(_SERIES))), workers, "Beijing series")
    by_pollutant: dict[str, faults.FaultTally] = {"all": faults.FaultTally()}
    for series, tally in zip(_SERIES, tallies, strict=True):
        by_pollutant["all"] += tally
        by_pollutant.setdefault(series.pollutant, faults.FaultTally())
        by_pollutant[series.pollutant] += tally
    return by_pollutant


# ---------------------------------------------------------------- cost


def run_cost(directory: Path) -> dict[str, float]:
    """One detector, one process: readings per second and state size."""
    progress("• cost: one detector on one series")
    series = faults.load_beijing(directory)[0]  # the first station's PM2.5
    factor = faults.epa_factor(series.pollutant)
    values = [None if v is None else v * factor for v in series.raw]
    best = 0.0
    for _ in range(3):
        detector = SeriesDetector(series.pollutant)
        update = detector.update
        started = time.perf_counter()
        for ts, value in zip(series.ts, values, strict=True):
            update(ts, value)
        best = max(best, len(values) / (time.perf_counter() - started))
    state = detector.to_bytes()
    restored = SeriesDetector.from_bytes(state)
    started = time.perf_counter()
    for _ in range(1000):
        SeriesDetector.from_bytes(restored.to_bytes())
    roundtrip = (time.perf_counter() - started) / 1000
    generic = SeriesDetector()
    for ts, value in zip(series.ts, values, strict=True):
        generic.update(ts, value)
    return {
        "readings_per_s": best,
        "us_per_reading": 1e6 / best,
        "state_bytes": len(state),
        "generic_state_bytes": len(generic.to_bytes()),
        "snapshot_roundtrip_us": roundtrip * 1e6,
        "series": f"{series.station} {series.pollutant}",
    }


# ---------------------------------------------------------------- report


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.2f} %" if whole else "–"


def _recall_cells(tally: faults.FaultTally) -> Iterable[str]:
    for kind in faults.KINDS:
        if kind == "dropout":
            continue
        injected = tally.injected[kind]
        yield f"{tally.detected[kind] / injected:.3f}" if injected else "–"


def report(
    nab_rows: list[dict[str, object]],
    tallies: dict[str, faults.FaultTally],
    cost: dict[str, float],
    meta: dict[str, str],
) -> str:
    lines = [
        "# Anomaly detection: latest results",
        "",
        f"`python -m bench.anomaly` ({meta['when']}, {meta['machine']}, {meta['runtime']}).",
        "",
        "## NAB (58 series, 365,558 rows, 116 windows)",
        "",
        "| profile | NAB score | threshold (optimised, corpus-wide) "
        "| windows detected | false positives | score at the fixed threshold "
        f"{SeriesDetector.threshold} |",
        "|---|---|---|---|---|---|",
    ]
    for row in nab_rows:
        lines.append(
            f"| {row['profile']} | **{row['score']:.1f}** | {row['threshold']:.4f} "
            f"| {row['detected']}/{row['windows']} | {row['false_positives']} "
            f"| {row['fixed']:.1f} |"
        )
    published = ", ".join(f"{name} {score}" for name, score in PUBLISHED)
    lines += [
        "",
        f"Published standard-profile scores for comparison: {published}, null 0. "
        "One threshold per profile for the whole corpus, as NAB's optimiser picks it; "
        "the stream uses the detector's fixed threshold (last column). The detector's "
        "parameters, one set for every series, were chosen on this corpus and on the "
        "fault injection below: like NAB's published entries, the figures are in-sample.",
        "",
        "## Faults injected into the Beijing series (72 series, 2,524,608 readings)",
        "",
        "Recall: share of injected faults with the flag of their kind on a reading they "
        "touched (a unit mix-up: any flag). False flags: untouched readings with a fault "
        "flag.",
        "",
        "| pollutant | stuck | spike | sentinel | out of range | unit mix-up "
        "| untouched readings with a fault flag | … with `anomaly` "
        "| readings after a dropout with a fault flag |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, tally in tallies.items():
        cells = " | ".join(_recall_cells(tally))
        label = "**all**" if name == "all" else name
        lines.append(
            f"| {label} | {cells} | {_pct(tally.untouched_any_fault, tally.untouched)} "
            f"| {_pct(tally.untouched_anomaly, tally.untouched)} "
            f"| {_pct(tally.after_dropout_fault, tally.after_dropout)} |"
        )
    total = tallies["all"]
    injected = ", ".join(f"{kind} {total.injected[kind]}" for kind in faults.KINDS)
    by_flag = ", ".join(f"{flag} {total.untouched_fault[flag]:,}" for flag in sorted(FAULT_FLAGS))
    delays = total.delays["stuck"]
    low, high = (
        f"{total.detected[k] / total.injected[k]:.3f} of {total.injected[k]}"
        for k in ("stuck_low", "stuck_high")
    )
    lines += [
        "",
        f"Injected: {injected}. Untouched readings: {total.untouched:,}; fault flags among "
        f"them: {by_flag}. A stuck run is flagged after a median of "
        f"{statistics.median(delays):.0f} repeated readings (90th percentile "
        f"{np.percentile(delays, 90):.0f}). Stuck recall by the value frozen: {high} runs "
        f"above the series' {faults.LOW_PERCENTILE}th percentile, {low} at or below it "
        "(the floor, where honest data repeats for days: SO2 at 2 µg/m³ up to 204 hours).",
        "",
        "## Cost",
        "",
        "| readings/s (one detector, one core) | µs per reading | state per series "
        "(`to_bytes`) | snapshot + restore |",
        "|---|---|---|---|",
        f"| {cost['readings_per_s']:,.0f} | {cost['us_per_reading']:.1f} "
        f"| {cost['state_bytes']:,.0f} bytes | {cost['snapshot_roundtrip_us']:.0f} µs |",
        "",
        f"Measured on {cost['series']} (35,064 hourly readings), best of three runs.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.anomaly", description=__doc__)
    parser.add_argument("--nab", type=Path, default=SHARED / "nab", help="NAB corpus")
    parser.add_argument(
        "--beijing", type=Path, default=SHARED / "airquality", help="PRSA_Data_*.csv files"
    )
    parser.add_argument("--seed", type=int, default=1, help="fault injection seed")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--output", type=Path, default=RESULTS, help="markdown report")
    args = parser.parse_args(argv)

    started = time.monotonic()
    nab_rows = run_nab(args.nab.resolve(), args.workers)
    tallies = run_faults(args.beijing.resolve(), args.seed, args.workers)
    cost = run_cost(args.beijing.resolve())
    meta = {
        "when": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": f"{os.cpu_count()} cores, Python {platform.python_version()}",
        "runtime": f"{time.monotonic() - started:.0f} s with {args.workers} workers",
    }
    text = report(nab_rows, tallies, cost, meta)
    print(text)
    args.output.write_text(text, encoding="utf-8")
    progress(f"• written to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
