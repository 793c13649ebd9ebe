"""City configuration files: `civicstream config check` and `load_city` share one validator.

Every problem is reported, each with its file and the TOML path of the offending value.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from civicstream.city import read_city
from civicstream.cli import main
from civicstream.settings import BUNDLED_CITIES, ConfigError, Settings, load_city
from schemas import Topics

VALID = """\
[city]
name = "Testville"
timezone = "Europe/Zurich"

[[stations]]
id = "north"
name = "North"
lat = 47.4
lon = 8.5

[[stations]]
id = "south"
lat = 47.3
lon = 8.6
sensor_type = "purpleair"
"""


def write(tmp_path: Path, text: str, name: str = "city.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def check(capsys: pytest.CaptureFixture[str], *paths: Path) -> tuple[int, list[str]]:
    """Run `civicstream config check PATHS`: exit status and printed lines."""
    status = main(["config", "check", *map(str, paths)])
    return status, capsys.readouterr().out.splitlines()


def test_every_bundled_city_file_passes_the_check(capsys):
    files = sorted(BUNDLED_CITIES.glob("*.toml"))
    assert len(files) >= 4
    status, lines = check(capsys, *files)
    assert status == 0
    assert [line.split(": ok: ")[0] for line in lines] == [str(f) for f in files]
    assert (
        f"{BUNDLED_CITIES / 'beijing.toml'}: ok: Beijing, Asia/Shanghai (standard time UTC+8); "
        "12 stations, 0 sensors; incident sources: none"
    ) in lines


def test_a_valid_file_gets_a_summary_of_what_it_declares(tmp_path, capsys):
    status, lines = check(capsys, write(tmp_path, VALID))
    assert status == 0
    assert lines == [
        f"{tmp_path / 'city.toml'}: ok: Testville, Europe/Zurich (standard time UTC+1); "
        "2 stations (1 PurpleAir), 0 sensors; incident sources: none"
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # wrong type
        ('[city]\nname = 3\ntimezone = "UTC"\n', "city.name: must be a string, not an integer (3)"),
        (
            VALID.replace("lon = 8.5", 'lon = "8.5"'),
            'stations[0].lon: must be a number, not a string ("8.5")',
        ),
        (VALID + "[publisher]\nname = true\n", "publisher.name: must be a string, not a boolean"),
        (
            'stations = 3\n[city]\nname = "T"\ntimezone = "UTC"\n',
            "stations: must be an array of tables ([[stations]]), not an integer (3)",
        ),
        # unknown keys, everywhere
        (VALID.replace("[city]", 'colour = "red"\n[city]'), "colour: unknown key; allowed: city,"),
        (VALID.replace('name = "Testville"', 'name = "T"\nmayor = "x"'), "city.mayor: unknown key"),
        (
            VALID.replace("lon = 8.5", "lng = 8.5"),
            'stations[0].lng: unknown key (did you mean "lon"?)',
        ),
        (
            VALID
            + '[[sensors]]\nid = "s"\nstation = "north"\ntype = "purpleair"\nmodel = "PA-II"\n',
            "sensors[0].model: unknown key",
        ),
        (
            VALID + '[publisher]\nlicence = "CC0"\n',
            'publisher.licence: unknown key (did you mean "license"?)',
        ),
        (VALID + '[map]\ntile = "x"\n', 'map.tile: unknown key (did you mean "tiles"?)'),
        (VALID + "[topics]\nreplicas = 3\n", "topics.replicas: unknown key"),
        (VALID + "[incidents.sources.x]\ncolour = 1\n", "incidents.sources.x.colour: unknown key"),
        # unknown station in a mapping
        (
            VALID + '[[sensors]]\nid = "s"\nstation = "nort"\ntype = "purpleair"\n',
            'sensors[0].station: unknown station "nort" (no [[stations]] entry has this id; '
            'did you mean "north"?)',
        ),
        # bad time zone
        (
            VALID.replace("Europe/Zurich", "Europe/Atlantis"),
            'city.timezone: unknown time zone "Europe/Atlantis" (not an IANA time zone',
        ),
        # missing required keys
        (VALID.replace('timezone = "Europe/Zurich"\n', ""), "city.timezone: missing (required)"),
        ("[[stations]]\nid = 'x'\nlat = 1\nlon = 2\n", "city: missing (required)"),
        (VALID.replace("lat = 47.3\n", ""), "stations[1].lat: missing (required)"),
        (VALID + '[[sensors]]\nid = "s"\nstation = "north"\n', "sensors[0].type: missing"),
        # duplicate station ids
        (
            VALID.replace('id = "south"', 'id = "north"'),
            'stations[1].id: duplicate station id "north" (also stations[0])',
        ),
        # coordinates out of range
        (VALID.replace("lat = 47.4", "lat = 147.4"), "stations[0].lat: 147.4 is out of range"),
        (VALID.replace("lon = 8.6", "lon = -181"), "stations[1].lon: -181 is out of range"),
        # incident mappings and rules
        (
            VALID + '[incidents.sources.sfpd.categories]\n"Larceny Theft" = "thef"\n',
            'incidents.sources.sfpd.categories."Larceny Theft": unknown category "thef" '
            "(violent, fire, ems,",
        ),
        (
            VALID + "[incidents]\npublication_delay = 'soon'\n",
            'incidents.publication_delay: "soon" is not a duration',
        ),
        # topic partitions
        (
            VALID + '[topics.partitions]\n"civic.raw.incidents" = 4\n',
            'topics.partitions."civic.raw.incidents": must be 1',
        ),
        (VALID + "[topics]\npartitions = 0\n", "topics.partitions: 0 is not a positive number"),
        # not TOML at all
        ("[city\nname = 1\n", "not valid TOML: "),
    ],
)
def test_each_kind_of_error_names_the_file_and_the_path(tmp_path, capsys, text, expected):
    path = write(tmp_path, text)
    status, lines = check(capsys, path)
    assert status == 1
    assert any(line.startswith(f"{path}: {expected}") for line in lines), lines
    with pytest.raises(ConfigError) as refused:  # the worker refuses the file just the same
        load_city(path)
    assert refused.value.problems == read_city(path).problems


def test_every_problem_is_reported_not_only_the_first(tmp_path, capsys):
    path = write(
        tmp_path,
        VALID.replace("Europe/Zurich", "Mars/Olympus")
        .replace("lat = 47.4", "lat = 99")
        .replace('id = "south"', 'id = "north"')
        + '[[sensors]]\nid = "s"\nstation = "east"\ntype = "cheap"\n'
        + '[incidents.sources.x.categories]\nA = "a"\nB = "b"\n',
    )
    status, lines = check(capsys, path)
    assert status == 1
    assert [line.removeprefix(f"{path}: ").split(":")[0] for line in lines] == [
        "city.timezone",
        "stations[0].lat",
        "stations[1].id",
        "sensors[0].station",
        "sensors[0].type",
        "incidents.sources.x.categories.A",
        "incidents.sources.x.categories.B",
    ]
    with pytest.raises(ConfigError) as refused:
        load_city(path)
    assert str(refused.value).splitlines() == lines


def test_files_are_checked_together_and_a_missing_one_is_a_problem(tmp_path, capsys):
    sf = BUNDLED_CITIES / "san_francisco.toml"
    status, lines = check(capsys, sf, write(tmp_path, VALID), sf, tmp_path / "nowhere.toml")
    assert status == 1
    assert f'{sf}: incidents.sources.sfpd: incident source "sfpd" is also declared in {sf}' in (
        lines
    )
    assert f"{tmp_path / 'nowhere.toml'}: no such file" in lines
    assert sum(": ok: " in line for line in lines) == 2


def test_the_worker_still_names_a_missing_city_file(tmp_path):
    with pytest.raises(ConfigError, match="CIVIC_CONFIG: no city configuration file at"):
        load_city(tmp_path / "gone.toml")


# -- topic partitions -----------------------------------------------------------------------


def test_topic_partitions_come_from_the_city_file_then_the_environment(tmp_path):
    path = write(
        tmp_path,
        VALID + '[topics.partitions]\n"civic.raw.air-quality" = 12\ndefault = 6\n',
    )
    topics = Topics("ns.")
    from_file = Settings.from_env({"CIVIC_CONFIG": str(path)}).topic_partitions(topics)
    assert from_file[topics.raw_air_quality] == 12
    assert from_file[topics.aqi_hourly] == 6  # the file's default
    assert from_file[topics.raw_incidents] == 1  # always one
    env = Settings.from_env({"CIVIC_CONFIG": str(path), "CIVIC_PARTITIONS": "3"})
    counts = env.topic_partitions(topics)
    assert (counts[topics.raw_air_quality], counts[topics.aqi_hourly]) == (12, 3)
    option = env.topic_partitions(topics, partitions=8)  # --partitions: every topic
    assert (option[topics.raw_air_quality], option[topics.aqi_hourly]) == (8, 8)
    assert option[topics.raw_incidents] == 1


def test_without_a_topics_table_every_topic_gets_civic_partitions(tmp_path):
    settings = Settings.from_env({"CIVIC_CONFIG": str(write(tmp_path, VALID))})
    counts = settings.topic_partitions(Topics())
    assert set(counts.values()) == {4, 1}
    single = write(tmp_path, VALID + "[topics]\npartitions = 2\n", "two.toml")
    counts = Settings.from_env({"CIVIC_CONFIG": str(single)}).topic_partitions(Topics())
    assert set(counts.values()) == {2, 1}


# -- the worker's state store settings ------------------------------------------------------


def test_the_state_store_is_memory_unless_rocksdb_is_asked_for():
    default = Settings.from_env({})
    assert (default.state_store, default.state_dir, default.standby_replicas) == (
        "memory",
        Path("data/state"),
        1,
    )
    rocks = Settings.from_env(
        {
            "CIVIC_STATE_STORE": "rocksdb",
            "CIVIC_STATE_DIR": "/var/lib/civicstream/state",
            "CIVIC_STANDBY_REPLICAS": "0",
        }
    )
    assert (rocks.state_store, rocks.state_dir, rocks.standby_replicas) == (
        "rocksdb",
        Path("/var/lib/civicstream/state"),
        0,
    )
    # one directory per namespace: a replay's worker never opens the live worker's tables
    assert rocks.state_path(Topics("replay-x.")) == Path(
        "/var/lib/civicstream/state/replay-x.civicstream-air-quality"
    )
    with pytest.raises(
        ConfigError, match="CIVIC_STATE_STORE='redis' must be one of memory, rocksdb"
    ):
        Settings.from_env({"CIVIC_STATE_STORE": "redis"})
    with pytest.raises(ConfigError, match="CIVIC_STANDBY_REPLICAS"):
        Settings.from_env({"CIVIC_STANDBY_REPLICAS": "-1"})
