"""The API's view of the city (`sinks.api.Site`), from the settings and the city file.

AQI categories, their ranges and EPA colours come from `processors.aqi` (one source of
truth); the health guidance per category is EPA's (AirNow, "AQI Basics", the table of
what each category means). Publisher, contact and licence come from the city file's
``[publisher]`` table, with defaults that produce a valid catalog.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from civicstream.settings import City, ConfigError, Settings
from processors import aqi
from sinks.api import Category, Place, Publisher, Site

__all__ = ["GUIDANCE", "build_site", "categories"]

# EPA, AirNow "AQI Basics": what each category means for health.
GUIDANCE: Mapping[str, str] = {
    "Good": "Air quality is satisfactory, and air pollution poses little or no risk.",
    "Moderate": (
        "Air quality is acceptable. However, there may be a risk for some people, "
        "particularly those who are unusually sensitive to air pollution."
    ),
    "Unhealthy for Sensitive Groups": (
        "Members of sensitive groups may experience health effects. The general public is "
        "less likely to be affected."
    ),
    "Unhealthy": (
        "Some members of the general public may experience health effects; members of "
        "sensitive groups may experience more serious health effects."
    ),
    "Very Unhealthy": "Health alert: The risk of health effects is increased for everyone.",
    "Hazardous": (
        "Health warning of emergency conditions: everyone is more likely to be affected."
    ),
}


def categories() -> tuple[Category, ...]:
    """The EPA categories with their AQI ranges, colours and guidance."""
    ranges: dict[str, list[int]] = {}
    for value in range(0, 501):
        ranges.setdefault(aqi.category(value), [value, value])[1] = value
    result = []
    for name in aqi.CATEGORIES:
        low, high = ranges[name]
        top = None if name == aqi.CATEGORIES[-1] else high
        result.append(Category(name, low, top, aqi.CATEGORY_COLORS[name], GUIDANCE[name]))
    return tuple(result)


def _text(table: Mapping[str, Any], key: str, default: str | None) -> str | None:
    value = table.get(key, default)
    if value is not None and (not isinstance(value, str) or not value.strip()):
        msg = f"CIVIC_CONFIG [publisher] {key} must be a non-empty string"
        raise ConfigError(msg)
    return value


def _codes(table: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        msg = f"CIVIC_CONFIG [publisher] {key} must be a list of strings"
        raise ConfigError(msg)
    return tuple(value)


def publisher(city: City) -> Publisher:
    table = city.publisher
    defaults = Publisher(name=f"{city.name} open data")
    email = _text(table, "contact_email", defaults.contact_email)
    if email is not None and "@" not in email:
        msg = f"CIVIC_CONFIG [publisher] contact_email {email!r} is not an e-mail address"
        raise ConfigError(msg)
    return Publisher(
        name=_text(table, "name", defaults.name) or defaults.name,
        contact_name=_text(table, "contact_name", defaults.contact_name) or "",
        contact_email=(email or defaults.contact_email).removeprefix("mailto:"),
        license=_text(table, "license", defaults.license) or defaults.license,
        homepage=_text(table, "homepage", None),
        bureau_code=_codes(table, "bureau_code"),
        program_code=_codes(table, "program_code"),
    )


def build_site(settings: Settings, *, poll_seconds: int = 60) -> Site:
    """The `Site` for ``civicstream serve``."""
    city = settings.city()
    tiles = city.map.get("tiles")
    attribution = city.map.get("attribution")
    return Site(
        city=city.name,
        timezone=city.timezone,
        stations={
            key: Place(station.name, station.lat, station.lon)
            for key, station in city.stations.items()
        },
        publisher=publisher(city),
        categories=categories(),
        public_url=settings.public_url,
        map_tiles=str(tiles) if tiles else None,
        map_attribution=str(attribution) if attribution else None,
        poll_seconds=poll_seconds,
    )
