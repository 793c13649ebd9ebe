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
from typing import Any

__all__ = ["City", "ConfigError", "Settings", "Station", "load_city", "parse_duration_ms"]

BUNDLED_CITY = Path(__file__).resolve().parent / "cities" / "beijing.toml"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h)?\s*$")
_ISO_DURATION = re.compile(r"^P(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)$")
_UNIT_MS = {"ms": 1, "s": 1000, None: 1000, "m": 60_000, "min": 60_000, "h": 3_600_000}


class ConfigError(ValueError):
    """A setting has a value that cannot be used; the message names the setting."""


def parse_duration_ms(text: str, *, name: str) -> int:
    """Milliseconds from '600', '600s', '10m', '1h', '250ms' or ISO 8601 'PT10M'."""
    match = _DURATION.match(text)
    if match:
        return round(float(match.group(1)) * _UNIT_MS[match.group(2)])
    iso = _ISO_DURATION.match(text.strip().upper())
    if iso and any(iso.groups()):
        hours, minutes, seconds = iso.groups()
        return round((int(hours or 0) * 3600 + int(minutes or 0) * 60 + float(seconds or 0)) * 1000)
    msg = f"{name}={text!r} is not a duration (examples: 600, 10m, 1h, PT10M)"
    raise ConfigError(msg)


@dataclass(frozen=True)
class Station:
    """A monitoring station of the city."""

    station_id: str
    name: str
    lat: float
    lon: float


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


def load_city(path: Path) -> City:
    """Read a city TOML file (see civicstream/cities/beijing.toml for the format)."""
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
            entry["id"], entry.get("name", entry["id"]), entry["lat"], entry["lon"]
        )
        for entry in raw.get("stations", [])
    }
    return City(
        name=city.get("name", path.stem),
        timezone=city.get("timezone", "UTC"),
        stations=stations,
        publisher=raw.get("publisher", {}),
        map=raw.get("map", {}),
    )


@dataclass(frozen=True)
class Settings:
    """Everything a civicstream process needs to know, resolved once."""

    kafka_bootstrap: str = "127.0.0.1:9092"
    store_url: str = "sqlite:///data/civicstream.db"
    config_path: Path = BUNDLED_CITY
    allowed_lateness_ms: int = 10 * 60_000
    topic_prefix: str = ""
    partitions: int = 4
    metrics_port: int = 0
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
        return cls(
            kafka_bootstrap=env.get("CIVIC_KAFKA_BOOTSTRAP") or defaults.kafka_bootstrap,
            store_url=env.get("CIVIC_STORE_URL") or defaults.store_url,
            config_path=Path(env.get("CIVIC_CONFIG") or defaults.config_path),
            allowed_lateness_ms=(
                parse_duration_ms(lateness, name="CIVIC_ALLOWED_LATENESS")
                if lateness
                else defaults.allowed_lateness_ms
            ),
            topic_prefix=env.get("CIVIC_TOPIC_PREFIX", defaults.topic_prefix),
            partitions=_positive_int(env, "CIVIC_PARTITIONS", defaults.partitions),
            metrics_port=_positive_int(env, "CIVIC_METRICS_PORT", defaults.metrics_port, zero=True),
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
        """The city configuration this process runs for."""
        return load_city(self.config_path)


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
