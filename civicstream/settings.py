"""Configuration: environment variables over the city configuration file over defaults.

Every component reads its settings here, once, at start-up. The names are a contract
(see the README's configuration table).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

if TYPE_CHECKING:
    from streams.incident_state import IncidentSource
    from streams.neighbourhood import NeighbourConfig

__all__ = [
    "BUNDLED_CITIES",
    "City",
    "ConfigError",
    "Settings",
    "Station",
    "bundled_city_file",
    "bundled_incident_source",
    "load_city",
    "parse_duration_ms",
]

BUNDLED_CITIES = Path(__file__).resolve().parent / "cities"
BUNDLED_CITY = BUNDLED_CITIES / "beijing.toml"

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


class ConfigError(ValueError):
    """A setting has a value that cannot be used; the message names the setting."""


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
    (civicstream/site.py), which has defaults for every key.
    """

    name: str
    timezone: str
    stations: Mapping[str, Station] = field(default_factory=dict)
    publisher: Mapping[str, Any] = field(default_factory=dict)
    map: Mapping[str, Any] = field(default_factory=dict)
    sensors: Mapping[str, str] = field(default_factory=dict)
    """sensor_id → sensor type, for sensors whose type differs from their station's."""
    incident_sources: Mapping[str, IncidentSource] = field(default_factory=dict)
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


def _sensor_type(value: object, where: str, path: Path) -> str:
    if value not in SENSOR_TYPES:
        msg = f"CIVIC_CONFIG: {path}: {where} has type {value!r}; expected one of {SENSOR_TYPES}"
        raise ConfigError(msg)
    return str(value)


def load_city(path: Path) -> City:
    """Read a city TOML file (see civicstream/cities/beijing.toml for the format, and
    civicstream/cities/example-purpleair.toml for low-cost sensors and
    san_francisco.toml for incident sources)."""
    try:
        with path.open("rb") as handle:
            raw = tomllib.load(handle)
    except FileNotFoundError:
        msg = f"CIVIC_CONFIG: no city configuration file at {path}"
        raise ConfigError(msg) from None
    except tomllib.TOMLDecodeError as error:
        msg = f"CIVIC_CONFIG: {path} is not valid TOML: {error}"
        raise ConfigError(msg) from None
    city = raw.get("city", {})
    stations = {
        entry["id"]: Station(
            entry["id"],
            entry.get("name", entry["id"]),
            entry["lat"],
            entry["lon"],
            _sensor_type(entry.get("sensor_type", "reference"), f"station {entry['id']}", path),
        )
        for entry in raw.get("stations", [])
    }
    timezone = city.get("timezone", "UTC")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        msg = f"{path}: [city] timezone {timezone!r} is not an IANA time zone (America/New_York)"
        raise ConfigError(msg) from None
    sensors = {
        entry["id"]: _sensor_type(entry.get("type"), f"sensor {entry['id']}", path)
        for entry in raw.get("sensors", [])
    }
    loaded = City(
        name=city.get("name", path.stem),
        timezone=timezone,
        stations=stations,
        sensors=sensors,
        publisher=raw.get("publisher", {}),
        map=raw.get("map", {}),
        incident_sources=_incident_sources(raw.get("incidents"), path, timezone),
        neighbours=_neighbours(raw.get("neighbours"), path),
    )
    try:
        loaded.standard_offset_ms  # noqa: B018 - validates the zone name early
    except ValueError as error:
        msg = f"CIVIC_CONFIG: {path}: {error}"
        raise ConfigError(msg) from None
    return loaded


# --- incident sources --------------------------------------------------------------------

_SHARED_KEYS = {"publication_delay", "allowed_lateness", "grid_metres"}
_INCIDENT_KEYS = {*_SHARED_KEYS, "sources"}
_SOURCE_KEYS = {
    *_SHARED_KEYS,
    "title",
    "default",
    "categories",
    "codes",
    "sensitive_categories",
    "sensitive_common",
    "sensitive_keywords",
}
_DEFAULT_DELAY = "72h"
_DEFAULT_LATENESS = "13w"


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        msg = f"{where} must be a table"
        raise ConfigError(msg)
    return value


def _known_keys(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        msg = f"{where}: unknown keys {unknown}; allowed: {', '.join(sorted(allowed))}"
        raise ConfigError(msg)


def _strings(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        msg = f"{where} must be a list of strings"
        raise ConfigError(msg)
    return value


def _string_map(value: Any, where: str) -> dict[str, str]:
    table = _table(value, where)
    if not all(isinstance(v, str) for v in table.values()):
        msg = f"{where} must map names to common categories (strings)"
        raise ConfigError(msg)
    return table


def _duration(value: Any, where: str) -> int:
    if not isinstance(value, str | int):
        msg = f'{where} must be a duration such as "72h" or "13w"'
        raise ConfigError(msg)
    return parse_duration_ms(str(value), name=where)


def _incident_sources(section: Any, path: Path, timezone: str) -> dict[str, IncidentSource]:
    """The `[incidents]` section: shared rules, then one table per source."""
    if section is None:
        return {}
    from processors.exceptions import InvalidRule
    from processors.privacy import DEFAULT_GRID_METRES, PrivacyRules
    from processors.taxonomy import Taxonomy
    from streams.incident_state import IncidentSource

    shared = _table(section, f"{path}: [incidents]")
    _known_keys(shared, _INCIDENT_KEYS, f"{path}: [incidents]")
    sources: dict[str, IncidentSource] = {}
    for name, spec in _table(shared.get("sources", {}), f"{path}: [incidents.sources]").items():
        where = f"{path}: [incidents.sources.{name}]"
        spec = _table(spec, where)
        _known_keys(spec, _SOURCE_KEYS, where)
        rules = {key: shared[key] for key in _SHARED_KEYS if key in shared} | {
            key: spec[key] for key in _SHARED_KEYS if key in spec
        }
        grid = rules.get("grid_metres", DEFAULT_GRID_METRES)
        if isinstance(grid, bool) or not isinstance(grid, int | float):
            msg = f"{where}: grid_metres must be a number of metres"
            raise ConfigError(msg)
        title = spec.get("title", name)
        if not isinstance(title, str):
            msg = f"{where}: title must be a string"
            raise ConfigError(msg)
        try:
            taxonomy = Taxonomy(
                categories=_string_map(spec.get("categories", {}), f"{where} categories"),
                code_prefixes=_string_map(spec.get("codes", {}), f"{where} codes"),
                default=spec.get("default", "other"),
            )
            privacy = PrivacyRules(
                grid_metres=float(grid),
                publication_delay_ms=_duration(
                    rules.get("publication_delay", _DEFAULT_DELAY), f"{where} publication_delay"
                ),
                sensitive_categories=frozenset(
                    _strings(spec.get("sensitive_categories", []), f"{where} sensitive_categories")
                ),
                sensitive_common=frozenset(
                    _strings(spec.get("sensitive_common", []), f"{where} sensitive_common")
                ),
                sensitive_keywords=tuple(
                    _strings(spec.get("sensitive_keywords", []), f"{where} sensitive_keywords")
                ),
            )
        except InvalidRule as error:
            msg = f"{where}: {error}"
            raise ConfigError(msg) from None
        sources[name] = IncidentSource(
            name=name,
            title=title,
            timezone=timezone,
            taxonomy=taxonomy,
            privacy=privacy,
            allowed_lateness_ms=_duration(
                rules.get("allowed_lateness", _DEFAULT_LATENESS), f"{where} allowed_lateness"
            ),
        )
    return sources


_NEIGHBOUR_KEYS = {"enabled", "radius_km", "max_neighbours", "min_neighbours", "area_km", "wait"}


def _neighbours(section: Any, path: Path) -> NeighbourConfig | None:
    """The `[neighbours]` section: the neighbour check (streams.neighbourhood)."""
    if section is None:
        return None
    from streams.neighbourhood import NeighbourConfig

    where = f"{path}: [neighbours]"
    table = _table(section, where)
    _known_keys(table, _NEIGHBOUR_KEYS, where)
    defaults = NeighbourConfig()
    enabled = table.get("enabled", defaults.enabled)
    if not isinstance(enabled, bool):
        msg = f"{where} enabled must be true or false"
        raise ConfigError(msg)
    numbers: dict[str, float] = {}
    for key in ("radius_km", "max_neighbours", "min_neighbours", "area_km"):
        value = table.get(key, getattr(defaults, key))
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            msg = f"{where} {key} must be a non-negative number"
            raise ConfigError(msg)
        numbers[key] = value
    for key in ("max_neighbours", "min_neighbours"):
        if numbers[key] != int(numbers[key]):
            msg = f"{where} {key} must be a whole number"
            raise ConfigError(msg)
    config = NeighbourConfig(
        enabled=enabled,
        radius_km=float(numbers["radius_km"]),
        max_neighbours=int(numbers["max_neighbours"]),
        min_neighbours=int(numbers["min_neighbours"]),
        area_km=float(numbers["area_km"]),
        wait_ms=_duration(table["wait"], f"{where} wait") if "wait" in table else defaults.wait_ms,
    )
    try:
        config.rules  # noqa: B018 - validates radius and neighbour counts early
    except ValueError as error:
        msg = f"{where}: {error}"
        raise ConfigError(msg) from None
    return config


def bundled_city_file(source: str) -> Path | None:
    """The bundled city file (civicstream/cities) that declares incident source `source`."""
    for path in sorted(BUNDLED_CITIES.glob("*.toml")):
        if source in load_city(path).incident_sources:
            return path
    return None


def bundled_incident_source(name: str) -> IncidentSource | None:
    """The source called `name` in one of the bundled city files."""
    path = bundled_city_file(name)
    return load_city(path).incident_sources[name] if path is not None else None


@dataclass(frozen=True)
class Settings:
    """Everything a civicstream process needs to know, resolved once."""

    kafka_bootstrap: str = "127.0.0.1:9092"
    store_url: str = "sqlite:///data/civicstream.db"
    config_path: Path = BUNDLED_CITY
    more_configs: tuple[Path, ...] = ()
    allowed_lateness_ms: int = 10 * 60_000
    topic_prefix: str = ""
    partitions: int = 4
    metrics_port: int = 0
    batch_max: int = 2000
    stale_after_ms: int = 2 * 3_600_000
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    public_url: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from CIVIC_* environment variables, defaults for the rest."""
        env = os.environ if environ is None else environ
        defaults = cls()
        lateness = env.get("CIVIC_ALLOWED_LATENESS")
        stale_after = env.get("CIVIC_STALE_AFTER")
        # CIVIC_CONFIG may list several city files (separated like PATH): the first is the
        # city of the air-quality stations; incident sources come from all of them.
        configs = [Path(p.strip()) for p in env.get("CIVIC_CONFIG", "").split(os.pathsep)]
        configs = [p for p in configs if str(p) not in ("", ".")] or [defaults.config_path]
        return cls(
            kafka_bootstrap=env.get("CIVIC_KAFKA_BOOTSTRAP") or defaults.kafka_bootstrap,
            store_url=env.get("CIVIC_STORE_URL") or defaults.store_url,
            config_path=configs[0],
            more_configs=tuple(configs[1:]),
            allowed_lateness_ms=(
                parse_duration_ms(lateness, name="CIVIC_ALLOWED_LATENESS")
                if lateness
                else defaults.allowed_lateness_ms
            ),
            topic_prefix=env.get("CIVIC_TOPIC_PREFIX", defaults.topic_prefix),
            partitions=_positive_int(env, "CIVIC_PARTITIONS", defaults.partitions),
            metrics_port=_positive_int(env, "CIVIC_METRICS_PORT", defaults.metrics_port, zero=True),
            batch_max=_positive_int(env, "CIVIC_BATCH_MAX", defaults.batch_max),
            stale_after_ms=(
                parse_duration_ms(stale_after, name="CIVIC_STALE_AFTER")
                if stale_after
                else defaults.stale_after_ms
            ),
            api_host=env.get("CIVIC_API_HOST") or defaults.api_host,
            api_port=_positive_int(env, "CIVIC_API_PORT", defaults.api_port),
            public_url=env.get("CIVIC_PUBLIC_URL") or None,
        )

    def city(self) -> City:
        """The city configuration this process runs for (the first CIVIC_CONFIG file)."""
        return load_city(self.config_path)

    @property
    def config_paths(self) -> tuple[Path, ...]:
        """Every city file of CIVIC_CONFIG, the first one first."""
        return (self.config_path, *self.more_configs)

    def cities(self) -> list[City]:
        """Every city file of CIVIC_CONFIG, the first one first."""
        return [load_city(path) for path in (self.config_path, *self.more_configs)]

    def incident_sources(self) -> dict[str, IncidentSource]:
        """The incident sources of every configured city; a name may be declared once."""
        sources: dict[str, IncidentSource] = {}
        for path in (self.config_path, *self.more_configs):
            for name, source in load_city(path).incident_sources.items():
                if name in sources:
                    msg = f"CIVIC_CONFIG: incident source {name!r} is declared twice ({path})"
                    raise ConfigError(msg)
                sources[name] = source
        return sources


def _positive_int(env: Mapping[str, str], name: str, default: int, *, zero: bool = False) -> int:
    text = env.get(name)
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0 or (value == 0 and not zero):
        msg = f"{name}={text!r} must be a {'non-negative' if zero else 'positive'} integer"
        raise ConfigError(msg)
    return value
