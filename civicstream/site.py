"""The API's view of the city (`sinks.api.Site`), from the settings and the city file.

AQI categories, their ranges and EPA colours come from `processors.aqi` (one source of
truth); the health guidance per category is EPA's (AirNow, "AQI Basics", the table of
what each category means). Publisher, contact and licence come from the city file's
``[publisher]`` table, with defaults that produce a valid catalog.
"""

from __future__ import annotations

from collections.abc import Mapping

from civicstream.settings import City, Settings
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


def publisher(city: City) -> Publisher:
    """The catalog's publisher: the ``[publisher]`` table (checked by civicstream.city when
    the file was loaded) over defaults that make a valid catalog."""
    table = city.publisher
    defaults = Publisher(name=f"{city.name} open data")
    email = str(table.get("contact_email", defaults.contact_email))
    return Publisher(
        name=table.get("name", defaults.name),
        contact_name=table.get("contact_name", defaults.contact_name),
        contact_email=email.removeprefix("mailto:"),
        license=table.get("license", defaults.license),
        homepage=table.get("homepage"),
        bureau_code=tuple(table.get("bureau_code", ())),
        program_code=tuple(table.get("program_code", ())),
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
