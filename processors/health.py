"""EPA's cautionary statements: what an AQI category means for people, per pollutant.

An AQI report above "Good" carries the pollutant-specific cautionary statement for
sensitive groups (40 CFR 58 Appendix G; EPA, *Technical Assistance Document for the
Reporting of Daily Air Quality – the AQI*, EPA-454/B-24-002, May 2024, section III
"Cautionary Statements", Table 5). The statements are keyed here by AQI category and by
pollutant: PM2.5 and PM10 share the particle-pollution statements, O3, CO, SO2 and NO2
have their own. Where EPA gives no statement (every pollutant at "Good"; CO and SO2 at
"Moderate") there is none: ``None``, never an invented text.

Wording: EPA's statements verbatim, as published in Table 4 of the 2016 and 2018 editions
of the TAD (EPA-454/B-16-002, EPA-454/B-18-007) and checked against independent
transcriptions; the 2024 edition carries the same cautionary statements in its Table 5.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from processors.exceptions import UnknownKey

__all__ = ["CATEGORIES", "SOURCE", "STATEMENTS", "cautionary_statement", "pollutant_of"]

SOURCE: Final = "EPA-454/B-24-002, Table 5 (cautionary statements)"

CATEGORIES: Final[tuple[str, ...]] = (
    "Good",
    "Moderate",
    "Unhealthy for Sensitive Groups",
    "Unhealthy",
    "Very Unhealthy",
    "Hazardous",
)

_GOOD, _MODERATE, _USG, _UNHEALTHY, _VERY, _HAZARDOUS = CATEGORIES

_PM_GROUPS = (
    "People with heart or lung disease, older adults, children, and people of lower "
    "socioeconomic status"
)
_O3_GROUPS = (
    "People with lung disease (such as asthma), children, older adults, people who are "
    "active outdoors (including outdoor workers), people with certain genetic variants, "
    "and people with diets limited in certain nutrients"
)
_PARTICLES: Final[Mapping[str, str]] = {
    _MODERATE: "Unusually sensitive people should consider reducing prolonged or heavy exertion.",
    _USG: f"{_PM_GROUPS} should reduce prolonged or heavy exertion.",
    _UNHEALTHY: (
        f"{_PM_GROUPS} should avoid prolonged or heavy exertion; everyone else should reduce "
        "prolonged or heavy exertion."
    ),
    _VERY: (
        f"{_PM_GROUPS} should avoid all physical activity outdoors. Everyone else should "
        "avoid prolonged or heavy exertion."
    ),
    _HAZARDOUS: (
        "Everyone should avoid all physical activity outdoors; people with heart or lung "
        "disease, older adults, children, and people of lower socioeconomic status should "
        "remain indoors and keep activity levels low."
    ),
}

STATEMENTS: Final[Mapping[str, Mapping[str, str]]] = MappingProxyType(
    {
        "pm": MappingProxyType(_PARTICLES),
        "o3": MappingProxyType(
            {
                _MODERATE: (
                    "Unusually sensitive people should consider reducing prolonged or heavy "
                    "outdoor exertion."
                ),
                _USG: f"{_O3_GROUPS} should reduce prolonged or heavy outdoor exertion.",
                _UNHEALTHY: (
                    f"{_O3_GROUPS} should avoid prolonged or heavy outdoor exertion; everyone "
                    "else should reduce prolonged or heavy outdoor exertion."
                ),
                _VERY: (
                    f"{_O3_GROUPS} should avoid all outdoor exertion; everyone else should "
                    "reduce outdoor exertion."
                ),
                _HAZARDOUS: "Everyone should avoid all outdoor exertion.",
            }
        ),
        "co": MappingProxyType(
            {
                _USG: (
                    "People with heart disease, such as angina, should limit heavy exertion "
                    "and avoid sources of CO, such as heavy traffic."
                ),
                _UNHEALTHY: (
                    "People with heart disease, such as angina, should limit moderate exertion "
                    "and avoid sources of CO, such as heavy traffic."
                ),
                _VERY: (
                    "People with heart disease, such as angina, should avoid exertion and "
                    "sources of CO, such as heavy traffic."
                ),
                _HAZARDOUS: (
                    "People with heart disease, such as angina, should avoid exertion and "
                    "sources of CO, such as heavy traffic; everyone else should limit heavy "
                    "exertion."
                ),
            }
        ),
        "so2": MappingProxyType(
            {
                _USG: "People with asthma should consider limiting outdoor exertion.",
                _UNHEALTHY: (
                    "Children, people with asthma, or other lung diseases, should limit "
                    "outdoor exertion."
                ),
                _VERY: (
                    "Children, people with asthma, or other lung diseases should avoid outdoor "
                    "exertion; everyone else should reduce outdoor exertion."
                ),
                _HAZARDOUS: (
                    "Children, people with asthma, or other lung diseases, should remain "
                    "indoors; everyone else should avoid outdoor exertion."
                ),
            }
        ),
        "no2": MappingProxyType(
            {
                _MODERATE: (
                    "Unusually sensitive individuals should consider limiting prolonged "
                    "exertion especially near busy roads."
                ),
                _USG: (
                    "People with asthma, children and older adults should limit prolonged "
                    "exertion especially near busy roads."
                ),
                _UNHEALTHY: (
                    "People with asthma, children and older adults should avoid prolonged "
                    "exertion near roadways; everyone else should limit prolonged exertion "
                    "especially near busy roads."
                ),
                _VERY: (
                    "People with asthma, children and older adults should avoid all outdoor "
                    "exertion; everyone else should avoid prolonged exertion especially near "
                    "busy roads."
                ),
                _HAZARDOUS: (
                    "People with asthma, children and older adults should remain indoors; "
                    "everyone else should avoid all outdoor exertion."
                ),
            }
        ),
    }
)
"""Statement group (``pm``, ``o3``, ``co``, ``so2``, ``no2``) → category → statement."""

_GROUP_OF: Final[Mapping[str, str]] = MappingProxyType(
    {"pm25": "pm", "pm10": "pm", "o3": "o3", "co": "co", "so2": "so2", "no2": "no2"}
)


def pollutant_of(key: str) -> str:
    """The pollutant of an AQI key or pollutant name: ``"pm25_nowcast"`` → ``"pm25"``."""
    pollutant = key.split("_", 1)[0]
    if pollutant not in _GROUP_OF:
        msg = f"{key!r} names no AQI pollutant; expected one of {', '.join(_GROUP_OF)}"
        raise UnknownKey(msg)
    return pollutant


def cautionary_statement(category: str | None, pollutant: str | None) -> str | None:
    """EPA's cautionary statement for an AQI category caused by a pollutant, or None.

    ``pollutant`` is a pollutant (``"o3"``) or an AQI key (``"o3_8h"``, the record's
    ``main_pollutant``). None when there is no AQI (either argument None) or EPA gives no
    statement for that category and pollutant (always at "Good").
    """
    if category is None or pollutant is None:
        return None
    if category not in CATEGORIES:
        msg = f"unknown AQI category {category!r}; expected one of {', '.join(CATEGORIES)}"
        raise UnknownKey(msg)
    return STATEMENTS[_GROUP_OF[pollutant_of(pollutant)]].get(category)
