"""Pure helpers of the benchmark: percentiles, ratios, the markdown report, plot data.

Nothing here touches Kafka, a process or the clock: a results dict (what `python -m
bench` writes as JSON) goes in, text or numbers come out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "PEER_LABELS",
    "headline",
    "markdown_table",
    "percentile",
    "percentiles",
    "plot_data",
    "ratio",
    "render",
]

PEER_LABELS = {"faust": "Faust, naive", "faust-floor": "Faust floor", "quix": "Quix Streams"}
_PEER_DOES = {
    "faust-floor": "no job: batches of records passed through unchanged, as the baseline",
    "faust": "per-event agent, Faust windowed table (event time), AQI on window close",
    "quix": "tumbling window + reduce per station (event time), AQI on `.final()`",
}


def percentile(ordered: Sequence[float], p: float) -> float:
    """The nearest-rank percentile of sorted values: the smallest value with at least p %
    of the values at or below it (p in (0, 100])."""
    if not ordered:
        raise ValueError("no values")
    if not 0 < p <= 100:
        raise ValueError(f"percentile {p} is not in (0, 100]")
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def percentiles(values: Iterable[float], ps: Sequence[float] = (50, 95, 99)) -> dict[str, Any]:
    """{"p50": …, "p95": …, "p99": …, "max": …, "count": n}; None for each when empty."""
    ordered = sorted(values)
    out: dict[str, Any] = {f"p{p:g}": (percentile(ordered, p) if ordered else None) for p in ps}
    out["max"] = ordered[-1] if ordered else None
    out["count"] = len(ordered)
    return out


def ratio(value: float | None, base: float | None) -> float | None:
    """value / base, None when either is missing or base is 0."""
    if value is None or not base:
        return None
    return value / base


def markdown_table(
    headers: Sequence[str], rows: Iterable[Sequence[Any]], right: Sequence[bool] | None = None
) -> str:
    """A GitHub markdown table; `right` marks right-aligned (numeric) columns."""
    align = right or [False] * len(headers)
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---:" if r else "---" for r in align) + "|",
    ]
    for row in rows:
        cells = ["–" if cell is None else str(cell).replace("|", "\\|") for cell in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _n(value: float | None, digits: int = 0) -> str | None:
    if value is None:
        return None
    return f"{value:,.{digits}f}"


def _pair(summary: Mapping[str, Any] | None, digits: int = 3) -> str | None:
    """ "p50 / p99" of a percentiles summary."""
    if not summary or summary.get("p50") is None:
        return None
    return f"{_n(summary['p50'], digits)} / {_n(summary['p99'], digits)}"


def _rate(run: Mapping[str, Any]) -> str | None:
    """Readings/s, marked when the run ran out of its time budget."""
    rate = _n(run["per_s"])
    if run.get("complete", True):
        return rate
    return (
        f"{rate} (incomplete: {run['processed']:,} of {run['readings']:,} in "
        f"{run.get('steady_s', '?')} s)"
    )


def _scrape(run: Mapping[str, Any]) -> str | None:
    if run.get("worker_scrape_max_kib") is None:
        return None
    return f"{run['worker_scrape_max_kib']:,} KiB, {run['worker_scrape_max_s']} s"


def civicstream_rate(results: Mapping[str, Any]) -> float | None:
    """civicstream's end-to-end readings/s: the median over its runs."""
    runs = results.get("throughput", {}).get("civicstream") or []
    rates = sorted(run["per_s"] for run in runs)
    return rates[len(rates) // 2] if rates else None


def headline(results: Mapping[str, Any]) -> str:
    """The run's closing line: civicstream readings/s over the baseline's, same run."""
    base = results.get("throughput", {}).get("baseline", {}).get("per_s")
    value = ratio(civicstream_rate(results), base)
    return f"pipeline/baseline = {'n/a' if value is None else f'{value:.2f}'}"


def _throughput_rows(t: Mapping[str, Any]) -> list[list[Any]]:
    base = t["baseline"]["per_s"]
    b = t["baseline"]
    rows: list[list[Any]] = [
        [
            "baseline: aiokafka",
            "consume → produce one message per input (acks=all), commit per batch",
            _n(base),
            "1.00",
            _n(b.get("cpu_us_per_reading")),
            b["startup_s"],
            b["steady_s"],
            None,
        ]
    ]
    for run in t.get("civicstream", []):
        processes = run.get("processes", {})
        rss = " / ".join(_n(p["peak_rss_mib"]) or "?" for p in processes.values())
        rows.append(
            [
                "**civicstream**" + ("" if run.get("metrics", True) else " (metrics off)"),
                "worker + sink → SQLite; done when every output is stored",
                _n(run["per_s"]),
                _n(ratio(run["per_s"], base), 2),
                _n(run.get("cpu_us_per_reading")),
                run["startup_s"],
                run["steady_s"],
                f"{rss} (worker / sink)",
            ]
        )
    for name, run in t.get("peers", {}).items():
        label = PEER_LABELS.get(name, name)
        if "skipped" in run:
            rows.append([label, f"skipped: {run['skipped']}", *[None] * 6])
            continue
        rows.append(
            [
                label,
                _PEER_DOES.get(name, ""),
                _n(run["per_s"]),
                _n(ratio(run["per_s"], base), 2),
                _n(run.get("cpu_us_per_reading")),
                run["startup_s"],
                run["steady_s"],
                _n(run["process"]["peak_rss_mib"]),
            ]
        )
    pure = t.get("in_process")
    if pure:
        rows.append(
            [
                "air-quality step alone",
                "in process, no Kafka",
                _n(pure["per_s"]),
                _n(ratio(pure["per_s"], base), 2),
                _n(pure["us_per_record"]),
                None,
                pure["seconds"],
                None,
            ]
        )
    return rows


def _machine(results: Mapping[str, Any]) -> str:
    m = results["machine"]
    before = " / ".join(f"{v:.2f}" for v in m.get("load_average_before", []))
    after = " / ".join(f"{v:.2f}" for v in m.get("load_average_after", []))
    return (
        f"{m['cores']} cores ({m['cpu_model']}), {m['memory_gib']} GiB RAM, Python "
        f"{m['python']}, Apache Kafka {m.get('kafka', '?')}; load average (1/5/15 min) "
        f"{before} before, {after} after"
    )


def render(results: Mapping[str, Any]) -> str:
    """The whole report as markdown, ending with the headline line."""
    out = [f"# civicstream benchmark, {results['when']}", ""]
    out += [f"Machine: {_machine(results)}.", ""]
    scrape = results.get("scrape_interval_s")
    metrics = f"metrics on, /metrics scraped every {scrape:g} s" if scrape else "metrics off"
    out += [
        f"Run: `{results.get('command', 'python -m bench')}`"
        f"{' (quick)' if results.get('quick') else ''}, {results.get('seconds', '?')} s; "
        f"civicstream with {metrics}.",
        "",
    ]
    t = results.get("throughput")
    if t:
        w = t["workload"]
        out += [
            f"## Throughput: {w['description']}, {w['records']:,} readings, "
            f"{t['partitions']} partitions",
            "",
            "Each contender reads the same filled raw topic from the start, on the same "
            "broker; readings/s over its steady part, start-up apart (the peers and the "
            "baseline time their first and last record themselves; civicstream is timed from "
            "the first commit seen, the records before it left out, to the last output "
            "stored). CPU µs/reading: the contender's own processes over the same "
            "part (civicstream: worker + sink; the baseline: its loop; the broker apart), "
            "which other load on the machine disturbs far less than the rates.",
            "",
            markdown_table(
                [
                    "contender",
                    "what it does",
                    "readings/s",
                    "× baseline",
                    "CPU µs/reading",
                    "start-up s",
                    "steady s",
                    "peak RSS MiB",
                ],
                _throughput_rows(t),
                [False, False, True, True, True, True, True, True],
            ),
            "",
        ]
        if len(t.get("baseline_runs_per_s", [])) > 1:
            rates = ", ".join(f"{rate:,}" for rate in t["baseline_runs_per_s"])
            civic = ", ".join(f"{run['per_s']:,}" for run in t.get("civicstream", []))
            out += [
                f"Runs: baseline {rates}/s; civicstream {civic}/s. The baseline row is "
                "its median run, and `pipeline/baseline` is civicstream's median run over it "
                "(the peers run once).",
                "",
            ]
        for run in t.get("civicstream", []):
            cores = run.get("cores_busy_steady")
            if cores:
                used = ", ".join(f"{name} {value:.2f}" for name, value in cores.items())
                of = results["machine"]["cores"]
                out.append(f"civicstream's steady part, cores busy: {used} (of {of}).")
            per_reading = run.get("worker_cpu_us_per_reading")
            pure = t.get("in_process")
            if per_reading and pure:
                out.append(
                    f"The worker's CPU per reading: {per_reading:,} µs, of which the "
                    f"air-quality step alone is {pure['us_per_record']:,.0f} µs; the rest is "
                    "Faust, the Kafka clients, the changelog and metrics around it."
                )
        out.append("")
        first = (t.get("civicstream") or [{}])[0]
        if first.get("cpu_us_per_reading") and t["baseline"].get("cpu_us_per_reading"):
            by_cpu = t["baseline"]["cpu_us_per_reading"] / first["cpu_us_per_reading"]
            out.append(f"By CPU per reading, civicstream / baseline = {by_cpu:.2f}.")
        ours = civicstream_rate(results)
        for name, run in t.get("peers", {}).items():
            if "per_s" in run and ours:
                out.append(
                    f"civicstream / {PEER_LABELS.get(name, name)} = {ours / run['per_s']:.2f}"
                )
        counts = [
            f"{PEER_LABELS.get(name, name)} {run['hourly_records_so_far']:,}"
            for name, run in t.get("peers", {}).items()
            if "hourly_records_so_far" in run
        ]
        rows = (t.get("civicstream") or [{}])[0].get("store_rows", {}).get("aqi_hourly")
        if counts and rows is not None:
            out += [
                "",
                f"Hourly AQI records when the last reading was processed: civicstream "
                f"{rows:,} (stored), {', '.join(counts)}. Faust expires windows by the wall "
                "clock, so on replayed data every window is stale at its first table clean-up "
                "(every 1 s here), part-filled or not, and its clean-up calls "
                "`on_window_close` only for windows newer than the newest it closed before: "
                "the others are dropped without a record.",
            ]
        out += [
            "",
            "The peers do less per reading than civicstream (bench/peers/job.py): no "
            "validation beyond units, no dead letters, no late or duplicate handling, no "
            "NowCast/8-hour history, no enriched readings, no daily AQI, no store.",
            "",
        ]
    lat = results.get("latency")
    if lat:
        out += [
            f"## Event-to-store latency (civicstream, {lat['stations']} simulated stations, "
            f"hourly readings, max sustained rate {lat['max_rate_per_s']:,}/s from the "
            "throughput run)",
            "",
            "Latency of each row of the readings dataset: seen durable in the SQLite store "
            "(polled every "
            f"{lat['poll_s'] * 1000:.0f} ms) minus the send time of the reading that made "
            "its hour final (the station's first reading at or after hour end + allowed "
            "lateness). Hourly AQI rows are written in the same transaction. Worker stage: "
            "until the worker sent the row's enriched record (its Kafka timestamp); sink "
            "stage: from then until the row is in the store. The last column counts from "
            "the row's own reading, which includes waiting for its hour to close in event "
            "time.",
            "",
            markdown_table(
                [
                    "offered",
                    "readings/s",
                    "rows",
                    "p50 s",
                    "p95 s",
                    "p99 s",
                    "max s",
                    "worker stage p50 / p99 s",
                    "sink stage p50 / p99 s",
                    "own p50 / p99 s",
                ],
                (
                    [
                        f"{p['name']} of max",
                        _n(p["offered_per_s"]),
                        _n(p["rows"]),
                        _n(p["latency_s"]["p50"], 3),
                        _n(p["latency_s"]["p95"], 3),
                        _n(p["latency_s"]["p99"], 3),
                        _n(p["latency_s"]["max"], 3),
                        _pair(p.get("worker_stage_s")),
                        _pair(p.get("sink_stage_s")),
                        _pair(p["own_latency_s"], 2),
                    ]
                    for p in lat["phases"]
                ),
                [False] + [True] * 9,
            ),
            "",
        ]
    sc = results.get("scaling")
    if sc and sc.get("stations"):
        out += [
            "## Scaling: stations (worker + sink, simulated stations, hourly rounds)",
            "",
            markdown_table(
                [
                    "stations",
                    "readings",
                    "per station × pollutant",
                    "readings/s",
                    "hourly rows",
                    "worker RSS MiB",
                    "RSS growth KiB/station",
                    "state B/station×pollutant",
                    "largest snapshot B",
                    "worker /metrics KiB, slowest scrape s",
                ],
                (
                    [
                        _n(r["stations"]),
                        _n(r["readings"]),
                        r["readings_per_station_pollutant"],
                        _rate(r),
                        _n(r.get("rows_stored", {}).get("aqi_hourly")),
                        _n(r["worker_final_rss_mib"]),
                        _n(r.get("rss_growth_kib_per_station"), 2),
                        _n(r["bytes_per_station_pollutant"]),
                        _n(r["snapshot_bytes_max"]),
                        _scrape(r),
                    ]
                    for r in sc["stations"]
                ),
                [True] * 10,
            ),
            "",
            "Readings/s: raw → store, every output stored. An hour is published once a "
            "station's readings are 2 rounds past it, so runs of one or two rounds publish "
            "no hour (hourly rows 0): they measure intake and state, not the closing of "
            "hours. State: the newest snapshot per station in the worker's changelog "
            "(streams/station.py `snapshot()`, JSON), divided by 6 pollutants. RSS growth: "
            "worker RSS after the run minus the smallest run's, per extra station.",
        ]
        steady = sc.get("steady_state")
        if steady:
            after = ", ".join(f"{h} h: {b:,} B" for h, b in steady["bytes_after_hours"].items())
            out += [
                "",
                f"Steady state (in process, {steady['stations']} stations, {steady['hours']} "
                f"hourly rounds): {steady['bytes_per_station_pollutant']:,} B per station × "
                f"pollutant at the end, {steady['peak_bytes_per_station_pollutant']:,} B at "
                f"most (after {after}).",
            ]
        out.append("")
    wk = results.get("workers")
    if wk and wk.get("runs"):
        one = wk["runs"][0]["per_s"]
        out += [
            f"## Scaling: worker processes ({wk['runs'][0]['partitions']} partitions, worker "
            "stage alone: raw records committed per second, no sink)",
            "",
            markdown_table(
                [
                    "workers",
                    "readings/s",
                    "× one worker",
                    "records per partition",
                    "cores busy: machine",
                    "worker(s)",
                    "broker",
                    "benchmark",
                    "other processes",
                ],
                (
                    [
                        r["workers"],
                        _n(r["per_s"]),
                        _n(ratio(r["per_s"], one), 2),
                        " / ".join(_n(v) or "" for v in r["records_per_partition"].values()),
                        f"{r['machine_cores_busy']:.2f} of {results['machine']['cores']}",
                        " + ".join(f"{v:.2f}" for v in r["worker_cores_busy"].values()),
                        _n(r.get("broker_cores_busy"), 2),
                        _n(r.get("bench_cores_busy"), 2),
                        _n(r.get("other_cores_busy"), 2),
                    ]
                    for r in wk["runs"]
                ),
                [True] * 9,
            ),
            "",
            "Cores busy: CPU time over the steady interval, from /proc. The benchmark process "
            "produces the readings and polls offsets meanwhile; other processes are everything "
            "else on the machine (other sessions share it).",
        ]
        split = wk["runs"][-1]["records_per_partition"]
        if split and max(split.values()):
            bound = sum(split.values()) / max(split.values())
            out.append(
                f"With this key split the busier partition holds {max(split.values()):,} of "
                f"{sum(split.values()):,} readings: two workers can be at most {bound:.2f}× "
                "one worker, even with a core each."
            )
        out.append("")
    prof = results.get("profile")
    if prof and "self" in prof:
        out += [
            f"## Profile: the worker under load (py-spy, {prof['samples']:,} samples at "
            f"{prof['rate_hz']} Hz over {prof['records']:,} readings)",
            "",
            markdown_table(
                ["#", "self %", "function (self time)", "cum %", "function (cumulative)"],
                (
                    [
                        i + 1,
                        prof["self"][i]["percent"] if i < len(prof["self"]) else None,
                        f"`{prof['self'][i]['function']}`" if i < len(prof["self"]) else None,
                        prof["cumulative"][i]["percent"] if i < len(prof["cumulative"]) else None,
                        f"`{prof['cumulative'][i]['function']}`"
                        if i < len(prof["cumulative"])
                        else None,
                    ]
                    for i in range(max(len(prof["self"]), len(prof["cumulative"])))
                ),
                [True, True, False, True, False],
            ),
            "",
        ]
    elif prof:
        out += ["## Profile", "", f"Skipped: {prof.get('skipped')}", ""]
    out += [headline(results), ""]
    return "\n".join(out)


def plot_data(results: Mapping[str, Any]) -> dict[str, Any]:
    """The numbers the PNG shows, panel by panel (bench/plot.py draws them)."""
    data: dict[str, Any] = {}
    t = results.get("throughput")
    if t:
        bars = [("baseline", t["baseline"]["per_s"])]
        ours = civicstream_rate(results)
        if ours is not None:
            bars.append(("civicstream", ours))
        for name, run in t.get("peers", {}).items():
            if "per_s" in run:
                bars.append((PEER_LABELS.get(name, name), run["per_s"]))
        if t.get("in_process"):
            bars.append(("step alone", t["in_process"]["per_s"]))
        data["throughput"] = {"labels": [b[0] for b in bars], "per_s": [b[1] for b in bars]}
    lat = results.get("latency")
    if lat:
        data["latency"] = {
            "rates": [f"{p['name']} ({p['offered_per_s']:,}/s)" for p in lat["phases"]],
            "percentiles": {
                key: [p["latency_s"][key] for p in lat["phases"]] for key in ("p50", "p95", "p99")
            },
        }
    sc = results.get("scaling")
    if sc and sc.get("stations"):
        data["stations"] = {
            "stations": [r["stations"] for r in sc["stations"]],
            "per_s": [r["per_s"] for r in sc["stations"]],
            "bytes_per_station_pollutant": [
                r["bytes_per_station_pollutant"] for r in sc["stations"]
            ],
        }
    wk = results.get("workers")
    if wk and wk.get("runs"):
        data["workers"] = {
            "workers": [r["workers"] for r in wk["runs"]],
            "per_s": [r["per_s"] for r in wk["runs"]],
        }
    return data
