"""Sinks: the open-data store, the worker that fills it from Kafka, and its public face.

Errors are in `sinks.exceptions`; the store backends in `sinks.store` (SQLite) and
`sinks._postgres` (PostgreSQL), both over one schema (`sinks._migrations`) and one query
layer (`sinks._query`); the worker's batch statistics and command line in `sinks.worker`;
the HTTP API, the DCAT-US catalog and the residents' page in `sinks.api`. `SinkWorker` is
imported on first use, so readers of the store (API, CLI) do not load the Kafka client.

Adding a dataset (the same steps for both backends):

1. `sinks._datasets`: its `Dataset(...)` with `catalog=Catalog(...)` (title, description,
   keywords, update frequency, a `Field` for every column) and, where they apply,
   `time_column` (since/until, temporal coverage), `coordinates` (lat, lon columns) or
   `station_column` (placed at the city's stations), `revision`; then its entry in
   `DATASETS`. The API, data.json and OpenAPI pick it up from there.
2. `sinks._migrations.MIGRATIONS`: ONE new step, e.g.
   ``(3, (CreateTable("aqi_daily", columns=(Column("station_id", "text"), ...),
   key=("station_id", "day")), CreateIndex(...)))`` with the columns written out (a frozen
   copy). A column added to an existing dataset is an ``AddColumn`` step (nullable).
3. Its contract in schemas/ and its topic in `schemas.Topics`.

Porting a step written for SQLite only (``CREATE TABLE x (... TEXT NOT NULL ...)``): turn
it into ``CreateTable`` with the same columns (TEXT -> "text", or "hour"/"millis"/"json"
as the Dataset says; INTEGER -> "int"; REAL -> "real"; without NOT NULL ->
nullable=True), ``CREATE INDEX`` into ``CreateIndex`` and ``ALTER TABLE ADD COLUMN`` into
``AddColumn``; renumber steps after the ones already on main. The tests check that the
steps give every dataset exactly its columns and key on both backends
(tests/unit/test_store_backends.py) and that every dataset has complete catalog
metadata (tests/unit/test_catalog.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sinks.store import Store, open_store

if TYPE_CHECKING:
    from sinks.worker import SinkWorker

__all__ = ["SinkWorker", "Store", "open_store"]


def __getattr__(name: str) -> Any:
    if name == "SinkWorker":
        from sinks.worker import SinkWorker

        return SinkWorker
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
