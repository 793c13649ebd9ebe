"""The incident pipeline step, as a pure function of a batch of raw records and state.

Raw row → parse (schemas) → merge into its incident (one row per offence code) → after the
publication delay, publish it privacy-safe (processors.privacy) and count it in its
district, category and local day → when the day is complete, publish its counts with a
baseline and a spike flag (processors.incident_stats); a later report publishes the day
again with a higher revision. The Faust agent in streams.app only moves records in and
out; every decision is made here, so it is tested without a broker.

Time (event time only, per source):

- **Stream time** of a source is the latest time at which one of its incidents became
  known: its report time (``reported_at``), or its occurrence where the source has no
  report time (Pittsburgh's alarm time). Report time, not occurrence, because that is the
  order in which a feed delivers rows: an incident reported five weeks late must not move
  the clock five weeks back, and a burst of late reports about old incidents must not hold
  it still. A heartbeat (``{"source": ..., "heartbeat": ts}``) moves it too.
- **Publication**: an incident is published when its source's stream time reaches the
  time it became known plus the publication delay (72 h by default), so nothing is public
  before the delay has passed in stream time, however late it was reported.
- **A day's counts** (local day of the city, from ``occurred_at``) are published first when
  stream time reaches the end of the day plus the publication delay: every incident
  reported by the end of the day is in them. Each later report of that day publishes the
  day again with the next revision (a late correction).
- **Allowed lateness** (13 weeks by default): a row that arrives when stream time is past
  the end of its day plus the allowed lateness is dead-lettered ``late``; the day's state
  is then dropped (its counts stay 28 more days for the baselines).

State lives in one changelog-backed table, as small JSON values under keys: ``i/<id>``
(an incident: its rows and when it falls due), ``c/<day number>/<district>`` (a day's cell:
which incident is counted under which category at which revision, what was published),
``q/<utc day>/<source>`` (what falls due that day: publications, first publications of
days, expiries) and ``\\x00meta`` (each source's stream time, each district's first day).
An incident is public once its due time is behind the stream time, so publishing it
writes its cell only. All rows of all sources travel in one partition
(schemas.topics.SINGLE_PARTITION), so results depend only on the order of the rows: a
replay reproduces them byte for byte, revisions included.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from processors import incident_stats
from processors.privacy import public_location
from processors.taxonomy import ALL, Offence, most_serious, severity
from schemas import InvalidInput, Reason, Topics, encode
from schemas.raw_incident import IncidentHeartbeat, RawIncident, parse_raw_incident
from streams.air_quality import Gap, Output, SourceRecord
from streams.incident_state import (
    DAY_MS,
    PROGRESS_PREFIX,
    BatchState,
    IncidentSource,
    IncidentStateStore,
    IncidentStateUpdate,
    cell_key,
    cell_of,
    day_end_ms,
    incident_progress_update,
    local_day,
)
from streams.time import MAX_AHEAD_MS, REANCHOR_AFTER, far_ahead

__all__ = [
    "DAY_MS",
    "IncidentBatchResult",
    "IncidentPipeline",
    "IncidentSource",
    "IncidentStateStore",
    "IncidentStateUpdate",
    "incident_progress_update",
    "local_day",
]

UNKNOWN_DISTRICT = "unknown"
# A row may say it occurred a little after it was reported (clocks of two systems);
# more than this is a data error, not an incident.
_REPORTED_BEFORE_OCCURRED_MS = 3_600_000
# Kinds of due items, in the order they run when due at the same moment: an incident is
# published (and counted) before its day's counts go out, before the day expires.
_PUBLISH, _CLOSE, _EXPIRE, _PRUNE = range(4)
_META = "\x00meta"


@dataclass
class IncidentBatchResult:
    """What one batch produced; `outputs` must be durable before `state_updates` are
    written (the state remembers which source offsets it has applied)."""

    outputs: list[Output] = field(default_factory=list)
    state_updates: list[IncidentStateUpdate] = field(default_factory=list)
    gaps: dict[int, Gap] = field(default_factory=dict)
    accepted: int = 0
    unchanged: int = 0
    heartbeats: int = 0
    redelivered: int = 0
    skipped: int = 0
    published: int = 0
    stats_rows: int = 0
    corrections: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)


class _Rejected(Exception):
    def __init__(self, reason: Reason, detail: str, event_ts: int | None = None) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.event_ts = event_ts


class IncidentPipeline:
    """Merges incident rows, publishes them privacy-safe, counts them per day."""

    def __init__(self, topics: Topics, sources: Mapping[str, IncidentSource]) -> None:
        self.topics = topics
        self.sources = dict(sources)

    # -- the batch -------------------------------------------------------------------------
    def process(
        self, records: Sequence[SourceRecord], store: IncidentStateStore
    ) -> IncidentBatchResult:
        """Apply a batch in order; return outputs in produce order, then the state writes.

        `store` is only read; the caller writes `state_updates` once the outputs are durable.
        """
        result = IncidentBatchResult()
        run = _Run(self, BatchState(store), result)
        next_offsets: dict[int, int | None] = {}
        for record in records:
            partition = record.partition
            if partition not in next_offsets:
                progress = run.state.get(f"{PROGRESS_PREFIX}{partition}")
                next_offsets[partition] = progress["next_offset"] if progress else None
            expected = next_offsets[partition]
            if expected is not None and record.offset < expected:
                result.redelivered += 1
                continue
            if expected is not None and record.offset > expected:
                gap = result.gaps.get(partition)
                if gap is None or record.offset < gap.first_seen:
                    result.gaps[partition] = Gap(expected, record.offset)
                result.skipped += 1
                continue
            next_offsets[partition] = record.offset + 1
            try:
                run.apply(record)
            except _Rejected as rejected:
                self._dead_letter(record, rejected, result)
            except Exception as error:  # a gap in validation must not stop the worker
                detail = f"{type(error).__name__}: {error}"
                self._dead_letter(record, _Rejected(Reason.UNPROCESSABLE, detail), result)
            run.emit_counts()
        partitions = [p for p, offset in next_offsets.items() if offset is not None]
        state_partition = min(partitions) if partitions else 0
        result.state_updates.extend(run.state.updates(state_partition))
        # Progress last: a crash before it re-delivers records whose effects the state
        # already holds, and the rows' set semantics make applying them again a no-op.
        for partition, next_offset in sorted(next_offsets.items()):
            if next_offset is not None:
                result.state_updates.append(incident_progress_update(partition, next_offset))
        return result

    def _dead_letter(
        self, record: SourceRecord, rejected: _Rejected, result: IncidentBatchResult
    ) -> None:
        result.dead_letters[rejected.reason.value] += 1
        letter = {
            "source_topic": record.topic,
            "source_partition": record.partition,
            "source_offset": record.offset,
            "key": record.key,
            "value": record.value,
            "reason": rejected.reason.value,
            "detail": rejected.detail,
            "event_ts": rejected.event_ts,
        }
        result.outputs.append(
            Output(self.topics.deadletter, record.key, encode("deadletter", letter))
        )


class _Run:
    """One batch's work on the state (kept apart so `process` reads as the protocol)."""

    def __init__(self, pipeline: IncidentPipeline, state: BatchState, result: IncidentBatchResult):
        self.topics = pipeline.topics
        self.sources = pipeline.sources
        self.state = state
        self.result = result
        self.dirty_cells: set[str] = set()
        self.now: dict[str, list[tuple[int, int, str]]] = {}
        meta = state.get(_META)
        self.meta: dict[str, Any] = meta or {"v": 1, "clock": {}, "done": {}, "first_day": {}}

    # -- one record ------------------------------------------------------------------------
    def apply(self, record: SourceRecord) -> None:
        if not record.value:
            raise _Rejected(Reason.INVALID_ENCODING, "empty message value")
        try:
            parsed = parse_raw_incident(record.value)
        except InvalidInput as error:
            raise _Rejected(error.reason, error.detail) from None
        source = self.sources.get(parsed.source)
        if source is None:
            known = ", ".join(sorted(self.sources)) or "none"
            detail = f"no city configuration declares source {parsed.source!r} (known: {known})"
            raise _Rejected(Reason.UNKNOWN_SOURCE, detail)
        if isinstance(parsed, IncidentHeartbeat):
            self._tick(source, parsed.ts_ms)
            self.result.heartbeats += 1
            return
        self._incident(record, parsed, source)

    def _incident(self, record: SourceRecord, row: RawIncident, source: IncidentSource) -> None:
        if record.key != row.incident_id.encode():
            detail = f"message key {record.key!r} must be the incident_id {row.incident_id!r}"
            raise _Rejected(Reason.WRONG_KEY, detail, row.occurred_ms)
        if row.reported_ms is not None and (
            row.occurred_ms > row.reported_ms + _REPORTED_BEFORE_OCCURRED_MS
        ):
            detail = "occurred_at is after reported_at: the incident cannot be reported before it"
            raise _Rejected(Reason.INVALID_TIMESTAMP, detail, row.occurred_ms)
        runs = self.meta.setdefault("ahead", {})
        stored = runs.get(source.name)  # a list in the JSON state; far_ahead takes a tuple
        rejected, run = far_ahead(
            self.meta["clock"].get(source.name),
            row.known_ms,
            None if stored is None else (stored[0], stored[1]),
        )
        if run is not None or runs.pop(source.name, None) is not None:
            if run is not None:
                runs[source.name] = list(run)
            self.state.put(_META, self.meta)
        if rejected:
            detail = (
                f"known at {row.known_ms}, more than {MAX_AHEAD_MS // DAY_MS} days ahead of the "
                f"source's stream time {self.meta['clock'][source.name]} (a clock error; "
                f"{REANCHOR_AFTER + 1} agreeing rows in a row move stream time)"
            )
            raise _Rejected(Reason.INVALID_TIMESTAMP, detail, row.occurred_ms)
        self._tick(source, row.known_ms)
        day = local_day(row.occurred_ms, source.timezone).toordinal()
        expires = day_end_ms(day, source.timezone) + source.allowed_lateness_ms
        clock = self.meta["clock"][source.name]
        if clock >= expires:
            detail = (
                f"day {date.fromordinal(day)} closed for corrections at stream time {clock}"
                f" (allowed lateness {source.allowed_lateness_ms} ms)"
            )
            raise _Rejected(Reason.LATE, detail, row.occurred_ms)
        key = f"i/{row.incident_id}"
        incident = self.state.get(key)
        if incident is not None and incident["source"] != source.name:
            detail = f"incident {row.incident_id!r} belongs to source {incident['source']!r}"
            raise _Rejected(Reason.INVALID_FIELD, detail, row.occurred_ms)
        code = row.offence_code or ""
        offence = [row.category, row.subcategory, row.description]
        fields = {
            "occurred": row.occurred_ms,
            "reported": row.reported_ms,
            "address": row.address,
            "lat": row.lat,
            "lon": row.lon,
            "district": row.district or UNKNOWN_DISTRICT,
            "status": row.status,
        }
        published_at = None
        if incident is None:
            due = row.known_ms + source.privacy.publication_delay_ms
            incident = {"source": source.name, "rows": {}, "fields": fields, "due": due}
            self._schedule(source, due, _PUBLISH, key)
        elif incident["rows"].get(code) == offence and incident["fields"] == fields:
            self.result.unchanged += 1
            return
        elif incident["due"] <= self.meta["done"][source.name]:  # already public
            old = incident["fields"]
            published_at = (
                local_day(old["occurred"], source.timezone).toordinal(),
                old["district"],
            )
        incident["rows"][code] = offence
        incident["fields"] = fields  # the latest row speaks for the incident
        self.state.put(key, incident)
        self.result.accepted += 1
        if published_at is not None:
            self._publish(key, source, published_at)  # publish the correction now
        self._advance(source)

    # -- time --------------------------------------------------------------------------------
    def _tick(self, source: IncidentSource, ts_ms: int) -> None:
        clock = self.meta["clock"].get(source.name)
        if clock is None or ts_ms > clock:
            self.meta["clock"][source.name] = ts_ms
            self.state.put(_META, self.meta)
        self._advance(source)

    def _schedule(self, source: IncidentSource, due: int, kind: int, key: str) -> None:
        done = self.meta["done"].get(source.name)
        if done is not None and due <= done:
            heapq.heappush(self.now.setdefault(source.name, []), (due, kind, key))
            return
        bucket_key = f"q/{due // DAY_MS}/{source.name}"
        bucket = self.state.get(bucket_key) or []
        heapq.heappush(bucket, [due, kind, key])
        self.state.put(bucket_key, bucket)

    def _advance(self, source: IncidentSource) -> None:
        """Run, in time order, everything of `source` that is due by its stream time."""
        clock = self.meta["clock"][source.name]
        done = self.meta["done"].get(source.name)
        due = self.now.setdefault(source.name, [])
        if done is not None and clock <= done and not due:
            return
        if done is None or clock > done:
            first = (done if done is not None else clock) // DAY_MS
            for day in range(first, clock // DAY_MS + 1):
                bucket_key = f"q/{day}/{source.name}"
                bucket = self.state.get(bucket_key)
                if not bucket or bucket[0][0] > clock:
                    continue
                while bucket and bucket[0][0] <= clock:
                    item = heapq.heappop(bucket)
                    heapq.heappush(due, (item[0], item[1], item[2]))
                self.state.put(bucket_key, bucket or None)
            self.meta["done"][source.name] = clock
            self.state.put(_META, self.meta)
        while due:
            _, kind, key = heapq.heappop(due)
            if kind == _PUBLISH:
                self._publish(key, source)
            elif kind == _CLOSE:
                self._close(key)
            elif kind == _EXPIRE:
                self._expire(key)
            else:
                self.state.delete(key)

    # -- incidents -------------------------------------------------------------------------
    def _publish(
        self, key: str, source: IncidentSource, published_at: tuple[int, str] | None = None
    ) -> None:
        """Publish an incident: first when it falls due, again after a row changed it.

        `published_at` is the (day, district) it is counted in when it is already public.
        """
        incident = self.state.get(key)
        if incident is None:
            return
        incident_id = key[2:]
        fields = incident["fields"]
        offences = [
            Offence(code, *row, common=source.taxonomy.classify(row[0], code))
            for code, row in sorted(incident["rows"].items())
        ]
        top = most_serious(offences)
        sensitive = source.privacy.any_sensitive(offences, fields["status"])
        location = public_location(
            fields["address"],
            fields["lat"],
            fields["lon"],
            sensitive=sensitive,
            rules=source.privacy,
        )
        day = local_day(fields["occurred"], source.timezone)
        cell_at = (day.toordinal(), fields["district"])
        revision = 1
        old_cell = self.state.get(cell_key(*published_at)) if published_at else None
        entry = old_cell["ids"].get(incident_id) if old_cell else None
        if entry is None:  # an incident's state lives no longer than its day's: never here
            published_at = None
        if published_at is not None and old_cell is not None and entry is not None:
            common, last = entry
            revision = last + 1
            if published_at != cell_at or common != top.common:
                self._uncount(published_at, incident_id)
                self._count(cell_at, incident_id, top.common, revision, source)
            else:
                old_cell["ids"][incident_id] = [common, revision]
                self.state.put(cell_key(*published_at), old_cell)
        else:
            self._count(cell_at, incident_id, top.common, revision, source)
        record = {
            "incident_id": incident_id,
            "source": source.name,
            "revision": revision,
            "category": top.common,
            "source_category": top.category,
            "source_subcategory": top.subcategory,
            "description": top.description,
            "offence_codes": sorted(o.code for o in offences if o.code),
            "source_categories": sorted({o.category for o in offences if o.category}),
            "occurred_at": fields["occurred"],
            "day": day.isoformat(),
            "reported_at": fields["reported"],
            "district": fields["district"],
            "address": location.address,
            "lat": location.lat,
            "lon": location.lon,
            "location_withheld": location.withheld,
            "status": fields["status"],
        }
        self.result.outputs.append(
            Output(
                self.topics.incidents_published,
                incident_id.encode(),
                encode("incident_published", record),
            )
        )
        self.result.published += 1

    # -- daily counts ------------------------------------------------------------------------
    def _count(
        self,
        cell_at: tuple[int, str],
        incident_id: str,
        common: str,
        revision: int,
        source: IncidentSource,
    ) -> None:
        day, district = cell_at
        key = cell_key(day, district)
        cell = self.state.get(key)
        if cell is None:
            cell = {
                "source": source.name,
                "ids": {},  # incident id -> [category it is counted under, its revision]
                "n": {},  # category -> count
                "sent": {},  # category -> [count, revision] last published
                "closed": False,
            }
            end = day_end_ms(day, source.timezone)
            delay = source.privacy.publication_delay_ms
            expires = end + source.allowed_lateness_ms + delay
            self._schedule(source, end + delay, _CLOSE, key)
            self._schedule(source, expires, _EXPIRE, key)
            # Kept for the baselines of the 28 days after it, until those expire too.
            self._schedule(
                source, expires + (incident_stats.BASELINE_DAYS + 1) * DAY_MS, _PRUNE, key
            )
            first = self.meta["first_day"].get(district)
            if first is None or day < first:
                self.meta["first_day"][district] = day
                self.state.put(_META, self.meta)
        cell["ids"][incident_id] = [common, revision]
        cell["n"][common] = cell["n"].get(common, 0) + 1
        self.state.put(key, cell)
        self.dirty_cells.add(key)

    def _uncount(self, cell_at: tuple[int, str], incident_id: str) -> None:
        key = cell_key(*cell_at)
        cell = self.state.get(key)
        entry = cell["ids"].pop(incident_id, None) if cell is not None else None
        if entry is not None:
            cell["n"][entry[0]] -= 1
            self.state.put(key, cell)
            self.dirty_cells.add(key)

    def _close(self, key: str) -> None:
        cell = self.state.get(key)
        if cell is not None:
            cell["closed"] = True
            self.state.put(key, cell)
            self.dirty_cells.add(key)

    def _expire(self, key: str) -> None:
        """The day takes no more corrections: keep its counts, forget its incidents."""
        cell = self.state.get(key)
        if cell is None:
            return
        for incident_id in cell["ids"]:
            self.state.delete(f"i/{incident_id}")
        cell["ids"] = {}
        self.state.put(key, cell)

    def emit_counts(self) -> None:
        """Publish the rows of complete days that the last record changed.

        The first time (the day is complete) every category with an incident that day is
        published, and ``all``, at revision 1; after that, each row whose count a late
        report changed is published again at its next revision (a category that a
        correction empties is published again with count 0, suppressed). Baselines are
        computed when a row is published; a correction of an earlier day does not
        republish the days after it.
        """
        for key in sorted(self.dirty_cells):
            cell = self.state.get(key)
            if cell is None or not cell["closed"]:
                continue
            day, district = cell_of(key)
            first = self.meta["first_day"].get(district, day)
            history_days = range(max(first, day - incident_stats.BASELINE_DAYS), day)
            history = [self.state.get(cell_key(d, district)) for d in history_days]
            past_counts = [c["n"] if c is not None else {} for c in history]
            counts = cell["n"]
            as_of = self.meta["clock"][cell["source"]]
            corrected = False
            present = {c for c, n in counts.items() if n} | set(cell["sent"])
            for category in [*sorted(present - {ALL}, key=severity), ALL]:
                count = sum(counts.values()) if category == ALL else counts.get(category, 0)
                sent = cell["sent"].get(category)
                if sent is not None and sent[0] == count:
                    continue
                if category == ALL:
                    past = [sum(c.values()) for c in past_counts]
                else:
                    past = [c.get(category, 0) for c in past_counts]
                revision = sent[1] + 1 if sent is not None else 1
                cell["sent"][category] = [count, revision]
                corrected = corrected or revision > 1
                published = incident_stats.count_cell(category, count, past)
                row = {
                    "district": district,
                    "category": category,
                    "day": date.fromordinal(day).isoformat(),
                    "count": published.count,
                    "suppressed": published.suppressed,
                    "baseline": published.baseline,
                    "baseline_days": published.baseline_days,
                    "spike": published.spike,
                    "tail_probability": published.tail_probability,
                    "revision": revision,
                    "as_of": as_of,
                }
                self.result.outputs.append(
                    Output(
                        self.topics.incidents_stats,
                        district.encode(),
                        encode("incident_count", row),
                    )
                )
                self.result.stats_rows += 1
            self.state.put(key, cell)
            if corrected:
                self.result.corrections += 1
        self.dirty_cells.clear()
