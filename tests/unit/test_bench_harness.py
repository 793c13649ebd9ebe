"""Specification of the benchmark's pure parts: percentiles, the event-to-store latency
bookkeeping, the profile's ranking, the peers' job, and the report and plot numbers that
`python -m bench` writes (bench/report.py, latency.py, profile.py, peers/job.py)."""

from __future__ import annotations

from typing import Any

import pytest

from bench import report, scaling
from bench.latency import HOUR_MS, Sent, closing_time, latencies
from bench.peers import job
from bench.profile import parse_folded, render, short_frame, top_functions

# ---------------------------------------------------------------- percentiles


def test_a_percentile_is_the_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]  # 1 … 100
    assert report.percentile(values, 50) == 50
    assert report.percentile(values, 95) == 95
    assert report.percentile(values, 99) == 99
    assert report.percentile(values, 100) == 100
    assert report.percentile([3.0, 7.0], 50) == 3.0  # at least half the values are ≤ 3
    assert report.percentile([3.0, 7.0], 51) == 7.0


def test_one_value_is_every_percentile() -> None:
    assert report.percentiles([0.25]) == {
        "p50": 0.25,
        "p95": 0.25,
        "p99": 0.25,
        "max": 0.25,
        "count": 1,
    }


def test_percentiles_sort_their_input_and_say_none_when_there_is_nothing() -> None:
    summary = report.percentiles([5.0, 1.0, 4.0, 2.0, 3.0])
    assert (summary["p50"], summary["p99"], summary["max"]) == (3.0, 5.0, 5.0)
    assert report.percentiles([]) == {
        "p50": None,
        "p95": None,
        "p99": None,
        "max": None,
        "count": 0,
    }


@pytest.mark.parametrize("p", [0, -1, 101])
def test_a_percentile_outside_0_to_100_is_refused(p: float) -> None:
    with pytest.raises(ValueError, match="not in"):
        report.percentile([1.0], p)


def test_a_ratio_needs_both_numbers() -> None:
    assert report.ratio(3_000, 20_000) == pytest.approx(0.15)
    assert report.ratio(None, 20_000) is None
    assert report.ratio(3_000, 0) is None


# ---------------------------------------------------------------- latency bookkeeping

LATENESS = 600_000
T0 = 1_767_225_600_000  # an hour start


def sent_hourly(rounds: int, stations: tuple[str, ...] = ("a",), every_s: float = 1.0) -> Sent:
    """Each station reports pm25 at T0 + k hours, at wall time k * every_s."""
    sent = Sent()
    for k in range(rounds):
        for station in stations:
            sent.add(station, "pm25", T0 + k * HOUR_MS, k * every_s)
    return sent


def test_an_hour_closes_with_the_first_reading_past_its_end_and_the_lateness() -> None:
    sent = sent_hourly(4)
    # hour 0 is final at 01:10: the reading at 02:00 (sent at t=2) makes it so
    assert closing_time(sent, "a", T0, LATENESS) == 2.0
    assert closing_time(sent, "a", T0 + HOUR_MS, LATENESS) == 3.0
    assert closing_time(sent, "a", T0 + 2 * HOUR_MS, LATENESS) is None  # not yet sent
    assert closing_time(sent, "nobody", T0, LATENESS) is None


def test_a_reading_exactly_at_the_closing_time_closes_the_hour() -> None:
    sent = Sent()
    sent.add("a", "pm25", T0, 0.0)
    sent.add("a", "pm25", T0 + HOUR_MS + LATENESS, 5.0)
    assert closing_time(sent, "a", T0, LATENESS) == 5.0


def test_latency_counts_from_the_closing_reading_and_from_the_rows_own() -> None:
    sent = sent_hourly(4)
    stored = [("a", "pm25", T0, 2.25)]  # seen 0.25 s after the 02:00 reading left
    measured = latencies(sent, stored, [("steady", 0.0, 10.0)], LATENESS)
    assert measured["steady"]["closing"] == [pytest.approx(0.25)]
    assert measured["steady"]["own"] == [pytest.approx(2.25)]


def test_a_row_belongs_to_the_phase_its_closing_reading_was_sent_in() -> None:
    sent = sent_hourly(6)  # closing readings of hours 0..3 leave at t = 2, 3, 4, 5
    stored = [("a", "pm25", T0 + h * HOUR_MS, h + 2.5) for h in range(4)]
    phases = [("warm-up", 0.0, 3.0), ("25%", 3.0, 4.0), ("50%", 4.0, 9.0)]
    measured = latencies(sent, stored, phases, LATENESS)
    assert len(measured["warm-up"]["closing"]) == 1  # hour 0 (closed at t=2)
    assert len(measured["25%"]["closing"]) == 1  # hour 1 (t=3)
    assert len(measured["50%"]["closing"]) == 2  # hours 2 and 3 (t=4, 5)


def test_a_row_whose_closing_reading_is_unknown_is_not_counted() -> None:
    sent = sent_hourly(2)
    stored = [("a", "pm25", T0 + HOUR_MS, 9.0)]  # nothing sent past 02:10
    measured = latencies(sent, stored, [("all", 0.0, 99.0)], LATENESS)
    assert measured == {"all": {"closing": [], "own": [], "worker": [], "sink": []}}


def test_latency_splits_at_the_enriched_record_the_worker_sent() -> None:
    sent = sent_hourly(4)
    stored = [("a", "pm25", T0, 2.5)]
    produced = {("a", "pm25", T0): 2.125}  # the worker sent the enriched reading then
    measured = latencies(sent, stored, [("all", 0.0, 9.0)], LATENESS, produced)["all"]
    assert measured["worker"] == [pytest.approx(0.125)]
    assert measured["sink"] == [pytest.approx(0.375)]
    assert measured["closing"] == [pytest.approx(0.5)]


def test_readings_within_an_hour_share_its_closing_reading() -> None:
    sent = Sent()
    sent.add("a", "pm25", T0 + 60_000, 0.0)
    sent.add("a", "o3", T0 + 59 * 60_000, 1.0)
    sent.add("a", "pm25", T0 + 2 * HOUR_MS, 7.0)
    stored = [("a", "pm25", T0 + 60_000, 7.5), ("a", "o3", T0 + 59 * 60_000, 7.5)]
    measured = latencies(sent, stored, [("all", 0.0, 99.0)], LATENESS)
    assert measured["all"]["closing"] == [pytest.approx(0.5), pytest.approx(0.5)]
    assert measured["all"]["own"] == [pytest.approx(7.5), pytest.approx(6.5)]


# ---------------------------------------------------------------- profile


MAIN = "<module> (civicstream/__main__.py:1);run_forever (asyncio/base_events.py:593)"
FOLDED = "\n".join(
    [
        f"{MAIN};process (streams/air_quality.py:189);encode (schemas/codec.py:106) 30",
        f"{MAIN};process (streams/air_quality.py:189) 10",
        f"{MAIN};select (selectors.py:451) 50",
        "walk (x.py:1);walk (x.py:1);walk (x.py:1) 10",
    ]
)


def test_folded_stacks_are_read_outermost_first() -> None:
    stacks = parse_folded(FOLDED.splitlines())
    assert stacks[0][0][-1] == "encode (schemas/codec.py:106)"
    assert [count for _, count in stacks] == [30, 10, 50, 10]


def test_self_time_is_the_innermost_frame_and_cumulative_counts_a_sample_once() -> None:
    top = top_functions(parse_folded(FOLDED.splitlines()), count=3)
    assert top["samples"] == 100
    assert [(r["function"], r["samples"]) for r in top["self"]] == [
        ("select (selectors.py:451)", 50),
        ("encode (schemas/codec.py:106)", 30),
        ("process (streams/air_quality.py:189)", 10),
    ]
    everything = top_functions(parse_folded(FOLDED.splitlines()), count=10)
    cumulative = {r["function"]: r["percent"] for r in everything["cumulative"]}
    assert cumulative["process (streams/air_quality.py:189)"] == 40.0
    assert cumulative["walk (x.py:1)"] == 10.0  # recursion: once per sample, not three times


def test_the_cumulative_list_leaves_out_the_event_loop_and_the_cli() -> None:
    top = top_functions(parse_folded(FOLDED.splitlines()), count=10)
    names = [r["function"] for r in top["cumulative"]]
    assert not any("asyncio" in n or "civicstream/__main__" in n for n in names)


def test_library_paths_are_shortened_to_the_package() -> None:
    frame = "send (/work/x/.venv/lib/python3.11/site-packages/aiokafka/producer.py:300)"
    assert short_frame(frame) == "send (aiokafka/producer.py:300)"
    assert short_frame("select (/usr/lib/python3.11/selectors.py:451)") == (
        "select (selectors.py:451)"
    )
    assert short_frame("<module> (<string>:1)") == "<module> (<string>:1)"


def test_the_profile_text_ranks_both_lists() -> None:
    text = render(top_functions(parse_folded(FOLDED.splitlines()), count=2))
    assert "samples: 100" in text
    assert "  1.  50.0%       50  select (selectors.py:451)" in text


# ---------------------------------------------------------------- the peers' job


def test_a_peer_reads_a_raw_reading_in_epa_units_and_event_time() -> None:
    raw = (
        b'{"station_id":"s1","pollutant":"o3","value":60.0,"unit":"ppb",'
        b'"ts":"2013-03-01T00:00:00+08:00"}'
    )
    assert job.parse(raw) == job.Reading("s1", "o3", 0.06, 1_362_067_200_000)


@pytest.mark.parametrize(
    "fields",
    [
        {"station_id": "s", "pollutant": "pm25", "value": None, "unit": "ug/m3", "ts": 0},
        {"station_id": "s", "pollutant": "pm25", "value": 1, "unit": "furlongs", "ts": 0},
        {"station_id": "s", "pollutant": "pm25", "value": 1, "unit": "ug/m3", "ts": "soon"},
        {"station_id": "s", "value": 1, "unit": "ug/m3", "ts": 0},
    ],
)
def test_a_reading_a_peer_cannot_use_is_none(fields: dict[str, Any]) -> None:
    assert job.parse(fields) is None


def test_sums_are_new_values_and_the_hour_gets_its_aqi() -> None:
    start: dict[str, list[float]] = {}
    sums = job.add(job.add(start, "o3", 0.05), "o3", 0.07)
    assert start == {}
    assert sums == {"o3": [pytest.approx(0.12), 2]}
    record = job.hourly_record("s1", T0, sums)
    assert record["hourly_means"] == {"o3": pytest.approx(0.06)}
    assert record["reading_count"] == 2
    assert record["station_id"] == "s1" and record["hour_start"] == T0
    # one hour of ozone: no 8-hour mean yet and 1-hour ozone below its table: no index
    assert record["aqi"] is None


def test_the_peer_job_publishes_an_aqi_when_the_hour_alone_gives_one() -> None:
    record = job.hourly_record("s1", T0, {"no2": [200.0, 2]})  # 100 ppb
    assert record["aqi"] is not None and record["main_pollutant"] == "no2_1h"


# ---------------------------------------------------------------- report


def results() -> dict[str, Any]:
    return {
        "when": "2026-11-27T08:00:00+00:00",
        "command": "python -m bench",
        "quick": False,
        "seconds": 600,
        "machine": {
            "cores": 2,
            "cpu_model": "Test CPU",
            "memory_gib": 24.0,
            "python": "3.11.7",
            "kafka": "4.1.2",
            "load_average_before": [1.0, 1.0, 1.0],
            "load_average_after": [2.0, 1.5, 1.0],
        },
        "throughput": {
            "workload": {"name": "beijing", "description": "Beijing", "records": 50_000},
            "partitions": 4,
            "baseline": {
                "records": 50_000,
                "startup_s": 0.3,
                "steady_s": 2.5,
                "per_s": 20_000,
                "cpu_us_per_reading": 40,
            },
            "civicstream": [
                {
                    "metrics": True,
                    "per_s": 3_000,
                    "startup_s": 4.0,
                    "steady_s": 16.7,
                    "processes": {
                        "worker": {"peak_rss_mib": 90.0},
                        "sink": {"peak_rss_mib": 48.0},
                    },
                    "cores_busy_steady": {"worker": 0.95, "sink": 0.3, "machine": 1.9},
                    "cpu_us_per_reading": 400,
                }
            ],
            "peers": {
                "faust": {
                    "per_s": 1_000,
                    "startup_s": 3.0,
                    "steady_s": 50.0,
                    "process": {"peak_rss_mib": 100.0},
                },
                "quix": {"skipped": "quixstreams is not installed"},
            },
            "in_process": {"per_s": 4_000, "seconds": 12.5, "us_per_record": 250.0},
        },
        "latency": {
            "stations": 100,
            "max_rate_per_s": 3_000,
            "poll_s": 0.02,
            "phases": [
                {
                    "name": "25%",
                    "offered_per_s": 750,
                    "rows": 20_000,
                    "latency_s": {"p50": 0.2, "p95": 0.4, "p99": 0.6, "max": 0.9},
                    "own_latency_s": {"p50": 1.0, "p99": 1.5},
                    "worker_stage_s": {"p50": 0.1, "p99": 0.3},
                    "sink_stage_s": {"p50": 0.1, "p99": 0.35},
                }
            ],
        },
        "scaling": {
            "stations": [
                {
                    "stations": 100,
                    "readings": 60_000,
                    "readings_per_station_pollutant": 100,
                    "per_s": 2_500,
                    "rows_stored": {"aqi_hourly": 9_800},
                    "worker_final_rss_mib": 100.0,
                    "rss_growth_kib_per_station": None,
                    "bytes_per_station_pollutant": 1_400,
                    "snapshot_bytes_max": 8_500,
                }
            ],
        },
        "workers": {
            "runs": [
                {
                    "workers": w,
                    "partitions": 2,
                    "per_s": rate,
                    "records_per_partition": {"0": 30_000, "1": 30_000},
                    "machine_cores_busy": 2.0,
                    "worker_cores_busy": {f"worker-{i}": 0.9 for i in range(w)},
                    "broker_cores_busy": 0.2,
                    "bench_cores_busy": 0.1,
                    "other_cores_busy": 0.0 if w == 2 else 0.8,
                }
                for w, rate in ((1, 2_000), (2, 2_400))
            ]
        },
    }


def test_the_run_ends_with_civicstream_over_the_baseline_to_two_decimals() -> None:
    assert report.headline(results()) == "pipeline/baseline = 0.15"
    assert report.render(results()).rstrip().splitlines()[-1] == "pipeline/baseline = 0.15"


def test_the_headline_takes_the_median_of_several_civicstream_runs() -> None:
    r = results()
    first = r["throughput"]["civicstream"][0]
    r["throughput"]["civicstream"] = [dict(first, per_s=v) for v in (1_000, 4_000, 3_000)]
    assert report.headline(r) == "pipeline/baseline = 0.15"


def test_without_a_throughput_run_the_headline_says_so() -> None:
    assert report.headline({}) == "pipeline/baseline = n/a"


def test_the_report_gives_every_contender_with_its_ratio_to_the_baseline() -> None:
    text = report.render(results())
    assert "| **civicstream** | worker + sink → SQLite" in text
    assert "| 3,000 | 0.15 | 400 |" in text
    assert "By CPU per reading, civicstream / baseline = 0.10." in text
    assert "| Faust, naive |" in text and "| 1,000 | 0.05 |" in text
    assert "| Quix Streams | skipped: quixstreams is not installed |" in text
    assert "civicstream / Faust, naive = 3.00" in text
    assert "4.1.2" in text and "Test CPU" in text and "2.00 / 1.50 / 1.00 after" in text


def test_the_report_has_latency_scaling_and_workers_tables() -> None:
    text = report.render(results())
    assert (
        "| 25% of max | 750 | 20,000 | 0.200 | 0.400 | 0.600 | 0.900 | 0.100 / 0.300 "
        "| 0.100 / 0.350 | 1.00 / 1.50 |"
    ) in text
    assert "| 100 | 60,000 | 100 | 2,500 | 9,800 | 100 | – | 1,400 | 8,500 | – |" in text
    assert (
        "| 2 | 2,400 | 1.20 | 30,000 / 30,000 | 2.00 of 2 | 0.90 + 0.90 | 0.20 | 0.10 | 0.00 |"
    ) in text
    assert "two workers can be at most 2.00× one worker" in text


def test_a_station_count_that_ran_out_of_time_says_how_far_it_got() -> None:
    r = results()
    run = r["scaling"]["stations"][0]
    run.update(
        complete=False,
        processed=20_000,
        steady_s=240.0,
        worker_scrape_max_kib=90_000,
        worker_scrape_max_s=6.5,
    )
    text = report.render(r)
    assert "| 2,500 (incomplete: 20,000 of 60,000 in 240.0 s) |" in text
    assert "| 90,000 KiB, 6.5 s |" in text


def test_a_markdown_table_aligns_numbers_right_and_escapes_pipes() -> None:
    table = report.markdown_table(["a", "n"], [["x|y", 1], [None, 2]], [False, True])
    assert table.splitlines() == ["| a | n |", "|---|---:|", "| x\\|y | 1 |", "| – | 2 |"]


def test_the_plot_shows_the_baseline_first_and_skipped_peers_not_at_all() -> None:
    data = report.plot_data(results())
    assert data["throughput"] == {
        "labels": ["baseline", "civicstream", "Faust, naive", "step alone"],
        "per_s": [20_000, 3_000, 1_000, 4_000],
    }
    assert data["latency"]["percentiles"]["p99"] == [0.6]
    assert data["stations"]["bytes_per_station_pollutant"] == [1_400]
    assert data["workers"] == {"workers": [1, 2], "per_s": [2_000, 2_400]}


def test_rss_growth_is_per_extra_station_over_the_smallest_run() -> None:
    runs = scaling.with_rss_growth(
        [
            {"stations": 100, "worker_final_rss_mib": 100.0},
            {"stations": 10_100, "worker_final_rss_mib": 110.0},
        ]
    )
    assert runs[0]["rss_growth_kib_per_station"] is None
    assert runs[1]["rss_growth_kib_per_station"] == pytest.approx(1.02, abs=0.01)


def test_the_records_a_worker_applied_are_read_from_its_metrics(tmp_path: Any) -> None:
    """The steady part of a throughput run leaves out records applied before the first
    commit; the workers' own counters say how many (redeliveries and skips are not work)."""
    from prometheus_client import CollectorRegistry, Counter, start_http_server

    from bench.harness import Civicstream, free_port
    from schemas import Topics

    registry = CollectorRegistry()
    records = Counter("civicstream_worker_records", "", ["outcome"], registry=registry)
    records.labels("accepted").inc(1200)
    records.labels("dead_letter").inc(3)
    records.labels("redelivered").inc(50)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        pipeline = Civicstream("127.0.0.1:1", Topics(), tmp_path, 1, metrics=True)
        pipeline._ports[port] = "worker-1"
        assert pipeline.applied() == 1203
        assert Civicstream("127.0.0.1:1", Topics(), tmp_path, 1, metrics=False).applied() is None
    finally:
        server.shutdown()
        thread.join(5)
