"""The city configuration file (TOML): its one validator, and the `City` it describes.

`check_city` walks a parsed file once and collects every problem it finds, each with the
path of the offending value (``stations[2].lat``, ``incidents.sources.sfpd.categories.
"Larceny Theft"``), instead of stopping at the first. Both users of a city file go through
it: `load_city` (every process at start-up: any problem is a `ConfigError`) and
``civicstream config check`` (prints them all). Domain rules are not restated here: the
common incident categories and the privacy rules are checked by the `processors` classes
that use them (`processors.taxonomy.severity`, `PrivacyRules`), the time zone by
`streams.time.standard_offset_ms`.

See civicstream/cities/beijing.toml for the format, example-purpleair.toml for low-cost
sensors, san_francisco.toml for incident sources.
"""

from __future__ import annotations

import difflib
import json
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from schemas.topics import SINGLE_PARTITION, Topics

if TYPE_CHECKING:
    from streams.incident_state import IncidentSource
    from streams.neighbourhood import NeighbourConfig

__all__ = [
    "SENSOR_TYPES",
    "City",
    "CityCheck",
    "ConfigError",
    "Problem",
    "Station",
    "check_city",
    "load_city",
    "parse_duration_ms",
    "read_city",
]


class ConfigError(ValueError):
    """A setting has a value that cannot be used; the message names the setting."""

    def __init__(self, message: str, problems: tuple[Problem, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems


# --- durations ---------------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d|w)?\s*$")
_ISO_DURATION = re.compile(
    r"^P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$"
)
_UNIT_MS = {
    "ms": 1,
    "s": 1000,
    None: 1000,
    "m": 60_000,
    "min": 60_000,
    "h": 3_600_000,
    "d": 86_400_000,
    "w": 604_800_000,
}


def parse_duration_ms(text: str, *, name: str) -> int:
    """Milliseconds from '600', '600s', '10m', '1h', '3d', '13w', '250ms' or ISO 8601 'PT10M'."""
    match = _DURATION.match(text)
    if match:
        return round(float(match.group(1)) * _UNIT_MS[match.group(2)])
    iso = _ISO_DURATION.match(text.strip().upper())
    if iso and any(iso.groups()):
        weeks, days, hours, minutes, seconds = iso.groups()
        whole = ((int(weeks or 0) * 7 + int(days or 0)) * 24 + int(hours or 0)) * 60
        return round(((whole + int(minutes or 0)) * 60 + float(seconds or 0)) * 1000)
    msg = f"{name}={text!r} is not a duration (examples: 600, 10m, 1h, 3d, PT10M)"
    raise ConfigError(msg)


# --- what a city file describes ----------------------------------------------------------

SENSOR_TYPES = ("reference", "purpleair")
"""``reference``: a regulatory-grade instrument, used as it reads; ``purpleair``: a low-cost
PurpleAir sensor whose PM2.5 gets EPA's US-wide correction (processors.purpleair)."""


@dataclass(frozen=True)
class Station:
    """A monitoring station of the city."""

    station_id: str
    name: str
    lat: float
    lon: float
    sensor_type: str = "reference"
    """The type of every sensor of the station, unless `City.sensors` says otherwise."""


@dataclass(frozen=True)
class City:
    """The city configuration file: who publishes, where, in which time zone.

    `publisher` is its ``[publisher]`` table (name, contact_name, contact_email, license,
    homepage; bureau_code and program_code for US federal publishers only) and `map` its
    ``[map]`` table (tiles, attribution): both read by ``civicstream serve``
    (civicstream/site.py), which has defaults for every key. `topic_partitions` are the
    ``[topics] partitions`` by topic name without namespace (``civic.raw.air-quality``),
    `default_partitions` the count for the topics it does not name (None: not set).
    """

    name: str
    timezone: str
    stations: Mapping[str, Station] = field(default_factory=dict)
    publisher: Mapping[str, Any] = field(default_factory=dict)
    map: Mapping[str, Any] = field(default_factory=dict)
    sensors: Mapping[str, str] = field(default_factory=dict)
    """sensor_id → sensor type, for sensors whose type differs from their station's."""
    incident_sources: Mapping[str, IncidentSource] = field(default_factory=dict)
    topic_partitions: Mapping[str, int] = field(default_factory=dict)
    default_partitions: int | None = None
    neighbours: NeighbourConfig | None = None
    """The ``[neighbours]`` table (the neighbour check); None: the defaults."""

    @property
    def standard_offset_ms(self) -> int:
        """The time zone's standard UTC offset: the daily AQI's local standard time."""
        from streams.time import standard_offset_ms

        return standard_offset_ms(self.timezone)

    def purpleair_stations(self) -> frozenset[str]:
        stations = self.stations.values()
        return frozenset(s.station_id for s in stations if s.sensor_type == "purpleair")

    def purpleair_sensors(self) -> frozenset[str]:
        return frozenset(sensor for sensor, kind in self.sensors.items() if kind == "purpleair")


# --- problems and paths ------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a city file: where (a TOML path, '' for the file) and what."""

    path: str
    message: str

    def describe(self, file: Path | str) -> str:
        return f"{file}: {self.path}: {self.message}" if self.path else f"{file}: {self.message}"


@dataclass(frozen=True)
class CityCheck:
    """What `check_city` found: the city when the file is valid, else its problems."""

    file: Path
    city: City | None
    problems: tuple[Problem, ...]

    def messages(self) -> list[str]:
        return [problem.describe(self.file) for problem in self.problems]


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
Part = str | int


def toml_path(parts: tuple[Part, ...]) -> str:
    """``('incidents', 'sources', 'sfpd', 'categories', 'Larceny Theft')`` →
    ``incidents.sources.sfpd.categories."Larceny Theft"``; an int is an array index."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            key = part if _BARE_KEY.match(part) else json.dumps(part, ensure_ascii=False)
            text += f".{key}" if text else key
    return text


def _type_name(value: object) -> str:
    kinds: tuple[tuple[type | tuple[type, ...], str], ...] = (
        (bool, "a boolean"),
        (int, "an integer"),
        (float, "a float"),
        (str, "a string"),
        (list, "an array"),
        (dict, "a table"),
        (datetime, "a date-time"),
        (date, "a date"),
        (time, "a time"),
    )
    for kind, name in kinds:
        if isinstance(value, kind):
            return name
    return type(value).__name__


def _shown(value: object) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return _type_name(value)
    return str(value)


# --- the validator -----------------------------------------------------------------------

# The keys each table may hold.
_CITY_KEYS = ("name", "timezone")
_STATION_KEYS = ("id", "name", "lat", "lon", "sensor_type")
_SENSOR_KEYS = ("id", "station", "type")
_PUBLISHER_TEXT = ("name", "contact_name", "contact_email", "license", "homepage")
_PUBLISHER_CODES = ("bureau_code", "program_code")
_MAP_KEYS = ("tiles", "attribution")
_TOPICS_KEYS = ("partitions",)
_SHARED_INCIDENT_KEYS = ("publication_delay", "allowed_lateness", "grid_metres")
_INCIDENT_KEYS = (*_SHARED_INCIDENT_KEYS, "sources")
_SOURCE_KEYS = (
    *_SHARED_INCIDENT_KEYS,
    "title",
    "default",
    "categories",
    "codes",
    "sensitive_categories",
    "sensitive_common",
    "sensitive_keywords",
)
_TOP_KEYS = (
    "city",
    "stations",
    "sensors",
    "publisher",
    "map",
    "topics",
    "incidents",
    "neighbours",
)
_NEIGHBOUR_KEYS = ("enabled", "radius_km", "max_neighbours", "min_neighbours", "area_km", "wait")
_DEFAULT_DELAY = "72h"
_DEFAULT_LATENESS = "13w"


class _Checker:
    """Collects problems while reading a parsed city file; never raises for the file."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def fail(self, path: tuple[Part, ...], message: str) -> None:
        self.problems.append(Problem(toml_path(path), message))

    def expect(
        self, value: object, path: tuple[Part, ...], kinds: tuple[type, ...], what: str
    ) -> bool:
        """True when `value` is of `kinds` (a TOML boolean is never a number)."""
        if isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds):
            return True
        self.fail(path, f"must be {what}, not {_type_name(value)} ({_shown(value)})")
        return False

    def table(
        self,
        value: object,
        path: tuple[Part, ...],
        allowed: tuple[str, ...] | None,
        required: tuple[str, ...] = (),
    ) -> dict[str, Any] | None:
        """`value` as a table whose keys are `allowed` (None: any) and hold `required`."""
        if not self.expect(value, path, (dict,), "a table"):
            return None
        assert isinstance(value, dict)
        for key in value if allowed is not None else ():
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f' (did you mean "{close[0]}"?)' if close else ""
                self.fail((*path, key), f"unknown key{hint}; allowed: {', '.join(allowed)}")
        for key in required:
            if key not in value:
                self.fail((*path, key), "missing (required)")
        return value

    def text(self, table: Mapping[str, Any], key: str, path: tuple[Part, ...]) -> str | None:
        """A non-empty string at `key`, if present and valid."""
        if key not in table:
            return None
        value = table[key]
        if not self.expect(value, (*path, key), (str,), "a string"):
            return None
        if not value.strip():
            self.fail((*path, key), "must not be empty")
            return None
        return str(value)

    def number(
        self, table: Mapping[str, Any], key: str, path: tuple[Part, ...], low: float, high: float
    ) -> float | None:
        if key not in table:
            return None
        value = table[key]
        if not self.expect(value, (*path, key), (int, float), "a number"):
            return None
        if not low <= value <= high:
            self.fail((*path, key), f"{value} is out of range ({low:g} .. {high:g})")
            return None
        return float(value)

    def strings(self, table: Mapping[str, Any], key: str, path: tuple[Part, ...]) -> list[str]:
        value = table.get(key, [])
        if not self.expect(value, (*path, key), (list,), "an array of strings"):
            return []
        valid = []
        for index, item in enumerate(value):
            if self.expect(item, (*path, key, index), (str,), "a string"):
                valid.append(item)
        return valid

    def choice(
        self,
        value: object,
        path: tuple[Part, ...],
        check: Callable[[str], object],
        noun: str,
    ) -> str | None:
        """A string that `check` accepts (it raises ValueError with the reason otherwise)."""
        if not self.expect(value, path, (str,), "a string"):
            return None
        assert isinstance(value, str)
        try:
            check(value)
        except ValueError as error:
            self.fail(path, f"unknown {noun} {_shown(value)} ({_reason(error)})")
            return None
        return value

    def duration(self, value: object, path: tuple[Part, ...]) -> int | None:
        if not self.expect(value, path, (str, int), 'a duration such as "72h" or "13w"'):
            return None
        try:
            return parse_duration_ms(str(value), name=toml_path(path))
        except ConfigError:
            self.fail(path, f"{_shown(value)} is not a duration (examples: 600, 10m, 72h, 13w)")
            return None


def _reason(error: ValueError) -> str:
    """The part of a rule's message that says what is allowed ("... (violent, fire, ...)")."""
    text = str(error)
    inside = re.search(r"\(([^()]*)\)$", text)
    return inside.group(1) if inside else text


def _sensor_type(value: str) -> None:
    if value not in SENSOR_TYPES:
        raise ValueError(f"one of {', '.join(SENSOR_TYPES)}")  # noqa: EM102 - read by choice()


def _time_zone(value: str) -> None:
    from streams.time import standard_offset_ms

    try:
        standard_offset_ms(value)
    except ValueError:
        msg = "not an IANA time zone, such as America/New_York"
        raise ValueError(msg) from None


def _common_category(value: str) -> None:
    from processors.taxonomy import severity

    severity(value)  # InvalidRule (a ValueError) names the common categories


def check_city(raw: Mapping[str, Any], file: Path) -> CityCheck:
    """Validate a parsed city file; the `City` it describes if it has no problem."""
    checker = _Checker()
    top = checker.table(raw, (), _TOP_KEYS, required=("city",)) or {}

    city = checker.table(top.get("city", {}), ("city",), _CITY_KEYS, ("name", "timezone"))
    city = city or {}
    name = checker.text(city, "name", ("city",))
    timezone = None
    if "timezone" in city:
        timezone = checker.choice(city["timezone"], ("city", "timezone"), _time_zone, "time zone")

    stations = _stations(checker, top.get("stations", []))
    sensors = _sensors(checker, top.get("sensors", []), stations)
    publisher = _publisher(checker, top.get("publisher", {}))
    map_table = checker.table(top.get("map", {}), ("map",), _MAP_KEYS) or {}
    for key in _MAP_KEYS:
        checker.text(map_table, key, ("map",))
    partitions, default_partitions = _topics(checker, top.get("topics", {}))
    sources = _incident_sources(checker, top.get("incidents"), timezone or "UTC")
    neighbours = _neighbours(checker, top.get("neighbours"))

    if checker.problems or name is None or timezone is None:
        return CityCheck(file, None, tuple(checker.problems))
    loaded = City(
        name=name,
        timezone=timezone,
        stations=stations,
        sensors=sensors,
        publisher=publisher,
        map=map_table,
        incident_sources=sources,
        topic_partitions=partitions,
        default_partitions=default_partitions,
        neighbours=neighbours,
    )
    return CityCheck(file, loaded, ())


def _array_of_tables(checker: _Checker, value: object, key: str) -> list[tuple[int, Any]]:
    if not checker.expect(value, (key,), (list,), f"an array of tables ([[{key}]])"):
        return []
    assert isinstance(value, list)
    return list(enumerate(value))


def _stations(checker: _Checker, value: object) -> dict[str, Station]:
    stations: dict[str, Station] = {}
    first_index: dict[str, int] = {}
    for index, entry in _array_of_tables(checker, value, "stations"):
        path: tuple[Part, ...] = ("stations", index)
        table = checker.table(entry, path, _STATION_KEYS, ("id", "lat", "lon"))
        if table is None:
            continue
        station_id = checker.text(table, "id", path)
        name = checker.text(table, "name", path)
        lat = checker.number(table, "lat", path, -90, 90)
        lon = checker.number(table, "lon", path, -180, 180)
        kind = "reference"
        if "sensor_type" in table:
            kind = (
                checker.choice(
                    table["sensor_type"], (*path, "sensor_type"), _sensor_type, "sensor type"
                )
                or kind
            )
        if station_id is None:
            continue
        if station_id in first_index:
            checker.fail(
                (*path, "id"),
                f"duplicate station id {_shown(station_id)} "
                f"(also {toml_path(('stations', first_index[station_id]))})",
            )
            continue
        first_index[station_id] = index
        if lat is not None and lon is not None:
            stations[station_id] = Station(station_id, name or station_id, lat, lon, kind)
    return stations


def _sensors(checker: _Checker, value: object, stations: Mapping[str, Station]) -> dict[str, str]:
    sensors: dict[str, str] = {}
    for index, entry in _array_of_tables(checker, value, "sensors"):
        path: tuple[Part, ...] = ("sensors", index)
        table = checker.table(entry, path, _SENSOR_KEYS, _SENSOR_KEYS)
        if table is None:
            continue
        sensor_id = checker.text(table, "id", path)
        station = checker.text(table, "station", path)
        if station is not None and station not in stations:
            close = difflib.get_close_matches(station, list(stations), n=1)
            hint = f'; did you mean "{close[0]}"?' if close else ""
            checker.fail(
                (*path, "station"),
                f"unknown station {_shown(station)} (no [[stations]] entry has this id{hint})",
            )
        kind = None
        if "type" in table:
            kind = checker.choice(table["type"], (*path, "type"), _sensor_type, "sensor type")
        if sensor_id is not None and sensor_id in sensors:
            checker.fail((*path, "id"), f"duplicate sensor id {_shown(sensor_id)}")
        elif sensor_id is not None and kind is not None:
            sensors[sensor_id] = kind
    return sensors


def _publisher(checker: _Checker, value: object) -> dict[str, Any]:
    path: tuple[Part, ...] = ("publisher",)
    table = checker.table(value, path, (*_PUBLISHER_TEXT, *_PUBLISHER_CODES)) or {}
    for key in _PUBLISHER_TEXT:
        checker.text(table, key, path)
    email = table.get("contact_email")
    if isinstance(email, str) and email.strip() and "@" not in email:
        checker.fail((*path, "contact_email"), f"{_shown(email)} is not an e-mail address")
    for key in _PUBLISHER_CODES:
        if key in table:
            checker.strings(table, key, path)
    return table


def _positive_count(checker: _Checker, value: object, path: tuple[Part, ...]) -> int | None:
    if not checker.expect(value, path, (int,), "a positive integer"):
        return None
    assert isinstance(value, int)
    if value < 1:
        checker.fail(path, f"{value} is not a positive number of partitions")
        return None
    return value


def _topics(checker: _Checker, value: object) -> tuple[dict[str, int], int | None]:
    """``[topics] partitions = N`` (every topic) or a table by topic name (and "default")."""
    table = checker.table(value, ("topics",), _TOPICS_KEYS) or {}
    if "partitions" not in table:
        return {}, None
    path: tuple[Part, ...] = ("topics", "partitions")
    partitions = table["partitions"]
    if isinstance(partitions, int) and not isinstance(partitions, bool):
        return {}, _positive_count(checker, partitions, path)
    names = Topics().all()
    counts = checker.table(partitions, path, (*names, "default")) or {}
    default = None
    by_topic: dict[str, int] = {}
    for key, count in counts.items():
        checked = _positive_count(checker, count, (*path, key))
        if checked is None:
            continue
        if key == "default":
            default = checked
        elif key in SINGLE_PARTITION and checked != 1:
            checker.fail(
                (*path, key),
                f"must be 1 (incident statistics need one ordered stream), not {checked}",
            )
        elif key in names:
            by_topic[key] = checked
    return by_topic, default


def _neighbours(checker: _Checker, value: object) -> NeighbourConfig | None:
    """The ``[neighbours]`` table: the neighbour check (streams.neighbourhood)."""
    if value is None:
        return None
    from streams.neighbourhood import NeighbourConfig

    path: tuple[Part, ...] = ("neighbours",)
    table = checker.table(value, path, _NEIGHBOUR_KEYS)
    if table is None:
        return None
    defaults = NeighbourConfig()
    enabled = table.get("enabled", defaults.enabled)
    checker.expect(enabled, (*path, "enabled"), (bool,), "true or false")
    radius = checker.number(table, "radius_km", path, 0.001, 20_000)
    area = checker.number(table, "area_km", path, 0, 20_000)
    counts: dict[str, int] = {}
    for key in ("max_neighbours", "min_neighbours"):
        if key in table and checker.expect(table[key], (*path, key), (int,), "a whole number"):
            if table[key] < 1:
                checker.fail((*path, key), f"{table[key]} must be at least 1")
            else:
                counts[key] = table[key]
    wait = checker.duration(table["wait"], (*path, "wait")) if "wait" in table else None
    config = NeighbourConfig(
        enabled=bool(enabled),
        radius_km=defaults.radius_km if radius is None else radius,
        max_neighbours=counts.get("max_neighbours", defaults.max_neighbours),
        min_neighbours=counts.get("min_neighbours", defaults.min_neighbours),
        area_km=defaults.area_km if area is None else area,
        wait_ms=defaults.wait_ms if wait is None else wait,
    )
    try:
        config.rules  # noqa: B018 - validates radius and neighbour counts early
    except ValueError as error:
        checker.fail(path, str(error))
        return None
    return config


def _incident_sources(
    checker: _Checker, section: object, timezone: str
) -> dict[str, IncidentSource]:
    """The `[incidents]` section: shared rules, then one table per source."""
    if section is None:
        return {}
    from processors.exceptions import InvalidRule
    from processors.privacy import DEFAULT_GRID_METRES, PrivacyRules
    from processors.taxonomy import Taxonomy
    from streams.incident_state import IncidentSource

    shared = checker.table(section, ("incidents",), _INCIDENT_KEYS) or {}
    delay = checker.duration(
        shared.get("publication_delay", _DEFAULT_DELAY), ("incidents", "publication_delay")
    )
    lateness = checker.duration(
        shared.get("allowed_lateness", _DEFAULT_LATENESS), ("incidents", "allowed_lateness")
    )
    grid: float | None = DEFAULT_GRID_METRES
    if "grid_metres" in shared:
        grid = _grid(checker, shared, ("incidents",))
    sources: dict[str, IncidentSource] = {}
    specs = checker.table(shared.get("sources", {}), ("incidents", "sources"), None) or {}
    for name, spec in specs.items():
        path: tuple[Part, ...] = ("incidents", "sources", name)
        before = len(checker.problems)
        table = checker.table(spec, path, _SOURCE_KEYS)
        if table is None:
            continue
        source_delay = delay
        if "publication_delay" in table:
            source_delay = checker.duration(
                table["publication_delay"], (*path, "publication_delay")
            )
        source_lateness = lateness
        if "allowed_lateness" in table:
            source_lateness = checker.duration(
                table["allowed_lateness"], (*path, "allowed_lateness")
            )
        source_grid = grid
        if "grid_metres" in table:
            source_grid = _grid(checker, table, path)
        title = checker.text(table, "title", path) or name
        default = "other"
        if "default" in table:
            default = (
                checker.choice(table["default"], (*path, "default"), _common_category, "category")
                or default
            )
        categories = _category_map(checker, table, "categories", path)
        codes = _category_map(checker, table, "codes", path)
        sensitive_common = [
            item
            for index, item in enumerate(checker.strings(table, "sensitive_common", path))
            if checker.choice(
                item, (*path, "sensitive_common", index), _common_category, "category"
            )
        ]
        sensitive_categories = checker.strings(table, "sensitive_categories", path)
        sensitive_keywords = checker.strings(table, "sensitive_keywords", path)
        if len(checker.problems) > before or None in (source_delay, source_lateness, source_grid):
            continue
        assert source_delay is not None and source_lateness is not None
        assert source_grid is not None
        try:
            taxonomy = Taxonomy(categories=categories, code_prefixes=codes, default=default)
            privacy = PrivacyRules(
                grid_metres=source_grid,
                publication_delay_ms=source_delay,
                sensitive_categories=frozenset(sensitive_categories),
                sensitive_common=frozenset(sensitive_common),
                sensitive_keywords=tuple(sensitive_keywords),
            )
        except InvalidRule as error:
            checker.fail(path, str(error))
            continue
        sources[name] = IncidentSource(
            name=name,
            title=title,
            timezone=timezone,
            taxonomy=taxonomy,
            privacy=privacy,
            allowed_lateness_ms=source_lateness,
        )
    return sources


def _grid(checker: _Checker, table: Mapping[str, Any], path: tuple[Part, ...]) -> float | None:
    """The grid size at `path`.grid_metres, checked by the privacy rules themselves."""
    from processors.exceptions import InvalidRule
    from processors.privacy import PrivacyRules

    grid = checker.number(table, "grid_metres", path, float("-inf"), float("inf"))
    if grid is None:
        return None
    try:
        PrivacyRules(grid_metres=grid)
    except InvalidRule as error:
        checker.fail((*path, "grid_metres"), str(error))
        return None
    return grid


def _category_map(
    checker: _Checker, table: Mapping[str, Any], key: str, path: tuple[Part, ...]
) -> dict[str, str]:
    """A source's mapping table: its category names (or code prefixes) → common categories."""
    mapping = checker.table(table.get(key, {}), (*path, key), None) or {}
    valid = {}
    for name, common in mapping.items():
        if checker.choice(common, (*path, key, name), _common_category, "category"):
            valid[name] = common
    return valid


# --- reading a file ----------------------------------------------------------------------


def read_city(path: Path) -> CityCheck:
    """Parse and check the city file at `path` (a missing or unparsable file is a problem)."""
    try:
        with path.open("rb") as handle:
            raw = tomllib.load(handle)
    except FileNotFoundError:
        return CityCheck(path, None, (Problem("", "no such file"),))
    except IsADirectoryError:
        return CityCheck(path, None, (Problem("", "is a directory, not a city file"),))
    except tomllib.TOMLDecodeError as error:
        return CityCheck(path, None, (Problem("", f"not valid TOML: {error}"),))
    return check_city(raw, path)


def load_city(path: Path) -> City:
    """The city of the file at `path`; ConfigError listing every problem otherwise."""
    checked = read_city(path)
    if checked.city is None:
        if checked.problems[0].message == "no such file":
            msg = f"CIVIC_CONFIG: no city configuration file at {path}"
        else:
            msg = "\n".join(checked.messages())
        raise ConfigError(msg, checked.problems)
    return checked.city
