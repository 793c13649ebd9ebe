"""`civicstream diff-datasets A B`: do two namespaces hold the same open data?

Compares every dataset of the store (`sinks._datasets.DATASETS`, so new datasets join by
themselves) row by row on the natural key: rows only in A, rows only in B, and rows whose
other columns differ (named). Exit status 0 when every dataset is equal, 1 when any differs,
2 when a store cannot be read.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from civicstream.namespaces import resolve_store_url, store_exists
from civicstream.settings import Settings

__all__ = ["DatasetDiff", "compare_stores", "diff_datasets", "register"]

Key = tuple[Any, ...]
Row = tuple[Any, ...]


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "diff-datasets",
        help="compare the datasets of two namespaces (or a namespace and live)",
        description=(
            "Compare every dataset of two stores by natural key and print the keys that "
            "differ. A and B are 'live', a replay namespace name, or a store URL. "
            "Exit status: 0 all equal, 1 some differ, 2 a store cannot be read."
        ),
    )
    parser.add_argument("a", metavar="A")
    parser.add_argument("b", metavar="B")
    parser.add_argument("--datasets", help="only these datasets (comma-separated)")
    parser.add_argument(
        "--ignore-columns",
        default="",
        help="columns not to compare, comma-separated (e.g. revision)",
    )
    parser.add_argument(
        "--max-keys",
        type=int,
        default=20,
        help="differing keys to print per dataset and kind; 0 = all [%(default)s]",
    )
    parser.set_defaults(handler=diff_datasets)


@dataclass
class DatasetDiff:
    """How one dataset differs between store A and store B."""

    name: str
    rows_a: int = 0
    rows_b: int = 0
    only_a: list[Key] = field(default_factory=list)
    only_b: list[Key] = field(default_factory=list)
    changed: list[tuple[Key, tuple[str, ...]]] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        return not (self.only_a or self.only_b or self.changed)


class _Unordered(Exception):
    """A store returned keys out of Python's order (a collation that sorts otherwise)."""


def _sorted_rows(store: Any, ds: Any) -> Iterator[tuple[Key, Row]]:
    """(key, row) of every row, streamed in natural-key order; `_Unordered` if the store's
    order is not Python's (then the comparison falls back to reading it whole)."""
    from sinks._query import Order, RecordQuery

    query = RecordQuery(ds, order=tuple(Order(name) for name in ds.key), limit=None)
    at = [ds.column_names.index(name) for name in ds.key]
    previous: Key | None = None
    rows = store.stream(query)
    try:
        for chunk in rows:
            for row in chunk:
                key = tuple(row[i] for i in at)
                if previous is not None and not key > previous:
                    raise _Unordered
                previous = key
                yield key, row
    finally:
        rows.close()


def _compare_streams(
    ds: Any, a: Iterator[tuple[Key, Row]], b: Iterator[tuple[Key, Row]], compared: Sequence[int]
) -> DatasetDiff:
    """A merge join of two key-ordered streams: memory stays flat however large."""
    names = ds.column_names
    diff = DatasetDiff(ds.name)
    item_a, item_b = next(a, None), next(b, None)
    while item_a is not None or item_b is not None:
        if item_b is None or (item_a is not None and item_a[0] < item_b[0]):
            assert item_a is not None
            diff.only_a.append(item_a[0])
            diff.rows_a += 1
            item_a = next(a, None)
        elif item_a is None or item_b[0] < item_a[0]:
            diff.only_b.append(item_b[0])
            diff.rows_b += 1
            item_b = next(b, None)
        else:
            row_a, row_b = item_a[1], item_b[1]
            columns = tuple(names[i] for i in compared if row_a[i] != row_b[i])
            if columns:
                diff.changed.append((item_a[0], columns))
            diff.rows_a += 1
            diff.rows_b += 1
            item_a, item_b = next(a, None), next(b, None)
    return diff


def _in_memory(ds: Any, store_a: Any, store_b: Any, compared: Sequence[int]) -> DatasetDiff:
    at = [ds.column_names.index(name) for name in ds.key]

    def keyed(store: Any) -> Iterator[tuple[Key, Row]]:
        rows = [tuple(r[c] for c in ds.column_names) for r in store.fetch(ds.name)]
        return iter(sorted((tuple(row[i] for i in at), row) for row in rows))

    return _compare_streams(ds, keyed(store_a), keyed(store_b), compared)


def compare_stores(
    url_a: str,
    url_b: str,
    datasets: Collection[str] | None = None,
    ignore: Collection[str] = (),
) -> list[DatasetDiff]:
    """Each dataset's differences, in `DATASETS` order, both stores streamed in key order
    (a store whose order differs from Python's is read whole instead)."""
    from sinks._datasets import DATASETS
    from sinks.store import open_store

    results = []
    with open_store(url_a) as store_a, open_store(url_b) as store_b:
        for name, ds in DATASETS.items():
            if datasets is not None and name not in datasets:
                continue
            compared = [
                i
                for i, column in enumerate(ds.column_names)
                if column not in ds.key and column not in ignore
            ]
            try:
                diff = _compare_streams(
                    ds, _sorted_rows(store_a, ds), _sorted_rows(store_b, ds), compared
                )
            except _Unordered:
                diff = _in_memory(ds, store_a, store_b, compared)
            results.append(diff)
    return results


def _key_text(names: Sequence[str], key: Key) -> str:
    return " ".join(f"{name}={value}" for name, value in zip(names, key, strict=True))


def report(
    diffs: Sequence[DatasetDiff], label_a: str, label_b: str, max_keys: int, out: TextIO
) -> None:
    from sinks._datasets import DATASETS

    width = max((len(d.name) for d in diffs), default=0)
    for diff in diffs:
        if diff.equal:
            out.write(f"{diff.name:{width}}  equal      {diff.rows_a:,} rows\n")
            continue
        out.write(
            f"{diff.name:{width}}  DIFFERENT  {len(diff.only_a):,} only in {label_a}, "
            f"{len(diff.only_b):,} only in {label_b}, {len(diff.changed):,} changed "
            f"({diff.rows_a:,} rows in {label_a}, {diff.rows_b:,} in {label_b})\n"
        )
        key = DATASETS[diff.name].key
        listed: list[tuple[str, list[str]]] = [
            (f"only in {label_a}", [_key_text(key, k) for k in diff.only_a]),
            (f"only in {label_b}", [_key_text(key, k) for k in diff.only_b]),
            (
                "changed",
                [f"{_key_text(key, k)}  ({', '.join(cols)})" for k, cols in diff.changed],
            ),
        ]
        for kind, lines in listed:
            shown = lines if max_keys <= 0 else lines[:max_keys]
            for line in shown:
                out.write(f"  {kind}: {line}\n")
            if len(lines) > len(shown):
                out.write(f"  {kind}: … and {len(lines) - len(shown):,} more\n")


def diff_datasets(settings: Settings, args: argparse.Namespace) -> int:
    from sinks.exceptions import StoreError

    urls = {}
    for label in (args.a, args.b):
        url = resolve_store_url(settings, label)
        if not store_exists(url):
            print(f"civicstream diff-datasets: {label}: no store at {url}", file=sys.stderr)
            return 2
        urls[label] = url
    datasets = None
    if args.datasets:
        datasets = {name.strip() for name in args.datasets.split(",") if name.strip()}
    ignore = {name.strip() for name in args.ignore_columns.split(",") if name.strip()}
    try:
        diffs = compare_stores(urls[args.a], urls[args.b], datasets, ignore)
    except StoreError as error:
        print(f"civicstream diff-datasets: {error}", file=sys.stderr)
        return 2
    print(f"A = {args.a} ({urls[args.a]})\nB = {args.b} ({urls[args.b]})")
    report(diffs, "A", "B", args.max_keys, sys.stdout)
    equal = all(diff.equal for diff in diffs)
    print("all datasets equal" if equal else "datasets differ")
    return 0 if equal else 1
