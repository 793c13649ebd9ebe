"""The Numenta Anomaly Benchmark (NAB v1.1) scorer, re-implemented with numpy.

It follows numenta/NAB's own code (``nab/sweeper.py``, ``nab/runner.py``) rule by rule,
so that a score printed here can be compared with NAB's published scoreboard:

* A detector reads each file in time order and gives every row a score in [0, 1]; a row
  is a detection when its score is ``>=`` the threshold. One threshold for the whole
  corpus, chosen per profile by sweeping every distinct score (NAB's optimiser).
* The first ``min(floor(0.15 · N), 0.15 · 5000)`` rows of a file are the probation
  period: they are not scored at all (a window's rows inside it do not count either).
* Row ``i`` inside a window ``[left, right]`` (indices) of width ``w = right - left + 1``
  is worth ``A_TP · σ(-(right - i + 1) / w) / σ(-1)``, where σ is NAB's scaled sigmoid
  ``2 / (1 + e^{5x}) - 1`` (and -1 beyond x = 3): exactly ``A_TP`` at the left edge,
  close to 0 at the right edge. A window counts once, with its best (= earliest)
  detection; a window without a detection costs ``-A_FN``.
* A detection outside every window costs ``A_FP · σ(|i - right_prev| / (w_prev - 1))``
  after a window (about 0 right after it, -A_FP three widths later) and the full
  ``-A_FP`` before the first window of its file. Every such detection counts.
* Normalised score ``100 · (S - S_null) / (S_perfect - S_null)``, where
  ``S_perfect = windows · A_TP`` and ``S_null = -windows · A_FN`` (the detector that
  never fires).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

__all__ = [
    "PROBATION_PERCENT",
    "DataFile",
    "Profile",
    "ThresholdScore",
    "load_corpus",
    "load_profiles",
    "normalised",
    "optimise",
    "probation_length",
    "scaled_sigmoid",
    "score_at",
    "sweep_weights",
]

PROBATION_PERCENT = 0.15
PROFILE_NAMES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")


@dataclass(frozen=True)
class Profile:
    """A NAB application profile: the weights of a true positive, a false positive and a
    false negative (``config/profiles.json``)."""

    name: str
    tp: float
    fp: float
    fn: float


@dataclass(frozen=True)
class DataFile:
    """One NAB series: its path relative to ``data/``, epoch seconds, values, and the
    labelled windows as inclusive row-index pairs."""

    name: str
    ts: np.ndarray
    values: np.ndarray
    windows: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class ThresholdScore:
    """The corpus at one threshold: raw NAB score, windows detected and missed, and
    scored detections outside windows (NAB's row counts ``tp``/``fp`` are rows)."""

    threshold: float
    score: float
    windows_detected: int
    windows_missed: int
    false_positives: int


def scaled_sigmoid(x: np.ndarray | float) -> np.ndarray:
    """NAB's ``scaledSigmoid``: 2·sigmoid(-5x) - 1, and exactly -1 for x > 3."""
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(over="ignore"):
        value = 2.0 / (1.0 + np.exp(5.0 * x)) - 1.0
    return np.where(x > 3.0, -1.0, value)


def probation_length(rows: int, percent: float = PROBATION_PERCENT) -> float:
    """Rows not scored at the start of a file (NAB: ``min(floor(p·N), p·5000)``)."""
    return min(math.floor(percent * rows), percent * 5000)


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.strip()).replace(tzinfo=UTC).timestamp()


def load_profiles(path: Path) -> dict[str, Profile]:
    """The three profiles of ``config/profiles.json``, by NAB's names."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    profiles = {}
    for name in PROFILE_NAMES:
        cost = raw[name]["CostMatrix"]
        profiles[name] = Profile(name, cost["tpWeight"], cost["fpWeight"], cost["fnWeight"])
    return profiles


def load_file(root: Path, name: str, limits: Sequence[Sequence[str]]) -> DataFile:
    """Read ``root/data/<name>`` and turn its window limits (timestamps) into indices."""
    with (root / "data" / name).open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    ts = np.array([_epoch(row["timestamp"]) for row in rows], dtype=np.float64)
    values = np.array([float(row["value"]) for row in rows], dtype=np.float64)
    position = {t: i for i, t in reversed(list(enumerate(ts.tolist())))}  # first occurrence
    windows = []
    for start, end in limits:
        left, right = position.get(_epoch(start)), position.get(_epoch(end))
        if left is None or right is None:
            msg = f"{name}: window {start} .. {end} does not start and end on a row"
            raise ValueError(msg)
        windows.append((left, right))
    return DataFile(name, ts, values, tuple(sorted(windows)))


def load_corpus(root: Path) -> list[DataFile]:
    """Every labelled file of the corpus at ``root`` (``data/``, ``labels/``), by name."""
    labels = json.loads((root / "labels" / "combined_windows.json").read_text(encoding="utf-8"))
    return [load_file(root, name, labels[name]) for name in sorted(labels)]


def sweep_weights(rows: int, windows: Sequence[tuple[int, int]], profile: Profile):
    """Per row: its NAB weight if it were a detection, its window (index into
    ``windows``, -1 outside) and whether it is scored at all (not in probation)."""
    weight = np.empty(rows, dtype=np.float64)
    window_id = np.full(rows, -1, dtype=np.int64)
    index = np.arange(rows, dtype=np.float64)
    max_tp = float(scaled_sigmoid(-1.0))
    weight[:] = -profile.fp  # before the first window
    for k, (left, right) in enumerate(windows):
        width = right - left + 1
        inside = slice(left, right + 1)
        weight[inside] = scaled_sigmoid(-(right - index[inside] + 1) / width) * profile.tp / max_tp
        window_id[inside] = k
        following = windows[k + 1][0] if k + 1 < len(windows) else rows
        after = slice(right + 1, following)
        # NAB divides by (width - 1); a one-row window would divide by zero there too.
        distance = np.abs(right - index[after]) / (width - 1)
        weight[after] = scaled_sigmoid(distance) * profile.fp
    scored = index >= probation_length(rows)
    return weight, window_id, scored


@dataclass
class _Prepared:
    scores: np.ndarray  # scored rows, all files
    weight: np.ndarray
    window: np.ndarray  # corpus-wide window id, -1 outside
    windows: int  # scored windows in the corpus


def _prepare(
    files: Sequence[DataFile], scores: Sequence[np.ndarray], profile: Profile
) -> _Prepared:
    parts_s, parts_w, parts_k = [], [], []
    offset = 0
    for data, score in zip(files, scores, strict=True):
        if len(score) != len(data.values):
            msg = f"{data.name}: {len(score)} scores for {len(data.values)} rows"
            raise ValueError(msg)
        weight, window_id, scored = sweep_weights(len(data.values), data.windows, profile)
        ids = np.where(window_id >= 0, window_id + offset, -1)
        offset += len(data.windows)
        parts_s.append(np.asarray(score, dtype=np.float64)[scored])
        parts_w.append(weight[scored])
        parts_k.append(ids[scored])
    window = np.concatenate(parts_k)
    counted = np.unique(window[window >= 0])
    # Renumber the windows that have scored rows 0..W-1 (NAB ignores the others).
    renumber = np.full(offset + 1, -1, dtype=np.int64)
    renumber[counted] = np.arange(len(counted))
    window = np.where(window >= 0, renumber[window], -1)
    return _Prepared(np.concatenate(parts_s), np.concatenate(parts_w), window, len(counted))


def _sweep(prepared: _Prepared, profile: Profile):
    """Corpus score after each prefix of the rows sorted by descending score."""
    order = np.argsort(-prepared.scores, kind="stable")
    score = prepared.scores[order]
    weight = prepared.weight[order]
    window = prepared.window[order]
    delta = np.where(window < 0, weight, 0.0)
    detected_delta = np.zeros(len(order), dtype=np.int64)
    for k in range(prepared.windows):
        rows = np.flatnonzero(window == k)
        best = np.maximum.accumulate(weight[rows])
        previous = np.concatenate(([-profile.fn], best[:-1]))
        delta[rows] = best - previous
        detected_delta[rows[0]] = 1
    totals = -profile.fn * prepared.windows + np.cumsum(delta)
    detected = np.cumsum(detected_delta)
    false_positives = np.cumsum(window < 0)
    # A threshold t detects every row with score >= t: evaluate after each run of ties.
    last_of_run = np.flatnonzero(np.append(score[1:] != score[:-1], True))
    return score, totals, detected, false_positives, last_of_run


def optimise(
    files: Sequence[DataFile], scores: Sequence[np.ndarray], profile: Profile
) -> ThresholdScore:
    """The best corpus-wide threshold for the profile, as NAB's optimiser finds it: the
    distinct score value with the highest total (ties: the higher threshold)."""
    prepared = _prepare(files, scores, profile)
    score, totals, detected, fps, runs = _sweep(prepared, profile)
    best = ThresholdScore(1.1, -profile.fn * prepared.windows, 0, prepared.windows, 0)
    if len(runs):
        i = runs[int(np.argmax(totals[runs]))]
        if totals[i] > best.score:
            windows = int(detected[i])
            best = ThresholdScore(
                float(score[i]), float(totals[i]), windows, prepared.windows - windows, int(fps[i])
            )
    return best


def score_at(
    files: Sequence[DataFile], scores: Sequence[np.ndarray], profile: Profile, threshold: float
) -> ThresholdScore:
    """The corpus score when every row with score >= threshold is a detection."""
    prepared = _prepare(files, scores, profile)
    score, totals, detected, fps, _ = _sweep(prepared, profile)
    count = int(np.sum(score >= threshold))
    if count == 0:
        return ThresholdScore(threshold, -profile.fn * prepared.windows, 0, prepared.windows, 0)
    i = count - 1
    windows = int(detected[i])
    return ThresholdScore(
        threshold, float(totals[i]), windows, prepared.windows - windows, int(fps[i])
    )


def normalised(raw: float, profile: Profile, windows: int) -> float:
    """NAB's final score: 100 · (S - S_null) / (S_perfect - S_null)."""
    perfect = windows * profile.tp
    null = -windows * profile.fn
    return 100.0 * (raw - null) / (perfect - null)
