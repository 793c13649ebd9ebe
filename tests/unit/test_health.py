"""Specification of processors.health: EPA's cautionary statements by category and pollutant."""

from __future__ import annotations

import pytest

from processors import aqi
from processors.exceptions import UnknownKey
from processors.health import CATEGORIES, STATEMENTS, cautionary_statement, pollutant_of


def test_the_categories_are_the_aqi_categories_in_order() -> None:
    assert CATEGORIES == aqi.CATEGORIES


def test_good_air_needs_no_caution_for_any_pollutant() -> None:
    for key in aqi.KEYS:
        assert cautionary_statement("Good", key) is None


def test_pm25_unhealthy_for_sensitive_groups_names_the_sensitive_groups() -> None:
    assert cautionary_statement("Unhealthy for Sensitive Groups", "pm25_nowcast") == (
        "People with heart or lung disease, older adults, children, and people of lower "
        "socioeconomic status should reduce prolonged or heavy exertion."
    )


def test_pm10_shares_the_particle_pollution_statements() -> None:
    for category in CATEGORIES:
        assert cautionary_statement(category, "pm10_24h") == cautionary_statement(
            category, "pm25_24h"
        )


def test_ozone_statements_are_about_outdoor_exertion() -> None:
    assert cautionary_statement("Moderate", "o3_8h") == (
        "Unusually sensitive people should consider reducing prolonged or heavy outdoor exertion."
    )
    hazardous = cautionary_statement("Hazardous", "o3_1h")
    assert hazardous == "Everyone should avoid all outdoor exertion."
    unhealthy = cautionary_statement("Unhealthy", "o3")
    assert unhealthy is not None
    assert unhealthy.startswith("People with lung disease (such as asthma)")
    assert unhealthy.endswith("everyone else should reduce prolonged or heavy outdoor exertion.")


def test_co_and_so2_have_no_statement_at_moderate_but_no2_has() -> None:
    assert cautionary_statement("Moderate", "co_8h") is None
    assert cautionary_statement("Moderate", "so2_1h") is None
    assert cautionary_statement("Moderate", "no2_1h") == (
        "Unusually sensitive individuals should consider limiting prolonged exertion especially "
        "near busy roads."
    )
    assert cautionary_statement("Unhealthy for Sensitive Groups", "co_8h") == (
        "People with heart disease, such as angina, should limit heavy exertion and avoid "
        "sources of CO, such as heavy traffic."
    )
    assert cautionary_statement("Unhealthy for Sensitive Groups", "so2_24h") == (
        "People with asthma should consider limiting outdoor exertion."
    )


def test_every_pollutant_has_a_statement_from_unhealthy_for_sensitive_groups_up() -> None:
    for group, statements in STATEMENTS.items():
        for category in CATEGORIES[2:]:
            assert statements[category].endswith("."), (group, category)


def test_no_aqi_means_no_statement() -> None:
    assert cautionary_statement(None, None) is None
    assert cautionary_statement("Unhealthy", None) is None


def test_unknown_categories_and_pollutants_are_refused() -> None:
    with pytest.raises(UnknownKey):
        cautionary_statement("Bad", "pm25")
    with pytest.raises(UnknownKey):
        cautionary_statement("Unhealthy", "pm1")
    assert pollutant_of("so2_24h") == "so2"
