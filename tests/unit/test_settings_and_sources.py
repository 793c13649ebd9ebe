"""Configuration and the readers of the bundled public data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from civicstream.settings import BUNDLED_CITY, ConfigError, Settings, load_city, parse_duration_ms
from civicstream.simulate import simulate_readings
from civicstream.sources import SourceError, open_sources, read_beijing, read_jsonlines

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "airquality"
DONGSI = DATA / "PRSA_Data_Dongsi_20130301-20170228.csv"


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("600", 600_000),
        ("600s", 600_000),
        ("10m", 600_000),
        ("1h", 3_600_000),
        ("250ms", 250),
        ("PT10M", 600_000),
        ("PT1H30M", 5_400_000),
    ],
)
def test_durations_read_the_way_people_write_them(text, ms):
    assert parse_duration_ms(text, name="X") == ms


def test_settings_come_from_the_environment_with_working_defaults():
    assert Settings.from_env({}) == Settings()
    settings = Settings.from_env(
        {
            "CIVIC_KAFKA_BOOTSTRAP": "k:1",
            "CIVIC_ALLOWED_LATENESS": "5m",
            "CIVIC_TOPIC_PREFIX": "replay-a.",
            "CIVIC_PARTITIONS": "6",
            "CIVIC_SPIKE_WAIT": "2h",
        }
    )
    assert (
        settings.kafka_bootstrap,
        settings.allowed_lateness_ms,
        settings.topic_prefix,
        settings.partitions,
        settings.spike_wait_ms,
    ) == ("k:1", 300_000, "replay-a.", 6, 7_200_000)


@pytest.mark.parametrize(
    "env",
    [{"CIVIC_ALLOWED_LATENESS": "soon"}, {"CIVIC_PARTITIONS": "0"}, {"CIVIC_SPIKE_WAIT": "x"}],
)
def test_a_bad_setting_is_named_in_the_error(env):
    with pytest.raises(ConfigError, match=next(iter(env))):
        Settings.from_env(env)


def test_the_bundled_city_has_the_twelve_beijing_stations():
    city = load_city(BUNDLED_CITY)
    assert city.timezone == "Asia/Shanghai"
    assert len(city.stations) == 12
    assert (city.stations["dongsi"].lat, city.stations["dongsi"].lon) == (39.929, 116.417)


def test_beijing_rows_become_gateway_json_in_beijing_time():
    first = list(read_beijing(DONGSI, {"dongsi": (39.929, 116.417)}))[:6]
    assert [json.loads(r.value) for r in first] == [
        {
            "station_id": "dongsi",
            "sensor_id": f"dongsi-{p}",
            "pollutant": p,
            "value": v,
            "unit": "ug/m3",
            "ts": "2013-03-01T00:00:00+08:00",
            "lat": 39.929,
            "lon": 116.417,
        }
        for p, v in [
            ("pm25", 9.0),
            ("pm10", 9.0),
            ("so2", 3.0),
            ("no2", 17.0),
            ("co", 300.0),
            ("o3", 89.0),
        ]
    ]
    assert {r.key for r in first} == {b"dongsi"}
    assert first[0].ts_ms == 1_362_067_200_000  # 2013-02-28T16:00Z


def test_missing_values_are_skipped_not_sent_as_zero():
    readings = [json.loads(r.value) for r in read_beijing(DONGSI)]
    assert all(isinstance(r["value"], float) for r in readings)
    assert len(readings) < 35_064 * 6  # the file has NA cells


def test_station_files_are_merged_in_event_time_order():
    files = sorted(DATA.glob("PRSA_Data_*.csv"))[:3]
    records = list(open_sources(files, since_ms=1_362_067_200_000, until_ms=1_362_096_000_000))
    assert [r.ts_ms for r in records] == sorted(r.ts_ms for r in records)
    assert len({r.key for r in records}) == 3


def test_json_lines_pass_through_byte_for_byte_even_when_broken(tmp_path):
    path = tmp_path / "readings.jsonl"
    good = b'{"station_id":"a","pollutant":"pm25","value":1,"unit":"ug/m3","ts":1000}'
    path.write_bytes(good + b"\n{broken\n\n")
    records = list(read_jsonlines(path))
    assert [(r.key, r.value) for r in records] == [(b"a", good), (None, b"{broken")]


def test_unknown_files_are_refused_with_their_name(tmp_path):
    path = tmp_path / "data.xlsx"
    path.write_bytes(b"")
    with pytest.raises(SourceError, match=r"data\.xlsx"):
        list(open_sources([path]))


def test_simulation_is_deterministic_and_exact_in_count():
    first = list(simulate_readings(stations=3, count=100, start_ms=0, seed=4))
    assert first == list(simulate_readings(stations=3, count=100, start_ms=0, seed=4))
    assert len(first) == 100
    assert len({r.key for r in first}) == 3


def test_the_example_city_marks_its_purpleair_stations_and_sensors():
    from civicstream.settings import BUNDLED_CITY

    city = load_city(BUNDLED_CITY.parent / "example-purpleair.toml")
    assert city.purpleair_stations() == {"oak-park"}
    assert city.purpleair_sensors() == {"pa-77310"}
    assert city.stations["downtown"].sensor_type == "reference"
    assert city.standard_offset_ms == -8 * 3_600_000  # Pacific standard time, all year


def test_the_beijing_city_has_no_low_cost_sensors_and_utc_plus_8():
    city = load_city(BUNDLED_CITY)
    assert city.purpleair_stations() == set() and city.purpleair_sensors() == set()
    assert city.standard_offset_ms == 8 * 3_600_000


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('[city]\ntimezone = "Europe/Atlantis"\n', "not an IANA time zone"),
        (
            '[[stations]]\nid = "x"\nlat = 1\nlon = 2\nsensor_type = "cheap"\n',
            r'stations\[0\]\.sensor_type: unknown sensor type "cheap"',
        ),
        ('[[sensors]]\nid = "s"\ntype = "other"\n', r"sensors\[0\]\.type: unknown sensor type"),
    ],
)
def test_a_bad_city_file_is_refused_with_what_is_wrong(tmp_path, text, match):
    path = tmp_path / "city.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_city(path)
