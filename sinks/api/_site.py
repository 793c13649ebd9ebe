"""What the API knows about the city it publishes for: stations, publisher, AQI categories.

Plain data, filled by the caller (``civicstream serve`` builds it from the city
configuration file and `processors.aqi`), so this package depends on neither.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["Category", "Place", "Publisher", "Site"]


@dataclass(frozen=True)
class Place:
    """A station: its name and WGS 84 coordinates."""

    name: str
    lat: float
    lon: float


def _luminance(rgb: tuple[int, int, int]) -> float:
    """WCAG 2 relative luminance."""

    def channel(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(v) for v in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(one: tuple[int, int, int], other: tuple[int, int, int]) -> float:
    """WCAG 2 contrast ratio of two colours (1 to 21)."""
    a, b = sorted((_luminance(one), _luminance(other)), reverse=True)
    return (a + 0.05) / (b + 0.05)


@dataclass(frozen=True)
class Category:
    """An AQI category: its range, EPA colour and what it means for health."""

    name: str
    low: int
    high: int | None  # None: and above
    rgb: tuple[int, int, int]
    guidance: str

    @property
    def color(self) -> str:
        return "#{:02x}{:02x}{:02x}".format(*self.rgb)

    @property
    def text_color(self) -> str:
        """Black or white, whichever contrasts more with the category colour."""
        black, white = (0, 0, 0), (255, 255, 255)
        return "#000000" if contrast(self.rgb, black) >= contrast(self.rgb, white) else "#ffffff"

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "low": self.low,
            "high": self.high,
            "color": self.color,
            "text_color": self.text_color,
            "guidance": self.guidance,
        }


@dataclass(frozen=True)
class Publisher:
    """Who publishes the data, whom to contact, under which licence (DCAT-US fields).

    `bureau_code` and `program_code` are for US federal publishers only (DCAT-US requires
    them from those); leave them empty otherwise.
    """

    name: str = "City open data"
    contact_name: str = "Open data team"
    contact_email: str = "opendata@example.org"
    license: str = "https://creativecommons.org/licenses/by/4.0/"
    homepage: str | None = None
    bureau_code: tuple[str, ...] = ()
    program_code: tuple[str, ...] = ()


@dataclass(frozen=True)
class Site:
    """The city the API publishes for.

    `public_url` is the address users reach the API at (for absolute links in
    ``data.json``); None uses the address of each request. `map_tiles` is an optional
    tile URL template for the page's map (``https://.../{z}/{x}/{y}.png``); without it the
    map draws the stations on a plain background and needs no network at all.
    """

    city: str = "City"
    timezone: str = "UTC"
    stations: Mapping[str, Place] = field(default_factory=dict)
    publisher: Publisher = field(default_factory=Publisher)
    categories: tuple[Category, ...] = ()
    public_url: str | None = None
    map_tiles: str | None = None
    map_attribution: str | None = None
    poll_seconds: int = 60

    def category(self, name: str | None) -> Category | None:
        for category in self.categories:
            if category.name == name:
                return category
        return None

    def station_points(self) -> dict[str, tuple[float, float]]:
        """Station id -> (lat, lon)."""
        return {key: (place.lat, place.lon) for key, place in self.stations.items()}

    def bbox(self) -> str | None:
        """``min_lon,min_lat,max_lon,max_lat`` of the stations, or None without any."""
        if not self.stations:
            return None
        lats = [place.lat for place in self.stations.values()]
        lons = [place.lon for place in self.stations.values()]
        return f"{min(lons)},{min(lats)},{max(lons)},{max(lats)}"
