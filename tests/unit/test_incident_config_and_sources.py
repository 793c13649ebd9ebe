"""Incident configuration (city files), the export readers and the incident datasets."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

import schemas
from civicstream.settings import (
    BUNDLED_CITIES,
    BUNDLED_CITY,
    ConfigError,
    Settings,
    bundled_incident_source,
    load_city,
    parse_duration_ms,
)
from civicstream.sources import SourceError
from civicstream.sources.incidents import read_incidents, read_pittsburgh_fire, read_sfpd
from schemas.raw_incident import RawIncident, incident_to_avro, parse_raw_incident
from schemas.topics import Topics, partitions_for
from sinks.store import open_store

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "incidents"
SF_FILE = BUNDLED_CITIES / "san_francisco.toml"
PITTSBURGH_FILE = BUNDLED_CITIES / "pittsburgh.toml"


# -- city configuration ------------------------------------------------------------------------


def test_the_bundled_cities_declare_their_sources_with_their_time_zones():
    sf = load_city(SF_FILE)
    assert (sf.name, sf.timezone, list(sf.incident_sources)) == (
        "San Francisco",
        "America/Los_Angeles",
        ["sfpd"],
    )
    source = sf.incident_sources["sfpd"]
    assert source.timezone == "America/Los_Angeles"
    assert source.privacy.publication_delay_ms == 72 * 3_600_000
    assert source.privacy.grid_metres == 150
    assert source.allowed_lateness_ms == 13 * 7 * 86_400_000
    pittsburgh = load_city(PITTSBURGH_FILE).incident_sources["pittsburgh-fire"]
    assert pittsburgh.timezone == "America/New_York"
    assert pittsburgh.privacy.sensitive_common == frozenset({"ems"})
    assert load_city(BUNDLED_CITY).incident_sources == {}  # Beijing: air quality only


def test_civic_config_may_list_several_cities_the_first_one_leads():
    settings = Settings.from_env(
        {"CIVIC_CONFIG": os.pathsep.join(map(str, [BUNDLED_CITY, SF_FILE]))}
    )
    assert settings.city().name == "Beijing"
    assert [c.name for c in settings.cities()] == ["Beijing", "San Francisco"]
    assert list(settings.incident_sources()) == ["sfpd"]
    twice = Settings.from_env({"CIVIC_CONFIG": os.pathsep.join(map(str, [SF_FILE, SF_FILE]))})
    with pytest.raises(ConfigError, match="'sfpd' is declared twice"):
        twice.incident_sources()


def test_a_source_format_finds_its_bundled_city():
    assert bundled_incident_source("pittsburgh-fire").timezone == "America/New_York"
    assert bundled_incident_source("nypd") is None


@pytest.mark.parametrize(
    ("text", "ms"), [("3d", 259_200_000), ("13w", 7_862_400_000), ("P3D", 259_200_000)]
)
def test_incident_durations_read_in_days_and_weeks(text, ms):
    assert parse_duration_ms(text, name="X") == ms


def _city(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "city.toml"
    path.write_text('[city]\nname = "Test"\ntimezone = "Europe/Zurich"\n' + text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[incidents]\ndelay = '72h'\n", r"incidents\.delay: unknown key"),
        ("[incidents.sources.x]\ncolour = 'red'\n", r"incidents\.sources\.x\.colour: unknown key"),
        (
            "[incidents.sources.x.categories]\nTheft = 'stealing'\n",
            r'incidents\.sources\.x\.categories\.Theft: unknown category "stealing" \(violent,',
        ),
        ("[incidents.sources.x]\ngrid_metres = 0\n", r"sources\.x\.grid_metres: grid size"),
        ("[incidents]\npublication_delay = 'soon'\n[incidents.sources.x]\n", "publication_delay"),
        ("[incidents.sources.x]\nsensitive_keywords = 'child'\n", "must be an array of strings"),
        ("[incidents.sources.x]\nsensitive_common = ['medical']\n", "medical"),
    ],
)
def test_a_bad_incident_configuration_is_refused_with_the_file_and_the_setting(
    tmp_path, text, message
):
    path = _city(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as error:
        load_city(path)
    assert str(path) in str(error.value)


def test_an_unknown_time_zone_is_refused(tmp_path):
    path = tmp_path / "city.toml"
    path.write_text('[city]\nname = "X"\ntimezone = "Mars/Olympus"\n')
    with pytest.raises(ConfigError, match=r"Mars/Olympus.*IANA"):
        load_city(path)


# -- readers -------------------------------------------------------------------------------


def test_sfpd_rows_are_sent_in_report_order_in_san_francisco_time():
    records = read_sfpd(DATA / "SFPD_Incident_Reports_2018-12.csv")
    assert len(records) == 11_884
    assert [r.ts_ms for r in records] == sorted(r.ts_ms for r in records)
    first = json.loads(records[0].value)
    assert first["occurred_at"] == "2018-12-01T00:12:00-08:00"
    assert first["address"] == "NATOMA ST \\ MARY ST"  # as SFPD publishes it; generalised later
    assert records[0].key == first["incident_id"].encode()
    # The last rows are December incidents reported in February: late in the stream too.
    last = parse_raw_incident(records[-1].value)
    assert datetime.fromtimestamp(last.reported_ms / 1000, UTC).month == 2
    assert datetime.fromtimestamp(last.occurred_ms / 1000, UTC).month == 12


def test_pittsburgh_rows_get_new_york_time_and_rows_without_time_go_first():
    records = read_pittsburgh_fire(DATA / "Pittsburgh_Fire_Incidents.csv")
    assert len(records) == 8_945
    untimed = [json.loads(r.value) for r in records[:18]]
    assert all(r["occurred_at"] is None for r in untimed)
    timed = [json.loads(r.value) for r in records[18:]]
    assert timed[0]["occurred_at"].endswith("-05:00")  # January: EST
    summer = next(r for r in timed if r["occurred_at"].startswith("2017-06-01T00:33"))
    assert summer["occurred_at"] == "2017-06-01T00:33:06-04:00"
    assert summer["district"] == "Council District 5"
    assert summer["extra"]["fire_zone"] == "2-12"


def test_the_replay_window_applies_to_the_time_a_row_became_known():
    since = int(datetime(2019, 1, 1, tzinfo=UTC).timestamp() * 1000)
    records = list(
        read_incidents(
            [DATA / "SFPD_Incident_Reports_2018-12.csv"], "sfpd", "America/Los_Angeles", since
        )
    )
    assert 600 < len(records) < 700  # reported in January or February, about December


def test_a_file_of_another_format_is_refused_by_name(tmp_path):
    path = tmp_path / "export.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(SourceError, match=r"export\.csv.*SFPD"):
        read_sfpd(path)


# -- contracts ---------------------------------------------------------------------------------


def test_a_raw_incident_round_trips_through_avro():
    row = RawIncident(
        "1", "sfpd", "06244", "Larceny Theft", None, "Theft", 1, 2, "A ST", 37.7, -122.4,
        "Mission", "Open or Active", {"CAD Number": "1"},
    )  # fmt: skip
    assert parse_raw_incident(incident_to_avro(row)) == row


def test_the_raw_incidents_topic_has_one_partition_in_every_namespace():
    topics = Topics("replay.")
    assert partitions_for(topics.raw_incidents, 6) == 1
    assert partitions_for(topics.raw_air_quality, 6) == 6
    assert f"{topics.worker_group}-incident-state-changelog" in topics.internal


# -- datasets ----------------------------------------------------------------------------------


def _count(revision: int, count: int | None, **changes):
    record = {
        "district": "Mission",
        "category": "property",
        "day": "2018-12-19",
        "count": count,
        "suppressed": count is None,
        "baseline": None if count is None else 18.5,
        "baseline_days": 28,
        "spike": False,
        "tail_probability": None,
        "revision": revision,
        "as_of": 1_545_292_800_000,
        **changes,
    }
    return schemas.decode(schemas.encode("incident_count", record))


def test_incident_counts_keep_the_highest_revision_whatever_the_order():
    with open_store("sqlite:///:memory:") as store:
        store.write_batch({"incident_counts": [_count(1, None), _count(3, 31)]})
        store.write_batch({"incident_counts": [_count(2, 30)]})  # a late re-delivery
        [row] = store.fetch("incident_counts")
    assert (row["count"], row["revision"], row["suppressed"], row["as_of"]) == (
        31,
        3,
        0,
        "2018-12-20T08:00:00.000Z",
    )
