"""The incident step as a specification, on the real SFPD and Pittsburgh rows.

Records go through `IncidentPipeline.process` exactly as the worker runs it: outputs
first, then the state writes, batch after batch.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from civicstream.settings import BUNDLED_CITIES, load_city
from civicstream.sources.base import SourceRecord as FileRecord
from civicstream.sources.incidents import read_pittsburgh_fire, read_sfpd
from processors import incident_stats
from processors.privacy import snap_to_grid
from schemas import Topics, decode
from schemas.raw_incident import heartbeat_to_json, parse_raw_incident
from streams.air_quality import SourceRecord
from streams.incidents import IncidentPipeline

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "incidents"
RAW = "civic.raw.incidents"
HOUR = 3_600_000
DAY = 24 * HOUR
DELAY = 72 * HOUR
TOPICS = Topics()
SOURCES = {
    **load_city(BUNDLED_CITIES / "san_francisco.toml").incident_sources,
    **load_city(BUNDLED_CITIES / "pittsburgh.toml").incident_sources,
}


class MemoryState(dict[str, bytes]):
    """The state-store protocol over a dict."""

    def load(self, key: str) -> bytes | None:
        return self.get(key)

    def apply(self, result) -> None:
        for update in result.state_updates:
            if update.data is None:
                self.pop(update.key, None)
            else:
                self[update.key] = update.data


@dataclass
class Run:
    """Everything a replay produced, batch by batch."""

    pipeline: IncidentPipeline = field(default_factory=lambda: IncidentPipeline(TOPICS, SOURCES))
    state: MemoryState = field(default_factory=MemoryState)
    offset: int = 0
    outputs: list[tuple[int, Any]] = field(default_factory=list)  # (batch, output)
    results: list[Any] = field(default_factory=list)
    _decoded: dict[str, list[tuple[int, dict[str, Any]]]] = field(default_factory=dict)

    def feed(self, messages: list[tuple[bytes | None, bytes]], batch_size: int = 500) -> None:
        for start in range(0, len(messages), batch_size):
            records = []
            for key, value in messages[start : start + batch_size]:
                records.append(SourceRecord(RAW, 0, self.offset, key, value))
                self.offset += 1
            result = self.pipeline.process(records, self.state)
            self.state.apply(result)
            batch = len(self.results)
            self.results.append(result)
            self.outputs.extend((batch, output) for output in result.outputs)
            self._decoded.clear()

    def decoded(self, topic: str) -> list[tuple[int, dict[str, Any]]]:
        """(batch, record) of every output to `topic`, in order (decoded once)."""
        if topic not in self._decoded:
            self._decoded[topic] = [
                (batch, decode(o.value)) for batch, o in self.outputs if o.topic == topic
            ]
        return self._decoded[topic]

    def records(self, topic: str) -> list[dict[str, Any]]:
        return [record for _, record in self.decoded(topic)]

    def latest(self, topic: str, key: tuple[str, ...]) -> dict[tuple[Any, ...], dict[str, Any]]:
        """The record a store keeps per natural key: the highest revision."""
        kept: dict[tuple[Any, ...], dict[str, Any]] = {}
        for record in self.records(topic):
            natural = tuple(record[k] for k in key)
            if natural not in kept or kept[natural]["revision"] <= record["revision"]:
                kept[natural] = record
        return kept

    def total(self, name: str) -> int:
        return sum(getattr(r, name) for r in self.results)


def messages(records: list[FileRecord]) -> list[tuple[bytes | None, bytes]]:
    return [(r.key, r.value) for r in records]


def heartbeat(source: str, ts_ms: int) -> tuple[None, bytes]:
    return None, heartbeat_to_json(source, ts_ms)


@pytest.fixture(scope="module")
def sfpd() -> list[FileRecord]:
    return read_sfpd(DATA / "SFPD_Incident_Reports_2018-12.csv")


@pytest.fixture(scope="module")
def sf_run(sfpd) -> Run:
    """The whole SFPD December 2018 file, then a heartbeat four days after its last report."""
    run = Run()
    run.feed([*messages(sfpd), heartbeat("sfpd", sfpd[-1].ts_ms + 4 * DAY)])
    return run


@pytest.fixture(scope="module")
def pittsburgh_run() -> Run:
    rows = read_pittsburgh_fire(DATA / "Pittsburgh_Fire_Incidents.csv")
    run = Run()
    run.feed([*messages(rows), heartbeat("pittsburgh-fire", rows[-1].ts_ms + 4 * DAY)], 1000)
    return run


def published(run: Run) -> dict[tuple[Any, ...], dict[str, Any]]:
    return run.latest(TOPICS.incidents_published, ("incident_id",))


def counts(run: Run) -> dict[tuple[Any, ...], dict[str, Any]]:
    return run.latest(TOPICS.incidents_stats, ("district", "category", "day"))


# -- one row per incident ----------------------------------------------------------------------


def test_offence_rows_merge_into_one_incident_under_its_most_serious_category(sf_run):
    incidents = published(sf_run)
    assert len(incidents) == 9_749  # 11,884 rows
    robbery = incidents[("743396",)]  # Robbery + Offences Against The Family + Conspiracy
    assert robbery["offence_codes"] == ["03074", "15030", "26080"]
    assert robbery["category"] == "violent"
    assert robbery["source_category"] == "Robbery"
    assert robbery["source_categories"] == [
        "Offences Against The Family And Children",
        "Other Miscellaneous",
        "Robbery",
    ]
    assert (robbery["day"], robbery["district"]) == ("2018-12-01", "Ingleside")
    assert robbery["revision"] == 1  # its rows came together: published once


def test_the_published_record_holds_no_narrative_and_none_of_the_sources_extra_fields(sf_run):
    record = published(sf_run)[("743400",)]
    assert set(record) == {
        "incident_id",
        "source",
        "revision",
        "category",
        "source_category",
        "source_subcategory",
        "description",
        "offence_codes",
        "source_categories",
        "occurred_at",
        "day",
        "reported_at",
        "district",
        "address",
        "lat",
        "lon",
        "location_withheld",
        "status",
    }
    assert record["address"] == "ULLOA ST & 20TH AVE"


# -- privacy on real rows ---------------------------------------------------------------------


def test_no_published_address_carries_a_house_number(sf_run, pittsburgh_run):
    addresses = [r["address"] for run in (sf_run, pittsburgh_run) for r in published(run).values()]
    streets = [part for a in addresses if a for part in a.split(",")[0].split(" & ")]
    assert len(streets) > 20_000
    house_number = re.compile(r"^\d+\s+(?!BLOCK OF )")
    assert [s for s in streets if house_number.match(s)] == []
    blocks = [s for s in streets if re.match(r"^\d+ BLOCK OF ", s)]
    assert len(blocks) > 6_000  # Pittsburgh's blocks
    assert all(int(s.split()[0]) % 100 == 0 for s in blocks)


def test_sensitive_offences_carry_no_location_only_their_district(sf_run, sfpd):
    incidents = published(sf_run)
    sensitive_ids = set()
    for record in sfpd:
        row = parse_raw_incident(record.value)
        text = " ".join(filter(None, (row.category, row.description, row.status)))
        if row.category in {"Sex Offense", "Family Offense"} or re.search(
            r"Juvenile|Domestic Violence|Spouse", text
        ):
            sensitive_ids.add(row.incident_id)
    assert len(sensitive_ids) > 250
    for incident_id in sensitive_ids:
        record = incidents[(incident_id,)]
        assert record["location_withheld"]
        assert (record["address"], record["lat"], record["lon"]) == (None, None, None)
        assert record["district"]
    withheld = sum(r["location_withheld"] for r in incidents.values())
    assert len(sensitive_ids) <= withheld < len(incidents) // 5


def test_published_coordinates_are_snapped_to_the_grid(sf_run, sfpd):
    source_points = {}
    for record in sfpd:
        row = parse_raw_incident(record.value)
        if row.lat is not None:
            source_points[row.incident_id] = (row.lat, row.lon)
    points = {
        r["incident_id"]: (r["lat"], r["lon"])
        for r in published(sf_run).values()
        if r["lat"] is not None
    }
    assert len(points) > 8_000
    for incident_id, point in points.items():
        assert snap_to_grid(*point, 150.0) == point
        assert point == snap_to_grid(*source_points[incident_id], 150.0)
        assert point != source_points[incident_id]
    assert len(set(points.values())) < len(set(source_points.values()))


# -- time --------------------------------------------------------------------------------------


def test_nothing_is_published_before_its_delay_has_passed_in_stream_time(sfpd):
    """Row by row: after each row, the stream time is the latest report seen."""
    run = Run()
    head, window = messages(sfpd[:3000]), messages(sfpd[3000:3600])
    run.feed(head, batch_size=3000)
    known = {parse_raw_incident(v).incident_id: None for _, v in head + window}
    for _, value in head + window:
        row = parse_raw_incident(value)
        known[row.incident_id] = known[row.incident_id] or row.known_ms
    clock = max(parse_raw_incident(v).known_ms for _, v in head)
    is_public = {r["incident_id"] for r in run.records(TOPICS.incidents_published)}
    checked = 0
    for key, value in window:
        clock = max(clock, parse_raw_incident(value).known_ms)
        run.feed([(key, value)], batch_size=1)
        for output in run.results[-1].outputs:
            if output.topic == TOPICS.incidents_published:
                record = decode(output.value)
                assert known[record["incident_id"]] + DELAY <= clock
                is_public.add(record["incident_id"])
                checked += 1
        # ... and nothing is held back longer than its delay either
        due = {i for i, k in known.items() if k is not None and k + DELAY <= clock}
        assert due <= is_public
    assert checked > 300


def test_a_late_report_raises_the_revision_of_the_day_it_belongs_to(sf_run):
    def cell_of(record: dict[str, Any]) -> tuple[str, str, str]:
        return record["district"], record["category"], record["day"]

    late_reports = sorted(
        (
            r
            for r in published(sf_run).values()
            if (r["reported_at"].date() - date.fromisoformat(r["day"])).days >= 7
        ),
        key=lambda r: r["incident_id"],
    )
    assert len(late_reports) > 300
    first_published = {}
    for batch, record in sf_run.decoded(TOPICS.incidents_published):
        first_published.setdefault(record["incident_id"], batch)
    rows_of = defaultdict(list)
    for batch, record in sf_run.decoded(TOPICS.incidents_stats):
        rows_of[cell_of(record)].append((batch, record))
    for late in late_reports[:50]:
        published_in = first_published[late["incident_id"]]
        day_rows = rows_of[(late["district"], "all", late["day"])]
        before = [r for batch, r in day_rows if batch < published_in]
        with_it = [r for batch, r in day_rows if batch == published_in]
        # The day was complete (published) before the late report came in ...
        assert before, late["incident_id"]
        # ... and is published again, with it, at a higher revision.
        assert with_it[-1]["revision"] > before[-1]["revision"]
        assert with_it[-1]["count"] > before[-1]["count"]
        assert [r["revision"] for _, r in day_rows] == list(range(1, len(day_rows) + 1))


def test_the_sfpd_replay_corrects_days_for_reports_after_the_day_ended(sf_run):
    corrections = sf_run.total("corrections")
    rows = sf_run.records(TOPICS.incidents_stats)
    assert corrections == sum(1 for r in rows if r["category"] == "all" and r["revision"] > 1)
    assert 3_000 < corrections < 4_000  # measured: 3,626
    print(f"\nSFPD replay: {corrections:,} late corrections of a day's counts")


def test_rows_later_than_the_allowed_lateness_are_dead_lettered_late(sfpd):
    run = Run()
    first = parse_raw_incident(sfpd[0].value)
    body = json.loads(sfpd[0].value)
    reported = first.occurred_ms + 14 * 7 * DAY
    body.update(incident_id="late-1", reported_at=reported)
    # the source's time has moved on to the report (its rows, or here its heartbeat)
    run.feed(
        [*messages(sfpd[:5]), heartbeat("sfpd", reported), (b"late-1", json.dumps(body).encode())]
    )
    letters = [decode(o.value) for _, o in run.outputs if o.topic == TOPICS.deadletter]
    assert [(d["reason"], d["key"]) for d in letters] == [("late", b"late-1")]
    assert "allowed lateness" in letters[0]["detail"]


def test_a_row_far_ahead_of_the_source_time_is_dead_lettered_and_moves_no_clock(sfpd):
    """One row with a wrong clock (a year ahead) must not make every later row late: it
    is dead-lettered invalid_timestamp, and the rows after it are processed as without it."""
    first = parse_raw_incident(sfpd[0].value)
    body = json.loads(sfpd[0].value)
    body.update(incident_id="future-1", reported_at=first.occurred_ms + 365 * DAY)
    future = (b"future-1", json.dumps(body).encode())
    clean, hostile = Run(), Run()
    clean.feed(messages(sfpd[:40]))
    hostile.feed([*messages(sfpd[:5]), future, *messages(sfpd[5:40])])
    letters = [decode(o.value) for _, o in hostile.outputs if o.topic == TOPICS.deadletter]
    assert [(d["reason"], d["key"]) for d in letters] == [("invalid_timestamp", b"future-1")]
    assert "days ahead of the source's stream time" in letters[0]["detail"]
    assert [o for _, o in hostile.outputs if o.topic != TOPICS.deadletter] == [
        o for _, o in clean.outputs
    ]


def test_a_source_back_after_a_long_silence_is_accepted_once_its_rows_agree(sfpd):
    """Rows that all lie weeks ahead are a source back from an outage, not a bad clock:
    after REANCHOR_AFTER of them are dead-lettered, the next moves the source's time."""
    from streams.time import REANCHOR_AFTER

    base = parse_raw_incident(sfpd[0].value).occurred_ms + 45 * DAY  # > MAX_AHEAD_MS
    rows = []
    for i in range(REANCHOR_AFTER + 3):
        body = json.loads(sfpd[0].value)
        body.update(incident_id=f"back-{i}", reported_at=base + i * 60_000)
        rows.append((f"back-{i}".encode(), json.dumps(body).encode()))
    run = Run()
    run.feed([*messages(sfpd[:5]), *rows])
    letters = [decode(o.value) for _, o in run.outputs if o.topic == TOPICS.deadletter]
    assert [d["key"] for d in letters] == [f"back-{i}".encode() for i in range(REANCHOR_AFTER)]
    assert {d["reason"] for d in letters} == {"invalid_timestamp"}
    assert run.total("accepted") == 5 + 3


# -- counts ------------------------------------------------------------------------------------


def test_daily_counts_equal_the_distinct_incidents_with_small_cells_suppressed(sf_run, sfpd):
    reference: dict[tuple[str, str], set[str]] = defaultdict(set)
    for record in sfpd:
        row = parse_raw_incident(record.value)
        occurred = date.fromisoformat(json.loads(record.value)["occurred_at"][:10])
        reference[(row.district, occurred.isoformat())].add(row.incident_id)
    rows = counts(sf_run)
    totals = {(d, day): r for (d, category, day), r in rows.items() if category == "all"}
    assert totals.keys() == reference.keys()
    for cell, ids in reference.items():
        expected = len(ids) if len(ids) >= 3 else None
        assert (totals[cell]["count"], totals[cell]["suppressed"]) == (expected, len(ids) < 3)
    # Categories add up to the total where none is suppressed.
    by_day: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for (district, category, day), row in rows.items():
        if category != "all":
            by_day[(district, day)].append(row)
    complete = [cell for cell, cats in by_day.items() if all(not r["suppressed"] for r in cats)]
    assert len(complete) > 20
    for cell in complete:
        assert sum(r["count"] for r in by_day[cell]) == totals[cell]["count"]


def test_spikes_on_the_unmodified_december_data_stay_within_the_false_alarm_rate(sf_run):
    rows = list(counts(sf_run).values())
    spikes = [r for r in rows if r["spike"]]
    rate = len(spikes) / len(rows)
    print(f"\nSFPD December 2018: {len(spikes)} spikes in {len(rows):,} rows ({rate:.2%})")
    assert rate <= incident_stats.FALSE_ALARM_RATE
    assert all(not r["suppressed"] and r["tail_probability"] < 0.001 for r in spikes)


def test_an_injected_burst_is_flagged_as_a_spike(sfpd):
    """Thirty extra thefts in the Mission on 19 December, reported the same day."""
    template = next(
        json.loads(r.value)
        for r in sfpd
        if b'"district":"Mission"' in r.value and b'"category":"Larceny Theft"' in r.value
    )
    burst = []
    for n in range(30):
        body = dict(
            template,
            incident_id=f"burst-{n}",
            occurred_at=f"2018-12-19T{10 + n // 6:02d}:{n % 6 * 10:02d}:00-08:00",
            reported_at=f"2018-12-19T{11 + n // 6:02d}:{n % 6 * 10:02d}:00-08:00",
        )
        burst.append(FileRecord(0, body["incident_id"].encode(), json.dumps(body).encode()))
    burst_ts = [parse_raw_incident(r.value).known_ms for r in burst]
    end_of_burst_day = 1_545_292_800_000  # 2018-12-20T00:00-08:00
    merged = sorted(
        [
            *(r for r in sfpd if r.ts_ms < end_of_burst_day),
            *(r._replace(ts_ms=ts) for r, ts in zip(burst, burst_ts, strict=True)),
        ]
    )
    with_burst = Run()
    with_burst.feed([*messages(merged), heartbeat("sfpd", end_of_burst_day + DELAY)])
    cell = counts(with_burst)[("Mission", "property", "2018-12-19")]
    assert cell["spike"]
    assert cell["count"] > 2 * cell["baseline"]
    assert cell["tail_probability"] < 1e-4


def test_pittsburgh_days_are_local_days_in_summer_and_winter_time(pittsburgh_run):
    incidents = published(pittsburgh_run)
    assert len(incidents) == 8_927  # 8,945 rows, 18 without an alarm time
    # (call, local day, UTC): winter time is UTC-5, summer time UTC-4
    for call, day, utc in [
        ("F130000772", "2013-01-03", "2013-01-04T01:54:02+00:00"),  # 20:54 EST
        ("F170043748", "2017-06-01", "2017-06-01T04:33:06+00:00"),  # 00:33 EDT
    ]:
        record = incidents[(call,)]
        assert (record["day"], record["occurred_at"].isoformat()[:19]) == (day, utc[:19])
    letters = pittsburgh_run.records(TOPICS.deadletter)
    assert {d["reason"] for d in letters} == {"missing_field"} and len(letters) == 18
    rows = list(counts(pittsburgh_run).values())
    spikes = sum(r["spike"] for r in rows)
    suppressed = sum(r["suppressed"] for r in rows)
    print(f"\nPittsburgh: {len(rows):,} rows, {suppressed:,} suppressed, {spikes} spikes")
    assert spikes / len(rows) <= incident_stats.FALSE_ALARM_RATE


# -- delivery ----------------------------------------------------------------------------------


def test_results_do_not_depend_on_batch_boundaries(sfpd):
    head = [*messages(sfpd[:2500]), heartbeat("sfpd", sfpd[2499].ts_ms + 4 * DAY)]
    one, many = Run(), Run()
    one.feed(head, batch_size=len(head))
    many.feed(head, batch_size=7)
    assert [o for _, o in one.outputs] == [o for _, o in many.outputs]
    assert one.state == many.state


def test_a_redelivered_batch_changes_nothing(sfpd):
    run = Run()
    run.feed(messages(sfpd[:1000]))
    state = dict(run.state)
    again = [SourceRecord(RAW, 0, offset, r.key, r.value) for offset, r in enumerate(sfpd[:1000])]
    result = run.pipeline.process(again, run.state)
    assert (result.outputs, result.redelivered) == ([], 1000)
    run.state.apply(result)
    assert dict(run.state) == state


def test_a_crash_before_the_state_write_replays_to_the_same_outputs(sfpd):
    run = Run()
    run.feed(messages(sfpd[:1500]))
    records = [
        SourceRecord(RAW, 0, 1500 + n, r.key, r.value) for n, r in enumerate(sfpd[1500:2500])
    ]
    first = run.pipeline.process(records, run.state)  # outputs sent, then the worker dies
    second = run.pipeline.process(records, run.state)
    assert second.outputs == first.outputs
    assert second.state_updates == first.state_updates


def test_the_same_row_sent_twice_is_applied_once(sfpd):
    run = Run()
    run.feed([*messages(sfpd[:10]), *messages(sfpd[:10])])
    assert (run.total("accepted"), run.total("unchanged")) == (10, 10)


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (b"x", b"", "invalid_encoding"),
        (b"x", b"\xff\xfe", "invalid_encoding"),
        (b"x", b"{not json", "invalid_json"),
        (b"1", b'{"incident_id": "1", "source": "sfpd", "category": "Arson"}', "missing_field"),
        (
            b"1",
            b'{"incident_id": "1", "source": "nypd", "category": "Arson", "occurred_at": 0}',
            "unknown_source",
        ),
        (
            b"2",
            b'{"incident_id": "1", "source": "sfpd", "category": "Arson", "occurred_at": 0}',
            "wrong_key",
        ),
        (
            b"1",
            b'{"incident_id": "1", "source": "sfpd", "category": "Arson",'
            b' "occurred_at": "2018-12-01T10:00:00"}',
            "invalid_timestamp",
        ),
        (
            b"1",
            b'{"incident_id": "1", "source": "sfpd", "category": "Arson",'
            b' "occurred_at": "2018-12-09T10:00:00Z", "reported_at": "2018-12-01T10:00:00Z"}',
            "invalid_timestamp",
        ),
        (
            b"1",
            b'{"incident_id": "1", "source": "sfpd", "category": "Arson", "occurred_at": 0,'
            b' "lat": 91, "lon": 0}',
            "invalid_field",
        ),
    ],
)
def test_bad_input_is_dead_lettered_with_its_bytes_and_reason(key, value, reason):
    run = Run()
    run.feed([(key, value)])
    [(_, output)] = run.outputs
    letter = decode(output.value)
    assert (letter["reason"], letter["key"], letter["value"]) == (reason, key, value)
    assert (letter["source_topic"], letter["source_offset"]) == (RAW, 0)


def test_a_heartbeat_publishes_what_the_delay_held_back(sfpd):
    run = Run()
    run.feed(messages(sfpd[:200]))
    held = len(run.records(TOPICS.incidents_published))
    run.feed([heartbeat("sfpd", sfpd[199].ts_ms + DELAY)])
    assert held == 0
    assert len(run.records(TOPICS.incidents_published)) == len({r.key for r in sfpd[:200]})


def test_a_later_offence_row_republishes_the_incident_and_moves_it_between_categories(sfpd):
    run = Run()
    head = messages(sfpd[:3000])
    run.feed([*head, heartbeat("sfpd", sfpd[2999].ts_ms + 4 * DAY)])
    before = counts(run)
    theft = next(
        r
        for r in published(run).values()
        if r["source_category"] == "Larceny Theft"
        and r["offence_codes"] == ["06244"]
        and (before[(r["district"], "property", r["day"])]["count"] or 0) >= 4
    )
    district, day = theft["district"], theft["day"]
    body = dict(
        json.loads(next(v for k, v in head if k == theft["incident_id"].encode())),
        offence_code="03074",
        category="Robbery",
        subcategory="Robbery - Other",
        description="Robbery, W/ Force",
    )
    run.feed([(theft["incident_id"].encode(), json.dumps(body).encode())])
    record = run.records(TOPICS.incidents_published)[-1]
    assert (record["incident_id"], record["revision"], record["category"]) == (
        theft["incident_id"],
        2,
        "violent",
    )
    assert record["offence_codes"] == ["03074", "06244"]
    changed = {r["category"]: r for r in decode_all(run.results[-1], TOPICS.incidents_stats)}
    assert set(changed) == {"property", "violent"}  # the total ("all") did not change
    property_before = before[(district, "property", day)]
    assert changed["property"]["count"] == property_before["count"] - 1
    assert changed["property"]["revision"] == property_before["revision"] + 1
    violent_before = before.get((district, "violent", day))
    assert changed["violent"]["revision"] == (
        violent_before["revision"] + 1 if violent_before else 1
    )


def decode_all(result, topic: str) -> list[dict[str, Any]]:
    return [decode(o.value) for o in result.outputs if o.topic == topic]
