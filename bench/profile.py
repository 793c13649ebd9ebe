"""Where the worker's time goes: py-spy samples a real `civicstream worker` process.

The worker joins an empty namespace, py-spy attaches (`py-spy record --format raw
--function`: folded stacks, one line per distinct stack with its sample count, frames
aggregated by function; `--gil`: only the thread holding the GIL, so threads waiting in
select — the event loop, the fetcher thread, the metrics server — are not counted), the
readings are produced, and sampling stops when the worker has committed them all. The top
functions by self time (samples where the function itself was running) and by cumulative
time (samples where it was anywhere on the stack) are reported.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from bench import throughput
from bench.harness import ROOT, SCRAPE_INTERVAL_S, SECURITY, Civicstream, Offsets
from schemas import Topics
from streams.admin import ensure_topics


def parse_folded(lines: Iterable[str]) -> list[tuple[list[str], int]]:
    """Folded stacks ("outer;...;inner COUNT") as (frames outermost first, samples)."""
    stacks = []
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            continue
        stack, _, count = line.rpartition(" ")
        stacks.append((stack.split(";"), int(count)))
    return stacks


_LIBRARY = re.compile(r"^.*/(?:site-packages|dist-packages|lib/python3\.\d+)/")


def short_frame(frame: str) -> str:
    """`func (/…/site-packages/pkg/mod.py:12)` → `func (pkg/mod.py:12)`; the project's
    own paths relative to its root."""
    name, sep, where = frame.partition(" (")
    if not sep:
        return frame
    path = where.removesuffix(")")
    shortened = _LIBRARY.sub("", path)
    if shortened == path:
        shortened = path.removeprefix(str(ROOT) + "/")
    return f"{name} ({shortened})"


SCAFFOLD = (
    "asyncio/",
    "<frozen runpy>",
    "civicstream/__main__.py",
    "civicstream/cli.py",
    "civicstream/commands.py",
    "mode/worker.py",
    "mode/services.py",
    "threading.py",
)
"""Frames every sample passes through (the event loop, the CLI, Faust's service runner):
left out of the cumulative list, where they would only say "100 %"."""


def is_scaffold(frame: str) -> bool:
    return any(marker in frame for marker in SCAFFOLD)


def top_functions(stacks: Sequence[tuple[list[str], int]], count: int = 15) -> dict[str, Any]:
    """The `count` functions with the most self and the most cumulative samples (the
    cumulative list without the SCAFFOLD frames)."""
    total = sum(samples for _, samples in stacks)
    own: Counter[str] = Counter()
    anywhere: Counter[str] = Counter()
    for frames, samples in stacks:
        if not frames:
            continue
        own[frames[-1]] += samples
        for frame in set(frames):  # a recursive function counts once per sample
            if not is_scaffold(frame):
                anywhere[frame] += samples

    def rows(counter: Counter[str]) -> list[dict[str, Any]]:
        return [
            {
                "function": short_frame(frame),
                "samples": samples,
                "percent": round(100 * samples / total, 1) if total else 0.0,
            }
            for frame, samples in counter.most_common(count)
        ]

    return {"samples": total, "self": rows(own), "cumulative": rows(anywhere)}


def render(top: dict[str, Any]) -> str:
    """The profile as text: two ranked lists."""
    lines = [f"py-spy samples: {top['samples']:,} (worker process, GIL held)", ""]
    titles = (
        ("self", "by self time"),
        ("cumulative", "by cumulative time (event loop and CLI frames left out)"),
    )
    for kind, title in titles:
        lines.append(f"top {len(top[kind])} {title}:")
        for rank, row in enumerate(top[kind], 1):
            lines.append(
                f"{rank:3d}. {row['percent']:5.1f}%  {row['samples']:7,}  {row['function']}"
            )
        lines.append("")
    return "\n".join(lines)


def py_spy() -> str | None:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return found if Path(found).exists() else None


def run(
    bootstrap: str,
    workdir: Path,
    records: Sequence[Any],
    partitions: int,
    *,
    rate: int = 200,
    metrics: bool = True,
    scrape_interval: float = SCRAPE_INTERVAL_S,
) -> dict[str, Any]:
    """Profile one worker over `records`; folded stacks and the top lists in `workdir`."""
    binary = py_spy()
    if binary is None:
        return {"skipped": "py-spy is not installed (pip install -e '.[bench]')"}
    topics = Topics(f"bench-profile-{int(time.time())}.")
    ensure_topics(bootstrap, topics.all(), partitions, security=SECURITY)
    pipeline = Civicstream(
        bootstrap, topics, workdir, partitions, metrics=metrics, scrape_interval=scrape_interval
    )
    offsets = Offsets(bootstrap)
    folded = workdir / "profile.folded"
    pipeline.start(sink=False)
    spy = None
    try:
        offsets.wait_for_group(topics.worker_group, 1)
        worker = pipeline.processes["worker"].process
        spy = subprocess.Popen(
            [
                *(binary, "record", "--pid", str(worker.pid), "--format", "raw", "--function"),
                "--gil",
                *("--rate", str(rate), "--output", str(folded)),
            ],
            stdout=(workdir / "py-spy.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        time.sleep(1)  # attached
        began = time.perf_counter()
        total = throughput.load(bootstrap, topics.raw_air_quality, records)["records"]
        while pipeline.progress(offsets)["processed"] < total:
            pipeline.watch()
            if time.perf_counter() - began > 600:
                raise TimeoutError("the profiled worker did not finish in 600 s")
            time.sleep(0.25)
        seconds = time.perf_counter() - began
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
            try:
                spy.wait(timeout=60)
            except subprocess.TimeoutExpired:
                spy.kill()
        pipeline.stop()
        offsets.close()
    if not folded.exists():
        log = (workdir / "py-spy.log").read_text(errors="replace")[-2000:]
        return {"skipped": f"py-spy wrote no profile: {log}"}
    top = top_functions(parse_folded(folded.read_text().splitlines()))
    return {"records": total, "seconds": round(seconds, 1), "rate_hz": rate, **top}
