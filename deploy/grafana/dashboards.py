"""Generate the Grafana dashboards in deploy/grafana/dashboards/ (dashboards as code).

    .venv/bin/python deploy/grafana/dashboards.py    # rewrites the JSON files

Edit this file, not the JSON: tests/unit/test_dashboards.py checks that the committed JSON
is what this script writes, and that every expression names a metric the code exports.
EPA category colours come from processors.aqi, the same table the AQI records use.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from processors.aqi import CATEGORIES, CATEGORY_COLORS  # noqa: E402

OUT = Path(__file__).resolve().parent / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
JOBS = 'job=~"civicstream-.+"'
RATE = "$__rate_interval"
# Lowest AQI of each EPA category (AQI values are integers).
CATEGORY_FLOORS = (0, 51, 101, 151, 201, 301)


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def aqi_thresholds() -> dict[str, Any]:
    steps: list[dict[str, Any]] = []
    for floor, name in zip(CATEGORY_FLOORS, CATEGORIES, strict=True):
        steps.append({"color": _hex(CATEGORY_COLORS[name]), "value": None if floor == 0 else floor})
    return {"mode": "absolute", "steps": steps}


def aqi_category_mappings() -> list[dict[str, Any]]:
    tops = (*[f - 1 for f in CATEGORY_FLOORS[1:]], 100_000)
    return [
        {
            "type": "range",
            "options": {
                "from": floor,
                "to": top,
                "result": {"text": name, "color": _hex(CATEGORY_COLORS[name])},
            },
        }
        for floor, top, name in zip(CATEGORY_FLOORS, tops, CATEGORIES, strict=True)
    ]


class Layout:
    """Places panels left to right, in rows of 24 grid units."""

    def __init__(self) -> None:
        self.x = 0
        self.y = 0
        self.row_height = 0
        self.next_id = 1

    def place(self, width: int, height: int) -> dict[str, int]:
        if self.x + width > 24:
            self.x, self.y, self.row_height = 0, self.y + self.row_height, 0
        pos = {"x": self.x, "y": self.y, "w": width, "h": height}
        self.x += width
        self.row_height = max(self.row_height, height)
        return pos

    def row(self, title: str) -> dict[str, Any]:
        if self.x:
            self.x, self.y, self.row_height = 0, self.y + self.row_height, 0
        panel = {
            "type": "row",
            "title": title,
            "id": self._id(),
            "collapsed": False,
            "panels": [],
            "gridPos": {"x": 0, "y": self.y, "w": 24, "h": 1},
        }
        self.y += 1
        return panel

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id - 1


def target(expr: str, legend: str = "", ref: str = "A", **extra: Any) -> dict[str, Any]:
    return {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "refId": ref, **extra}


def panel(
    layout: Layout,
    kind: str,
    title: str,
    targets: Sequence[dict[str, Any]],
    *,
    description: str,
    unit: str = "short",
    width: int = 8,
    height: int = 8,
    defaults: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    refs = "ABCDEFGH"
    return {
        "type": kind,
        "title": title,
        "description": description,
        "id": layout._id(),
        "datasource": DATASOURCE,
        "gridPos": layout.place(width, height),
        "targets": [{**t, "refId": refs[i]} for i, t in enumerate(targets)],
        "fieldConfig": {"defaults": {"unit": unit, **(defaults or {})}, "overrides": []},
        "options": options or {},
    }


def timeseries(layout: Layout, title: str, targets: Sequence[dict[str, Any]], **kw: Any) -> Any:
    kw.setdefault("options", {"legend": {"displayMode": "list", "placement": "bottom"}})
    return panel(layout, "timeseries", title, targets, **kw)


def stat(layout: Layout, title: str, targets: Sequence[dict[str, Any]], **kw: Any) -> Any:
    kw.setdefault("width", 4)
    kw.setdefault("height", 4)
    kw.setdefault("options", {"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "value"})
    return panel(layout, "stat", title, targets, **kw)


def dashboard(
    uid: str, title: str, description: str, panels: list[Any], variables: list[Any]
) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["civicstream"],
        "timezone": "browser",
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                },
                *variables,
            ]
        },
        "annotations": {"list": []},
        "panels": panels,
    }


# --- the pipeline ----------------------------------------------------------------------------


def pipeline() -> dict[str, Any]:
    lay = Layout()
    p: list[Any] = [lay.row("Is it up?")]
    p.append(
        stat(
            lay,
            "Processes up",
            [target(f"up{{{JOBS}}}", "{{job}} {{instance}}")],
            description="1 when Prometheus reaches the process's /metrics "
            "(CivicstreamPipelineDown).",
            width=8,
            defaults={
                "mappings": [
                    {"type": "value", "options": {"0": {"text": "DOWN", "color": "red"}}},
                    {"type": "value", "options": {"1": {"text": "UP", "color": "green"}}},
                ],
                "color": {"mode": "fixed", "fixedColor": "green"},
            },
        )
    )
    p.append(
        stat(
            lay,
            "Firing alerts",
            [target('count(ALERTS{alertstate="firing", alertname=~"Civicstream.+"}) or vector(0)')],
            description="civicstream alerts firing now (deploy/prometheus/rules).",
            defaults={
                "thresholds": {
                    "mode": "absolute",
                    "steps": [{"color": "green", "value": None}, {"color": "red", "value": 1}],
                },
            },
        )
    )
    p.append(
        stat(
            lay,
            "Dead-letter ratio (5m)",
            [target("civicstream:dead_letter_ratio:rate5m", "{{job}}")],
            description="Share of consumed records dead-lettered "
            "(CivicstreamDeadLetterRateHigh above 5%).",
            unit="percentunit",
            width=6,
            defaults={
                "thresholds": {
                    "mode": "absolute",
                    "steps": [{"color": "green", "value": None}, {"color": "red", "value": 0.05}],
                },
            },
        )
    )
    p.append(
        stat(
            lay,
            "Rebalances",
            [target("increase(civicstream_worker_rebalances_total[$__range])", "{{instance}}")],
            description="Consumer-group rebalances of the stream workers in the time range.",
            width=6,
        )
    )

    p.append(lay.row("Throughput"))
    p.append(
        timeseries(
            lay,
            "Events consumed",
            [target("civicstream:events_consumed:rate1m", "{{job}} ← {{topic}}")],
            description="Records consumed per second, per process and topic.",
            unit="reqps",
        )
    )
    p.append(
        timeseries(
            lay,
            "Events produced",
            [target("civicstream:events_produced:rate1m", "{{job}} → {{topic}}")],
            description="Records produced per second, per process and topic.",
            unit="reqps",
        )
    )
    p.append(
        timeseries(
            lay,
            "Worker records by outcome",
            [
                target(
                    f"sum by (outcome) (rate(civicstream_worker_records_total[{RATE}]))",
                    "{{outcome}}",
                )
            ],
            description="Raw records: accepted, dead-lettered, re-delivered (no-op) or skipped "
            "(after a gap, to be re-read).",
            unit="reqps",
            defaults={"custom": {"stacking": {"mode": "normal"}, "fillOpacity": 30}},
        )
    )

    p.append(lay.row("Latency"))
    p.append(
        timeseries(
            lay,
            "Processing latency",
            [
                target("civicstream:processing_latency_seconds:p50_5m", "p50 {{job}} {{topic}}"),
                target("civicstream:processing_latency_seconds:p99_5m", "p99 {{job}} {{topic}}"),
            ],
            description="From a record's arrival in the process to its batch's outputs being "
            "durable.",
            unit="s",
            width=12,
        )
    )
    p.append(
        timeseries(
            lay,
            "Batch duration (p99)",
            [
                target(
                    "histogram_quantile(0.99, sum by (le) "
                    f"(rate(civicstream_worker_batch_seconds_bucket[{RATE}])))",
                    "worker",
                ),
                target(
                    "histogram_quantile(0.99, sum by (le) "
                    f"(rate(civicstream_sink_batch_seconds_bucket[{RATE}])))",
                    "sink",
                ),
            ],
            description="One batch: processing plus flushes (worker), or poll to commit (sink).",
            unit="s",
            width=12,
        )
    )

    p.append(lay.row("Lag"))
    p.append(
        timeseries(
            lay,
            "Consumer lag",
            [target("civicstream_consumer_lag_offsets", "{{job}} {{topic}}[{{partition}}]")],
            description="End offset minus the next offset to handle, per partition "
            "(CivicstreamConsumerLagGrowing).",
            width=12,
        )
    )
    p.append(
        timeseries(
            lay,
            "Event-time lag",
            [target("civicstream_event_time_lag_seconds", "{{job}} {{topic}}[{{partition}}]")],
            description="Now minus the newest event time processed, per partition "
            "(CivicstreamEventTimeLagHigh above 30 min). Years during a replay of old data.",
            unit="dtdurations",
            width=12,
        )
    )

    p.append(lay.row("Dead letters"))
    p.append(
        timeseries(
            lay,
            "Dead letters by reason",
            [target("civicstream:dead_letters:rate5m", "{{job}} {{reason}}")],
            description="Read examples with `civicstream tail deadletter -n 20`.",
            unit="reqps",
            width=16,
            defaults={"custom": {"stacking": {"mode": "normal"}, "fillOpacity": 30}},
        )
    )
    p.append(
        panel(
            lay,
            "bargauge",
            "Dead letters in the time range",
            [
                target(
                    "sum by (reason) (increase(civicstream_dead_letters_total[$__range]))",
                    "{{reason}}",
                    instant=True,
                )
            ],
            description="Count per reason over the dashboard's time range.",
            width=8,
            options={"orientation": "horizontal", "displayMode": "basic"},
        )
    )

    p.append(lay.row("Sink and store"))
    p.append(
        timeseries(
            lay,
            "Rows written",
            [target("civicstream:sink_rows_written:rate1m", "{{dataset}}")],
            description="Records upserted into the open-data store per second, per dataset.",
            unit="reqps",
            width=6,
        )
    )
    p.append(
        timeseries(
            lay,
            "Store write latency (p99)",
            [
                target(
                    "histogram_quantile(0.99, sum by (dataset, le) "
                    f"(rate(civicstream_sink_write_seconds_bucket[{RATE}])))",
                    "{{dataset}}",
                )
            ],
            description="Duration of the store transactions, per dataset written.",
            unit="s",
            width=6,
        )
    )
    p.append(
        timeseries(
            lay,
            "Store write failures",
            [
                target(
                    f"sum by (dataset) (increase(civicstream_sink_write_failures_total[{RATE}]))",
                    "{{dataset}}",
                )
            ],
            description="Failed store transactions, retried with back-off "
            "(CivicstreamSinkFailing).",
            width=6,
        )
    )
    p.append(
        timeseries(
            lay,
            "Offset commits",
            [target(f"rate(civicstream_sink_commits_total[{RATE}])", "{{instance}}")],
            description="Kafka offset commits after a store transaction, per second.",
            unit="reqps",
            width=6,
        )
    )

    p.append(lay.row("Windows"))
    p.append(
        timeseries(
            lay,
            "Windows open",
            [target("sum by (window) (civicstream_windows_open)", "{{window}}")],
            description="Event-time windows not final yet, in the stations the workers own.",
        )
    )
    p.append(
        timeseries(
            lay,
            "Windows finalised and late events",
            [
                target(
                    f"sum by (window) (rate(civicstream_windows_finalized_total[{RATE}]))",
                    "finalised {{window}}",
                ),
                target(
                    f"sum by (window) (rate(civicstream_late_events_total[{RATE}]))",
                    "late {{window}}",
                ),
            ],
            description="Windows made final per second, and events that came after their "
            "window was final.",
            unit="reqps",
            width=16,
        )
    )

    p.append(lay.row("Processes"))
    p.append(
        timeseries(
            lay,
            "CPU",
            [target(f"rate(process_cpu_seconds_total{{{JOBS}}}[{RATE}])", "{{job}} {{instance}}")],
            description="CPU time per second (1 = one core).",
            unit="percentunit",
        )
    )
    p.append(
        timeseries(
            lay,
            "Resident memory",
            [target(f"process_resident_memory_bytes{{{JOBS}}}", "{{job}} {{instance}}")],
            description="Resident set size.",
            unit="bytes",
        )
    )
    p.append(
        timeseries(
            lay,
            "Open file descriptors",
            [target(f"process_open_fds{{{JOBS}}}", "{{job}} {{instance}}")],
            description="Open file descriptors (sockets included).",
        )
    )
    return dashboard(
        "civicstream-pipeline",
        "civicstream · pipeline",
        "Do events flow, how far behind is each process, what is dead-lettered and why, "
        "is the store taking writes.",
        p,
        [],
    )


# --- air quality -----------------------------------------------------------------------------


def air_quality() -> dict[str, Any]:
    lay = Layout()
    station = 'station=~"$station"'
    aqi = f"max by (station) (civicstream_aqi{{{station}}})"
    p: list[Any] = [lay.row("AQI")]
    p.append(
        timeseries(
            lay,
            "AQI per station",
            [target(aqi, "{{station}}")],
            description="US EPA AQI of each station's newest final hour; the bands are the EPA "
            "categories (CivicstreamAirUnhealthy from 151, Unhealthy).",
            width=16,
            height=10,
            defaults={
                "min": 0,
                "thresholds": aqi_thresholds(),
                "custom": {"thresholdsStyle": {"mode": "line+area"}, "lineWidth": 2},
            },
        )
    )
    p.append(
        panel(
            lay,
            "bargauge",
            "AQI now",
            [target(aqi, "{{station}}", instant=True)],
            description="The newest AQI of each station, coloured by EPA category.",
            width=8,
            height=10,
            defaults={
                "min": 0,
                "max": 300,
                "thresholds": aqi_thresholds(),
                "color": {"mode": "thresholds"},
            },
            options={
                "orientation": "horizontal",
                "displayMode": "basic",
                "reduceOptions": {"calcs": ["lastNotNull"]},
            },
        )
    )
    p.append(
        panel(
            lay,
            "state-timeline",
            "EPA category per station",
            [target(aqi, "{{station}}")],
            description="The category of each station's AQI over time.",
            width=24,
            height=8,
            defaults={
                "thresholds": aqi_thresholds(),
                "mappings": aqi_category_mappings(),
                "color": {"mode": "thresholds"},
            },
            options={"showValue": "never", "mergeValues": True},
        )
    )

    p.append(lay.row("Sensors"))
    p.append(
        stat(
            lay,
            "Stale sensors",
            [target("sum(civicstream_sensors_stale)")],
            description="Sensors silent for longer than CIVIC_STALE_AFTER of stream time "
            "(CivicstreamSensorStale).",
            width=6,
            defaults={
                "thresholds": {
                    "mode": "absolute",
                    "steps": [{"color": "green", "value": None}, {"color": "orange", "value": 1}],
                },
            },
        )
    )
    p.append(
        stat(
            lay,
            "Stations reporting an AQI",
            [target("count(civicstream_aqi)")],
            description="Stations with an AQI gauge (owned by a running worker).",
            width=6,
        )
    )
    p.append(
        stat(
            lay,
            "Unhealthy stations",
            [target("count(max by (station) (civicstream_aqi) >= 151) or vector(0)")],
            description="Stations at EPA category Unhealthy or worse now.",
            width=6,
            defaults={
                "thresholds": {
                    "mode": "absolute",
                    "steps": [{"color": "green", "value": None}, {"color": "red", "value": 1}],
                },
            },
        )
    )
    p.append(
        stat(
            lay,
            "Anomalies (time range)",
            [target("sum(increase(civicstream_anomalies_total[$__range])) or vector(0)")],
            description="Readings flagged by the anomaly detector in the time range.",
            width=6,
        )
    )
    p.append(
        panel(
            lay,
            "table",
            "Stale sensors",
            [target(f"civicstream_sensor_stale{{{station}}} == 1", format="table", instant=True)],
            description="Which sensors are stale now (station, pollutant).",
            width=8,
            height=8,
        )
    )
    p.append(
        panel(
            lay,
            "table",
            "Newest reading per sensor (event time)",
            [
                target(
                    f"civicstream_sensor_last_event_timestamp_seconds{{{station}}} * 1000",
                    format="table",
                    instant=True,
                )
            ],
            description="Event time of each sensor's newest accepted reading.",
            unit="dateTimeAsIso",
            width=8,
            height=8,
        )
    )
    p.append(
        timeseries(
            lay,
            "Anomalies by kind",
            [
                target(
                    f"sum by (kind) (increase(civicstream_anomalies_total[{RATE}]))",
                    "{{kind}}",
                )
            ],
            description="Readings flagged per kind (stuck, spike, sentinel, out_of_range, ...).",
            width=8,
            height=8,
        )
    )
    variables = [
        {
            "name": "station",
            "label": "Station",
            "type": "query",
            "datasource": DATASOURCE,
            "query": {"query": "label_values(civicstream_aqi, station)", "refId": "stations"},
            "definition": "label_values(civicstream_aqi, station)",
            "refresh": 2,
            "multi": True,
            "includeAll": True,
            "allValue": ".*",
            "current": {"text": "All", "value": "$__all"},
            "sort": 1,
            "hide": 0,
        }
    ]
    return dashboard(
        "civicstream-air-quality",
        "civicstream · air quality",
        "The air now and over time, in EPA categories; which sensors are silent or faulty.",
        p,
        variables,
    )


def dashboards() -> dict[str, dict[str, Any]]:
    return {"pipeline.json": pipeline(), "air-quality.json": air_quality()}


def render(board: dict[str, Any]) -> str:
    return json.dumps(board, indent=2, ensure_ascii=False) + "\n"


def expressions(board: dict[str, Any]) -> Iterator[str]:
    """Every PromQL expression of a dashboard: panel targets and variable queries."""
    for item in board["panels"]:
        for t in item.get("targets", []):
            yield t["expr"]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            yield variable["definition"]


def main() -> int:
    OUT.mkdir(exist_ok=True)
    for name, board in dashboards().items():
        (OUT / name).write_text(render(board))
        print(f"wrote {OUT / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
