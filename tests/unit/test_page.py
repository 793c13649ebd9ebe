"""The residents' page in a real browser: Debian's chromium, headless, driven by Selenium.

The page must show the stations the store holds with the right categories and colours,
on the map and in the table, update without a reload, read on a phone without sideways
scrolling, and keep text readable (WCAG AA contrast). Screenshots go to test-output/.
No browser is downloaded: the Makefile installs the Debian packages chromium and
chromium-driver, and Selenium is given their paths (so Selenium Manager never runs).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from civicstream.settings import Settings
from civicstream.site import build_site
from sinks.api import ApiServer
from sinks.store import Store, open_store
from tests.unit.test_store import aqi

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
OUTPUT = ROOT / "test-output"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)
# station -> (AQI, category) of its latest hour; "wanliu" has no index, "airport" is not in
# the city file (no coordinates: table only)
LATEST = {
    "dongsi": (35, "Good"),
    "guanyuan": (88, "Moderate"),
    "tiantan": (142, "Unhealthy for Sensitive Groups"),
    "huairou": (171, "Unhealthy"),
    "shunyi": (260, "Very Unhealthy"),
    "dingling": (402, "Hazardous"),
    "wanliu": (None, None),
    "airport": (61, "Moderate"),
}
EPA_RGB = {
    "Good": (0, 228, 0),
    "Moderate": (255, 255, 0),
    "Unhealthy for Sensitive Groups": (255, 126, 0),
    "Unhealthy": (255, 0, 0),
    "Very Unhealthy": (143, 63, 151),
    "Hazardous": (126, 0, 35),
}


def latest_records() -> list[dict[str, Any]]:
    records = []
    for station, (value, category) in LATEST.items():
        records.append(aqi(station, 0, aqi=15, category="Good"))  # an older hour
        if value is None:
            records.append(
                aqi(
                    station,
                    3,
                    aqi=None,
                    category=None,
                    main_pollutant=None,
                    reason="insufficient_data",
                )
            )
        else:
            records.append(aqi(station, 3, aqi=value, category=category, main_pollutant="o3_8h"))
    return records


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    """Poll `condition` until it is truthy. The page redraws itself every second, so an
    element found a moment ago may be gone: that counts as "not yet", not as a failure."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = condition()
        except StaleElementReferenceException:
            result = None
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def rgb(css: str) -> tuple[int, int, int]:
    """(r, g, b) of a computed CSS colour 'rgb(1, 2, 3)' or 'rgba(1, 2, 3, 1)'."""
    parts = css[css.index("(") + 1 : css.index(")")].split(",")
    return (int(parts[0]), int(parts[1]), int(parts[2]))


def contrast(one: tuple[int, int, int], other: tuple[int, int, int]) -> float:
    def luminance(color: tuple[int, int, int]) -> float:
        channels = [c / 255 for c in color]
        linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    high, low = sorted((luminance(one), luminance(other)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def stations_shown(browser: WebDriver) -> dict[str, dict[str, str]]:
    """The station table as the user sees it, read in one go."""
    return browser.execute_script(  # type: ignore[no-any-return]
        """
        const result = {};
        for (const row of document.querySelectorAll("#stations tbody tr[data-station]")) {
          const cells = row.querySelectorAll("td");
          const label = cells[1].querySelector("span");
          const style = getComputedStyle(label);
          result[row.dataset.station] = {
            name: row.querySelector("th").textContent, aqi: cells[0].textContent,
            category: label.textContent, background: style.backgroundColor,
            color: style.color, pollutant: cells[2].textContent,
            guidance: cells[4].textContent};
        }
        return result;
        """
    )


def pins_shown(browser: WebDriver) -> dict[str, dict[str, str]]:
    """The map's pins by station name."""
    return browser.execute_script(  # type: ignore[no-any-return]
        """
        const result = {};
        for (const pin of document.querySelectorAll("#map .pin")) {
          const name = pin.parentElement.querySelector(".pin-name").textContent;
          result[name] = {aqi: pin.textContent,
                          background: getComputedStyle(pin).backgroundColor};
        }
        return result;
        """
    )


def incidents_shown(browser: WebDriver) -> dict[str, list[str]]:
    return browser.execute_script(  # type: ignore[no-any-return]
        """
        const result = {};
        for (const row of document.querySelectorAll("#incident-table tbody tr")) {
          result[row.dataset.district] = [...row.querySelectorAll("td")].map(c => c.textContent);
        }
        return result;
        """
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    for path in (CHROMIUM, CHROMEDRIVER):
        assert Path(path).is_file(), f"{path} missing: make test installs chromium-driver"
    profile = tempfile.mkdtemp(prefix="civic-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}", "--window-size=1280,1400"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def page_store(tmp_path: Path) -> Iterator[Store]:
    """A store with the hourly AQI above and daily incident counts per district."""
    with open_store(f"sqlite:///{tmp_path}/page.db") as store:
        store.write_batch({"aqi_hourly": latest_records()})
        counts = []
        for day in range(1, 11):
            for district, base in (("Mission", 20), ("Central", 5), ("Park", 1)):
                for category in ("all", "property"):
                    count = base + day if category == "all" else base
                    counts.append(
                        {
                            "district": district,
                            "category": category,
                            "day": f"2018-12-{day:02d}",
                            "count": None if count < 3 else count,
                            "suppressed": count < 3,
                            "baseline": None,
                            "baseline_days": 0,
                            "spike": False,
                            "tail_probability": None,
                            "revision": 1,
                            "as_of": datetime(2018, 12, day + 4, tzinfo=UTC),
                        }
                    )
        store.write_batch({"incident_counts": counts})
        yield store


def test_the_page_shows_every_station_with_its_category_and_updates_itself(
    browser: WebDriver, page_store: Store
) -> None:
    OUTPUT.mkdir(exist_ok=True)
    site = build_site(Settings(), poll_seconds=1)
    with ApiServer(page_store, site) as server:
        browser.get(server.url + "/")
        # The page redraws every second: read each state in one script call (a snapshot).
        shown = wait_for(lambda: stations_shown(browser), "the station rows")
        # --- the table: one row per station in the store, the right category and colour
        assert set(shown) == set(LATEST)
        for station, (value, category) in LATEST.items():
            row = shown[station]
            assert row["aqi"] == ("no index" if value is None else str(value))
            assert row["category"] == (category or "No index")
            background, text = rgb(row["background"]), rgb(row["color"])
            if category is not None:
                assert background == EPA_RGB[category]
                assert row["guidance"] == site.category(category).guidance  # type: ignore[union-attr]
            else:
                assert "insufficient data" in row["guidance"]
            assert contrast(background, text) >= 4.5, (station, background, text)
        assert shown["dongsi"]["name"] == "Dongsi"
        assert shown["airport"]["name"] == "airport"
        assert shown["dongsi"]["pollutant"] == "Ozone (8-hour)"
        # --- the map: a pin per station with coordinates, coloured by category
        pins = pins_shown(browser)
        assert len(pins) == len(LATEST) - 1  # airport has no place on the map
        assert "Dingling" in pins and "airport" not in pins
        assert pins["Dingling"]["aqi"] == "402"
        assert rgb(pins["Dingling"]["background"]) == EPA_RGB["Hazardous"]
        # --- accessibility basics
        assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"
        assert browser.find_element(By.ID, "map").get_attribute("aria-label")
        assert browser.find_element(By.CSS_SELECTOR, "#stations caption").text
        assert browser.find_element(By.ID, "status").get_attribute("aria-live") == "polite"
        legend = browser.execute_script(  # one snapshot: the page may redraw between reads
            "return [...document.querySelectorAll('#legend li .swatch')].map(e => e.textContent);"
        )
        assert [text.strip() for text in legend] == list(EPA_RGB)
        # --- incidents by district: the last 7 days of category "all"; cells < 3 withheld
        table = wait_for(lambda: incidents_shown(browser), "the incident table")
        assert browser.find_element(By.ID, "incidents").is_displayed()
        days = range(4, 11)
        assert table["Mission"] == [str(sum(20 + d for d in days)), "0"]
        assert table["Central"] == [str(sum(5 + d for d in days)), "0"]
        assert table["Park"] == [str(sum(1 + d for d in days if 1 + d >= 3)), "0"]
        browser.save_screenshot(str(OUTPUT / "residents-page.png"))

        # --- a new hour arrives: the page changes without a reload
        browser.execute_script("window.__sameDocument = true;")
        page_store.write_batch({"aqi_hourly": [aqi("dongsi", 4, aqi=155, category="Unhealthy")]})
        wait_for(
            lambda: (
                browser.find_element(
                    By.CSS_SELECTOR, '#stations tr[data-station="dongsi"]'
                ).get_attribute("data-category")
                == "Unhealthy"
            ),
            "the page to show dongsi's new hour",
        )
        assert browser.execute_script("return window.__sameDocument === true;")
        pins_now = browser.execute_script(
            "return [...document.querySelectorAll('#map .pin')].map(e => e.textContent.trim());"
        )
        assert "155" in pins_now

        # --- on a phone: no sideways scrolling, the table becomes cards
        browser.set_window_size(390, 844)
        wait_for(
            lambda: browser.execute_script(
                "return document.documentElement.scrollWidth <= window.innerWidth;"
            ),
            "the page to fit a phone's width",
        )
        assert browser.find_element(By.CSS_SELECTOR, "#stations thead").location["x"] < 0
        browser.save_screenshot(str(OUTPUT / "residents-page-phone.png"))
        browser.set_window_size(1280, 1400)

        problems = [
            entry for entry in browser.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")
        ]
        assert problems == []  # no script errors, no blocked (CSP) or missing resources


def test_without_incident_counts_the_section_stays_hidden(
    browser: WebDriver, tmp_path: Path
) -> None:
    with open_store(f"sqlite:///{tmp_path}/plain.db") as store:
        store.write_batch({"aqi_hourly": latest_records()})
        with ApiServer(store, build_site(Settings())) as server:
            browser.get(server.url + "/")
            wait_for(
                lambda: browser.find_elements(By.CSS_SELECTOR, "#stations tr[data-station]"),
                "the station rows",
            )
            assert not browser.find_element(By.ID, "incidents").is_displayed()
            status = browser.find_element(By.ID, "status").text
            assert status.startswith(f"{len(LATEST)} stations")
