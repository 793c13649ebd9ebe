"""Common incident categories, their order of seriousness, and per-source mapping tables.

Police and fire departments name their categories differently ("Larceny Theft", NFIRS
"111 Building fire"). Open data needs one small vocabulary that residents can compare
across sources, so every source category is mapped to one of `COMMON_CATEGORIES` by a
table in the city configuration; the source's own category is kept next to it.

One incident can arrive as several rows, one per offence code. The incident is counted
once, under its most serious category: the first in `COMMON_CATEGORIES` order, ties
broken by the lowest offence code (SFPD and UCR codes number the graver offences first),
then by the source's names, so the choice never depends on the order rows arrive in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from processors.exceptions import InvalidRule

__all__ = ["ALL", "COMMON_CATEGORIES", "Offence", "Taxonomy", "most_serious", "severity"]

COMMON_CATEGORIES: tuple[str, ...] = (
    "violent",  # against a person: homicide, rape, robbery, assault, sex offences, abuse
    "fire",  # fires of any kind
    "ems",  # rescue, medical and EMS calls
    "property",  # theft, burglary, vehicle theft, vandalism, fraud, arson
    "drugs",  # drug offences
    "public_order",  # disorderly conduct, weapons, liquor, prostitution, warrants
    "traffic",  # traffic offences and collisions
    "other",  # everything else: non-criminal reports, service calls, lost property
    "false_alarm",  # alarms and calls that found no incident
)
"""The common categories, most serious first (the order `most_serious` uses)."""

ALL = "all"
"""The statistics' pseudo-category that counts every incident once."""

_RANK = {name: rank for rank, name in enumerate(COMMON_CATEGORIES)}


def severity(category: str) -> int:
    """Rank of a common category: 0 is the most serious."""
    try:
        return _RANK[category]
    except KeyError:
        msg = f"{category!r} is not a common category ({', '.join(COMMON_CATEGORIES)})"
        raise InvalidRule(msg) from None


def _common(value: str, where: str) -> str:
    if value not in _RANK:
        msg = f"{where}: {value!r} is not a common category ({', '.join(COMMON_CATEGORIES)})"
        raise InvalidRule(msg)
    return value


@dataclass(frozen=True)
class Taxonomy:
    """One source's mapping table: source category or offence-code prefix → common category.

    `categories` is matched first, ignoring case and surrounding spaces; then the longest
    matching prefix of the offence code in `code_prefixes` (NFIRS incident types are
    grouped by series: 1xx fires, 3xx rescue and EMS, 7xx false alarms); else `default`.
    """

    categories: Mapping[str, str] = field(default_factory=dict)
    code_prefixes: Mapping[str, str] = field(default_factory=dict)
    default: str = "other"
    _longest: int = field(init=False, repr=False, compare=False, default=0)

    def __post_init__(self) -> None:
        by_name = {
            name.strip().casefold(): _common(common, f"category {name!r}")
            for name, common in self.categories.items()
        }
        by_code = {
            prefix.strip(): _common(common, f"code prefix {prefix!r}")
            for prefix, common in self.code_prefixes.items()
        }
        if "" in by_code:
            msg = "an empty code prefix matches every code; use `default` instead"
            raise InvalidRule(msg)
        _common(self.default, "default")
        object.__setattr__(self, "categories", by_name)
        object.__setattr__(self, "code_prefixes", by_code)
        object.__setattr__(self, "_longest", max(map(len, by_code), default=0))

    def classify(self, category: str | None, code: str | None) -> str:
        """The common category of one offence row."""
        if category is not None:
            found = self.categories.get(category.strip().casefold())
            if found is not None:
                return found
        if code:
            code = code.strip()
            for length in range(min(len(code), self._longest), 0, -1):
                found = self.code_prefixes.get(code[:length])
                if found is not None:
                    return found
        return self.default

    def outputs(self) -> tuple[str, ...]:
        """Every common category this table can produce, most serious first."""
        produced = {*self.categories.values(), *self.code_prefixes.values(), self.default}
        return tuple(sorted(produced, key=severity))


@dataclass(frozen=True, slots=True)
class Offence:
    """One offence row of an incident, as the source names it, with its common category."""

    code: str
    category: str | None
    subcategory: str | None
    description: str | None
    common: str


def most_serious(offences: Iterable[Offence]) -> Offence:
    """The offence an incident is published and counted under (see the module docstring)."""
    ranked = sorted(
        offences,
        key=lambda o: (
            severity(o.common),
            o.code,
            o.category or "",
            o.subcategory or "",
            o.description or "",
        ),
    )
    if not ranked:
        msg = "an incident needs at least one offence"
        raise InvalidRule(msg)
    return ranked[0]
