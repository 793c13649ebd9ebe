// The residents' page: polls /api/air-quality/now and redraws the map, the table and the
// legend without reloading; shows recent incidents by district when the store has them.
"use strict";

(function () {
  const POLLUTANTS = {
    pm25_nowcast: "PM2.5 (NowCast)",
    pm10_nowcast: "PM10 (NowCast)",
    o3_8h: "Ozone (8-hour)",
    o3_1h: "Ozone (1-hour)",
    co_8h: "Carbon monoxide (8-hour)",
    so2_1h: "Sulfur dioxide (1-hour)",
    so2_24h: "Sulfur dioxide (24-hour)",
    no2_1h: "Nitrogen dioxide (1-hour)",
  };
  const INCIDENT_DAYS = 7;

  let map = null;
  let markers = null;
  let fitted = false;
  let pollSeconds = 60;
  let timer = null;

  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  function cell(label, text, className) {
    const node = el("td", text, className);
    node.dataset.label = label;
    return node;
  }

  function pollutantName(key) {
    return key ? POLLUTANTS[key] || key : "—";
  }

  function hourText(iso, timeZone) {
    if (!iso) return "—";
    try {
      return new Intl.DateTimeFormat("en-GB", {
        timeZone: timeZone, day: "numeric", month: "short", year: "numeric",
        hour: "2-digit", minute: "2-digit", hour12: false,
      }).format(new Date(iso));
    } catch (error) {
      return iso;
    }
  }

  function ensureMap() {
    if (map || typeof L === "undefined") return;
    map = L.map("map", { keyboard: false, scrollWheelZoom: false, attributionControl: true });
    map.attributionControl.setPrefix("Leaflet");
    markers = L.layerGroup().addTo(map);
  }

  function drawMap(data) {
    ensureMap();
    if (!map) return;
    if (data.map && data.map.tiles && !map._civicTiles) {
      L.tileLayer(data.map.tiles, { attribution: data.map.attribution || "" }).addTo(map);
      map._civicTiles = true;
    }
    const placed = data.stations.filter((station) => station.lat !== null && station.lon !== null);
    const points = placed.map((station) => [station.lat, station.lon]);
    if (!fitted) {  // a view first: markers get their elements only on a map with a view
      if (points.length) map.fitBounds(points, { padding: [40, 40], maxZoom: 12 });
      else map.setView([0, 0], 1);
      fitted = points.length > 0;
    }
    markers.clearLayers();
    for (const station of placed) {
      const icon = L.divIcon({ className: "station", html: "", iconSize: null });
      const marker = L.marker([station.lat, station.lon], {
        icon: icon, interactive: false, keyboard: false,
      }).addTo(markers);
      const root = marker.getElement();
      if (!root) continue;
      const pin = el("div", station.aqi === null ? "–" : station.aqi, "pin");
      pin.style.backgroundColor = station.color;
      pin.style.color = station.text_color;
      root.appendChild(pin);
      root.appendChild(el("div", station.name, "pin-name"));
    }
  }

  function drawTable(data) {
    const body = document.querySelector("#stations tbody");
    const rows = [];
    for (const station of data.stations) {
      const row = el("tr");
      row.dataset.station = station.station_id;
      row.dataset.category = station.category || "";
      const name = el("th", station.name);
      name.scope = "row";
      row.appendChild(name);
      row.appendChild(cell("AQI", station.aqi === null ? "no index" : station.aqi, "aqi"));
      const category = cell("Category", null, "category");
      const label = el("span", station.category || "No index");
      label.style.backgroundColor = station.color;
      label.style.color = station.text_color;
      category.appendChild(label);
      row.appendChild(category);
      row.appendChild(cell("Main pollutant", pollutantName(station.main_pollutant)));
      row.appendChild(cell("Hour", hourText(station.hour_start, data.timezone)));
      row.appendChild(cell("What it means", station.health_message || station.guidance, "guidance"));
      rows.push(row);
    }
    if (!rows.length) {
      const empty = el("tr", null, "empty");
      const cell = el("td", "No air-quality data yet.");
      cell.colSpan = 6;
      empty.appendChild(cell);
      rows.push(empty);
    }
    body.replaceChildren(...rows);
  }

  function drawLegend(categories) {
    const list = document.getElementById("legend");
    if (list.childElementCount === categories.length) return;
    list.replaceChildren(...categories.map((category) => {
      const item = el("li");
      const head = el("div");
      const swatch = el("span", category.name, "swatch");
      swatch.style.backgroundColor = category.color;
      swatch.style.color = category.text_color;
      head.appendChild(swatch);
      const range = category.high === null ? `AQI ${category.low} and above`
        : `AQI ${category.low}–${category.high}`;
      head.appendChild(el("span", range, "range"));
      item.appendChild(head);
      item.appendChild(el("p", category.guidance));
      return item;
    }));
  }

  function setStatus(text, error) {
    const status = document.getElementById("status");
    status.textContent = text;
    status.classList.toggle("error", Boolean(error));
  }

  async function getJSON(url) {
    const response = await fetch(url, { cache: "no-store", headers: { Accept: "application/json" } });
    if (!response.ok) {
      let message = response.statusText;
      try { message = (await response.json()).message || message; } catch (error) { /* keep */ }
      throw new Error(`${response.status} ${message}`);
    }
    return response.json();
  }

  async function refreshAirQuality() {
    const data = await getJSON("/api/air-quality/now");
    pollSeconds = Math.max(1, data.poll_seconds || 60);
    document.getElementById("city").textContent = data.city;
    document.querySelector("#stations caption").textContent =
      `The latest hourly US EPA Air Quality Index (AQI) of each station; hours in ${data.timezone} time`;
    document.title = `${data.city}: air quality now`;
    drawLegend(data.categories);
    drawTable(data);
    drawMap(data);
    const now = new Date().toLocaleTimeString("en-GB", { hour12: false });
    const count = data.stations.length;
    setStatus(`${count} station${count === 1 ? "" : "s"} · updated ${now} · `
      + `refreshes every ${pollSeconds} s`);
    document.body.dataset.updated = data.generated_at;
  }

  async function refreshIncidents() {
    const section = document.getElementById("incidents");
    const listing = await getJSON("/api/datasets");
    const dataset = listing.datasets.find((item) => item.name === "incident_counts");
    const fields = dataset ? new Set(dataset.fields.map((field) => field.name)) : new Set();
    if (!dataset || !dataset.temporal || !dataset.time_field
        || !fields.has("district") || !fields.has("count")) {
      section.hidden = true;
      return;
    }
    const end = new Date(dataset.temporal.end);
    const since = new Date(end.getTime() - (INCIDENT_DAYS - 1) * 86400000);
    const sinceText = dataset.temporal.end.length === 10
      ? since.toISOString().slice(0, 10) : since.toISOString();
    const params = new URLSearchParams({ since: sinceText, limit: "10000" });
    if (fields.has("category")) params.set("category", "all");
    const page = await getJSON(`/api/datasets/incident_counts/records?${params}`);
    const totals = new Map();
    for (const record of page.records) {
      const entry = totals.get(record.district) || { count: 0, suppressed: 0 };
      if (record.count === null) entry.suppressed += 1; else entry.count += record.count;
      totals.set(record.district, entry);
    }
    const rows = [...totals.entries()].sort((a, b) => b[1].count - a[1].count).map(([district, entry]) => {
      const row = el("tr");
      row.dataset.district = district;
      const name = el("th", district);
      name.scope = "row";
      row.appendChild(name);
      row.appendChild(el("td", entry.count));
      row.appendChild(el("td", entry.suppressed));
      return row;
    });
    document.querySelector("#incident-table tbody").replaceChildren(...rows);
    document.getElementById("incidents-period").textContent =
      `The ${INCIDENT_DAYS} days up to ${dataset.temporal.end.slice(0, 10)}. Days with fewer `
      + "than 3 incidents in a district are not published, to protect privacy.";
    section.hidden = rows.length === 0;
  }

  async function refresh() {
    try {
      await refreshAirQuality();
    } catch (error) {
      setStatus(`Could not refresh the air quality (${error.message}); trying again soon.`, true);
    }
    try {
      await refreshIncidents();
    } catch (error) {
      document.getElementById("incidents").hidden = true;
    }
    clearTimeout(timer);
    timer = setTimeout(refresh, pollSeconds * 1000);
  }

  document.addEventListener("DOMContentLoaded", refresh);
})();
