"""What of an incident may be published: the rules city portals follow, as pure functions.

- **Addresses** are generalised to the hundred block (``1234 MAIN ST`` → ``1200 BLOCK OF
  MAIN ST``) or kept as an intersection (``MAIN ST & 2ND AVE``); apartment and unit numbers
  are dropped. An address without a house number (a highway, a landmark) is kept.
- **Coordinates** are snapped to the centre of a fixed grid cell (default 150 m): every
  event in a cell gets the same point, so repeated events at one address never average
  back to it, as random jitter would.
- **Sensitive offences** (sex offences, domestic violence, offences against or involving
  children and juveniles, human trafficking, medical and EMS calls: the city configuration
  lists them per source) are published with their district only: no address, no point.
- **Narratives and personal data** never reach these functions: a published incident is
  built from a fixed list of fields (streams.incidents), never from the source's extras.
- **Publication delay**: an incident is published once stream time has passed its report
  time plus `publication_delay_ms` (default 72 h); the stream layer applies it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from processors.exceptions import InvalidRule
from processors.taxonomy import COMMON_CATEGORIES, Offence

__all__ = [
    "DEFAULT_GRID_METRES",
    "DEFAULT_PUBLICATION_DELAY_MS",
    "PrivacyRules",
    "PublicLocation",
    "generalise_address",
    "public_location",
    "snap_to_grid",
]

DEFAULT_GRID_METRES = 150.0
DEFAULT_PUBLICATION_DELAY_MS = 72 * 3_600_000
_METRES_PER_DEGREE = 111_320.0  # of latitude (and of longitude at the equator)
_MAX_LATITUDE = 89.0  # longitude cells stay finite

_SPACES = re.compile(r"\s+")
# "APT 4", "UNIT 12B", "STE 100", "#7": never part of what is published.
_UNIT = re.compile(r"\s*(?:\b(?:APT|APARTMENT|UNIT|SUITE|ROOM|FLOOR)\b\.?\s*#?|#)\s*[A-Z0-9-]+\b")
# Intersections: SFPD writes "A ST \ B ST"; others "A & B", "A AND B", "A / B", "HWY 28 AT 31S".
_INTERSECTION = re.compile(r"\s+(?:\\|/|&|AND|AT)\s+")
_BLOCK = re.compile(r"^(\d+)\s+BLOCK(?:\s+OF)?\s+(\S.*)$")
# A house number: digits, optionally a range ("12-14"), a letter ("12A") or a half ("12 1/2").
_HOUSE = re.compile(r"^(\d+)(?:-\d+)?[A-Z]?(?:\s+1/2)?\s+(\S.*)$")


def _hundred_block(number: str, street: str) -> str:
    return f"{int(number) // 100 * 100} BLOCK OF {street}"


def _without_house_number(street: str) -> str:
    block = _BLOCK.match(street)
    if block:
        return block.group(2)
    house = _HOUSE.match(street)
    return house.group(2) if house else street


def generalise_address(address: str | None) -> str | None:
    """The publishable form of an address (upper case, single spaces); None when empty.

    Anything after the first comma (town, state, ZIP code) is kept as it is.
    """
    if address is None:
        return None
    text = _SPACES.sub(" ", address).strip().upper()
    if not text:
        return None
    street, comma, locality = text.partition(",")
    street = _UNIT.sub("", street).strip()
    locality = locality.strip() if comma else ""
    if not street:
        return locality or None
    locality = f", {locality}" if locality else ""
    sides = _INTERSECTION.split(street)
    if len(sides) > 1:
        streets = [_without_house_number(side.strip()) for side in sides if side.strip()]
        return " & ".join(streets) + locality
    block = _BLOCK.match(street)
    if block:
        return _hundred_block(block.group(1), block.group(2)) + locality
    house = _HOUSE.match(street)
    if house:
        return _hundred_block(house.group(1), house.group(2)) + locality
    return street + locality


def snap_to_grid(lat: float, lon: float, grid_metres: float) -> tuple[float, float]:
    """The centre of the grid cell that contains (lat, lon), to 6 decimals (0.1 m).

    Rows are `grid_metres` of latitude high; each row is cut into cells `grid_metres` wide
    at the row's centre latitude. The grid is fixed: it does not depend on the data, and
    snapping a snapped point returns it unchanged.
    """
    if not -_MAX_LATITUDE <= lat <= _MAX_LATITUDE or not -180.0 <= lon <= 180.0:
        msg = f"({lat}, {lon}) is not a point this grid covers"
        raise InvalidRule(msg)
    step_lat = grid_metres / _METRES_PER_DEGREE
    centre_lat = (math.floor(lat / step_lat) + 0.5) * step_lat
    step_lon = grid_metres / (_METRES_PER_DEGREE * math.cos(math.radians(centre_lat)))
    centre_lon = (math.floor(lon / step_lon) + 0.5) * step_lon
    return round(centre_lat, 6), round(centre_lon, 6)


@dataclass(frozen=True)
class PrivacyRules:
    """One source's publication rules (from the city configuration).

    An offence is sensitive when its source category is in `sensitive_categories`
    (ignoring case), its common category is in `sensitive_common` (e.g. ``ems`` for fire
    data), or one of `sensitive_keywords` begins a word of its category, subcategory,
    description or status (``juvenile`` matches "Cite or Arrest Juvenile"). An incident
    with one sensitive offence is sensitive.
    """

    grid_metres: float = DEFAULT_GRID_METRES
    publication_delay_ms: int = DEFAULT_PUBLICATION_DELAY_MS
    sensitive_categories: frozenset[str] = frozenset()
    sensitive_common: frozenset[str] = frozenset()
    sensitive_keywords: tuple[str, ...] = ()
    _keywords: re.Pattern[str] | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        if not (isinstance(self.grid_metres, int | float) and 1 <= self.grid_metres <= 10_000):
            msg = f"grid size {self.grid_metres!r} m must be between 1 and 10,000 m"
            raise InvalidRule(msg)
        if self.publication_delay_ms < 0:
            msg = f"publication delay {self.publication_delay_ms} ms must not be negative"
            raise InvalidRule(msg)
        unknown = set(self.sensitive_common) - set(COMMON_CATEGORIES)
        if unknown:
            msg = f"sensitive common categories {sorted(unknown)} are not common categories"
            raise InvalidRule(msg)
        object.__setattr__(
            self,
            "sensitive_categories",
            frozenset(c.strip().casefold() for c in self.sensitive_categories),
        )
        words = [w.strip() for w in self.sensitive_keywords if w.strip()]
        if words:
            pattern = r"(?<![0-9A-Za-z])(?:" + "|".join(map(re.escape, words)) + ")"
            object.__setattr__(self, "_keywords", re.compile(pattern, re.IGNORECASE))

    def is_sensitive(self, offence: Offence, status: str | None = None) -> bool:
        """True when this offence must be published without a location."""
        if offence.common in self.sensitive_common:
            return True
        if offence.category and offence.category.strip().casefold() in self.sensitive_categories:
            return True
        if self._keywords is None:
            return False
        texts = (offence.category, offence.subcategory, offence.description, status)
        return any(text and self._keywords.search(text) for text in texts)

    def any_sensitive(self, offences: Iterable[Offence], status: str | None = None) -> bool:
        """True when one offence of the incident is sensitive."""
        return any(self.is_sensitive(offence, status) for offence in offences)


@dataclass(frozen=True, slots=True)
class PublicLocation:
    """Where a published incident is shown; all None and `withheld` for sensitive ones."""

    address: str | None
    lat: float | None
    lon: float | None
    withheld: bool


def public_location(
    address: str | None,
    lat: float | None,
    lon: float | None,
    *,
    sensitive: bool,
    rules: PrivacyRules,
) -> PublicLocation:
    """The location to publish: generalised and snapped, or withheld when sensitive."""
    if sensitive:
        return PublicLocation(None, None, None, withheld=True)
    point: tuple[float | None, float | None] = (None, None)
    if lat is not None and lon is not None and math.isfinite(lat) and math.isfinite(lon):
        point = snap_to_grid(lat, lon, rules.grid_metres)
    return PublicLocation(generalise_address(address), point[0], point[1], withheld=False)
