"""The pure incident rules as a specification: taxonomy, privacy, daily-count statistics."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
from scipy.stats import chi2, poisson

from civicstream.settings import BUNDLED_CITIES, load_city
from processors import incident_stats
from processors.exceptions import InvalidRule
from processors.privacy import PrivacyRules, generalise_address, public_location, snap_to_grid
from processors.taxonomy import COMMON_CATEGORIES, Offence, Taxonomy, most_serious

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "incidents"
SF = load_city(BUNDLED_CITIES / "san_francisco.toml").incident_sources["sfpd"]
PITTSBURGH = load_city(BUNDLED_CITIES / "pittsburgh.toml").incident_sources["pittsburgh-fire"]


def sfpd_rows() -> list[dict[str, str]]:
    with (DATA / "SFPD_Incident_Reports_2018-12.csv").open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def pittsburgh_rows() -> list[dict[str, str]]:
    with (DATA / "Pittsburgh_Fire_Incidents.csv").open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def offence(category: str | None, code: str = "", **fields: str | None) -> Offence:
    common = SF.taxonomy.classify(category, code)
    return Offence(code, category, fields.get("subcategory"), fields.get("description"), common)


# -- taxonomy --------------------------------------------------------------------------------


def test_every_sfpd_category_of_december_2018_has_an_explicit_mapping():
    categories = {row["Incident Category"] for row in sfpd_rows()}
    assert len(categories) == 47
    unmapped = {c for c in categories if c.strip().casefold() not in SF.taxonomy.categories}
    assert unmapped == set()


@pytest.mark.parametrize(
    ("category", "common"),
    [
        ("Robbery", "violent"),
        ("Larceny Theft", "property"),
        ("Drug Offense", "drugs"),
        ("Disorderly Conduct", "public_order"),
        ("Traffic Collision", "traffic"),
        ("Fire Report", "fire"),
        ("Lost Property", "other"),
        ("  larceny THEFT ", "property"),  # the source's spelling varies in case and spaces
        ("A category SFPD invents tomorrow", "other"),  # the source's default
    ],
)
def test_sfpd_categories_map_to_the_common_set(category, common):
    assert SF.taxonomy.classify(category, None) == common


def test_nfirs_incident_types_map_by_series_and_every_pittsburgh_row_is_a_fire():
    taxonomy = PITTSBURGH.taxonomy
    assert [taxonomy.classify(None, code) for code in ("111", "321", "745", "561")] == [
        "fire",
        "ems",
        "false_alarm",
        "other",
    ]
    codes = {row["incident_type"] for row in pittsburgh_rows() if row["incident_type"]}
    assert {taxonomy.classify(None, code) for code in codes} == {"fire"}


def test_the_longest_code_prefix_wins():
    taxonomy = Taxonomy(code_prefixes={"3": "ems", "35": "other"})
    assert (taxonomy.classify(None, "321"), taxonomy.classify(None, "351")) == ("ems", "other")


def test_a_mapping_to_an_unknown_category_is_refused_by_name():
    with pytest.raises(InvalidRule, match=r"'Theft'.*'stealing'"):
        Taxonomy(categories={"Theft": "stealing"})


def test_the_most_serious_offence_wins_and_ties_go_to_the_lowest_code():
    # SFPD incident 743396: a robbery reported with two other offence codes.
    rows = [
        offence("Other Miscellaneous", "26080"),
        offence("Offences Against The Family And Children", "15030"),
        offence("Robbery", "03074"),
    ]
    assert most_serious(rows).category == "Robbery"  # both violent; 03074 < 15030
    assert most_serious(reversed(rows)) == most_serious(rows)
    assert most_serious(
        [offence("Larceny Theft", "06244"), offence("Warrant", "62050")]
    ).common == ("property")


def test_common_categories_are_ordered_from_the_most_serious():
    assert COMMON_CATEGORIES[0] == "violent"
    assert COMMON_CATEGORIES[-1] == "false_alarm"


# -- privacy: addresses ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "published"),
    [
        ("1234 Main St", "1200 BLOCK OF MAIN ST"),
        ("1234 MAIN ST APT 5", "1200 BLOCK OF MAIN ST"),
        ("12-14 ELM ST #3", "0 BLOCK OF ELM ST"),
        ("812A  Valencia   St", "800 BLOCK OF VALENCIA ST"),
        ("150 BLOCK OF X ST", "100 BLOCK OF X ST"),
        (
            "800 BLOCK CENTER ST, WILKINSBURG PA 15221",
            "800 BLOCK OF CENTER ST, WILKINSBURG PA 15221",
        ),
        ("BOSWORTH ST \\ DIAMOND ST", "BOSWORTH ST & DIAMOND ST"),
        ("123 MAIN ST & 2ND AVE", "MAIN ST & 2ND AVE"),
        ("2ND BLOCK AVE & BRADY ST", "2ND BLOCK AVE & BRADY ST"),  # an ordinal, not a number
        ("EB I376 EB HWY AT 2ND AVE", "EB I376 EB HWY & 2ND AVE"),
        ("CITY HALL", "CITY HALL"),
        (", PITTSBURGH PA 15226", "PITTSBURGH PA 15226"),
        ("   ", None),
        (None, None),
    ],
)
def test_addresses_are_generalised_to_the_hundred_block_or_kept_as_intersections(
    address, published
):
    assert generalise_address(address) == published


def _starts_with_house_number(street: str) -> bool:
    """A part of a published address that begins with a number that is not a hundred block."""
    first, _, rest = street.strip().partition(" ")
    if not first.isdigit():
        return False
    return not (rest.startswith("BLOCK OF ") and int(first) % 100 == 0)


def test_no_published_address_of_the_real_files_carries_a_house_number():
    addresses = [row["Intersection"] for row in sfpd_rows()]
    addresses += [row["address"] for row in pittsburgh_rows()]
    published = [generalise_address(a) for a in addresses]
    streets = [
        part for address in published if address for part in address.split(",")[0].split(" & ")
    ]
    assert len(streets) > 20_000
    assert [s for s in streets if _starts_with_house_number(s)] == []
    # A test of the test: the raw Pittsburgh blocks and a street address would be caught.
    assert _starts_with_house_number("1234 MAIN ST")
    assert _starts_with_house_number("800 BLOCK CENTER ST")


# -- privacy: coordinates --------------------------------------------------------------------


def test_coordinates_are_snapped_to_cell_centres_within_half_a_cell_diagonal():
    rows = [row for row in sfpd_rows() if row["Latitude"]]
    points = {(float(row["Latitude"]), float(row["Longitude"])) for row in rows}
    snapped = {p: snap_to_grid(*p, 150.0) for p in points}
    for (lat, lon), (slat, slon) in snapped.items():
        assert snap_to_grid(slat, slon, 150.0) == (slat, slon)  # a centre stays put
        north = (slat - lat) * 111_320
        east = (slon - lon) * 111_320 * math.cos(math.radians(slat))
        assert math.hypot(north, east) <= 150 / math.sqrt(2) + 1
    # SFPD already snaps to intersections; a 150 m grid merges neighbouring ones.
    assert len(set(snapped.values())) < len(points)


def test_repeated_events_at_one_address_get_the_same_point_not_a_jittered_one():
    assert len({snap_to_grid(37.7622, -122.4190, 150.0) for _ in range(100)}) == 1


def test_the_grid_size_is_configurable():
    coarse = snap_to_grid(37.76223, -122.41901, 1000.0)
    fine = snap_to_grid(37.76223, -122.41901, 50.0)
    assert coarse != fine
    assert abs(coarse[0] - 37.76223) * 111_320 <= 500


# -- privacy: sensitive offences -------------------------------------------------------------


@pytest.mark.parametrize(
    ("category", "subcategory", "description", "status"),
    [
        ("Sex Offense", "Sex Offense", "Indecent Exposure (Adult victim)", "Open or Active"),
        ("Assault", "Simple Assault", "Battery, former Spouse or Dating Relationship", None),
        ("Offences Against The Family And Children", "Other", "Domestic Violence", None),
        ("Malicious Mischief", "Vandalism", "Malicious Mischief, Juvenile Suspect", None),
        (
            "Larceny Theft",
            "Larceny - From Vehicle",
            "Theft, From Locked Vehicle",
            "Cite or Arrest Juvenile",
        ),
        ("Human Trafficking, Commercial Sex Acts", None, None, None),
        ("Non-Criminal", "Other", "Mental Health Detention", None),
    ],
)
def test_sensitive_sfpd_offences_are_published_without_location(
    category, subcategory, description, status
):
    row = offence(category, "99999", subcategory=subcategory, description=description)
    assert SF.privacy.is_sensitive(row, status)
    location = public_location(
        "18TH ST \\ MISSION ST", 37.76, -122.42, sensitive=True, rules=SF.privacy
    )
    assert (location.address, location.lat, location.lon, location.withheld) == (
        None,
        None,
        None,
        True,
    )


def test_ordinary_offences_are_not_sensitive():
    row = offence("Larceny Theft", "06244", description="Theft, From Locked Vehicle, >$950")
    assert not SF.privacy.is_sensitive(row, "Open or Active")
    # "child" starts a word; it is not found inside another word
    assert not SF.privacy.is_sensitive(offence("Other", description="Grandchildren's bike"))


def test_ems_calls_of_fire_data_are_sensitive_by_their_common_category():
    ems = Offence("321", "EMS call, excluding vehicle accident with injury", None, None, "ems")
    fire = Offence("111", "Building fire", None, None, "fire")
    assert PITTSBURGH.privacy.is_sensitive(ems)
    assert not PITTSBURGH.privacy.is_sensitive(fire)


def test_privacy_rules_refuse_unusable_settings():
    with pytest.raises(InvalidRule, match="grid"):
        PrivacyRules(grid_metres=0)
    with pytest.raises(InvalidRule, match="delay"):
        PrivacyRules(publication_delay_ms=-1)
    with pytest.raises(InvalidRule, match="medical"):
        PrivacyRules(sensitive_common=frozenset({"medical"}))


# -- statistics ------------------------------------------------------------------------------


def test_cells_below_three_are_suppressed_with_their_baseline_and_spike_test():
    history = [10] * 28
    for count in (0, 1, 2):
        cell = incident_stats.count_cell("property", count, history)
        assert (cell.count, cell.suppressed, cell.baseline, cell.spike) == (None, True, None, False)
        assert cell.tail_probability is None
    assert incident_stats.count_cell("property", 3, history).count == 3


def test_the_baseline_is_the_mean_of_the_28_days_before_and_needs_seven():
    assert incident_stats.baseline([5] * 6) is None
    assert incident_stats.baseline([1, 2, 3, 4, 5, 6, 7]) == 4.0
    assert incident_stats.baseline([100] * 10 + [2] * 28) == 2.0  # only the last 28 days
    cell = incident_stats.count_cell("all", 4, [1] * 6)
    assert (cell.count, cell.baseline, cell.spike, cell.baseline_days) == (4, None, False, 6)


def test_the_spike_test_is_a_poisson_tail_against_the_upper_rate_of_the_window():
    history = [10] * 28  # 280 incidents in 28 days
    upper = chi2.ppf(0.95, 2 * 281) / 2 / 28  # exact one-sided 95 % limit of a Poisson mean
    assert incident_stats.upper_rate(280, 28) == pytest.approx(upper, rel=1e-9)
    for count in (15, 20, 25, 30):
        expected = poisson.sf(count - 1, upper)  # P(X >= count)
        cell = incident_stats.count_cell("property", count, history)
        assert cell.tail_probability == pytest.approx(expected, rel=1e-5)
        assert cell.spike == (expected < 0.001)
    assert not incident_stats.count_cell("property", 20, history).spike
    assert incident_stats.count_cell("property", 25, history).spike


def test_a_short_or_sparse_history_needs_a_bigger_count_to_be_a_spike():
    # 3 incidents in 28 days: a count of 3 is unusual, but not improbable enough.
    assert not incident_stats.count_cell("fire", 3, [0] * 25 + [1, 1, 1]).spike
    assert incident_stats.count_cell("fire", 6, [0] * 25 + [1, 1, 1]).spike
