"""`civicstream diff-datasets A B`: do two namespaces hold the same open data?

Compares every dataset of the store (`sinks._datasets.DATASETS`, so new datasets join by
themselves) row by row on the natural key: rows only in A, rows only in B, and rows whose
other columns differ (named). Exit status 0 when every dataset is equal, 1 when any differs,
2 when a store cannot be read.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from civicstream.namespaces import resolve_store_url, store_exists
from civicstream.settings import Settings

__all__ = ["DatasetDiff", "compare_stores", "diff_datasets", "register"]

Key = tuple[Any, ...]


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


def _by_key(rows: Sequence[Mapping[str, Any]], key: Sequence[str]) -> dict[Key, Mapping[str, Any]]:
    return {tuple(row[name] for name in key): row for row in rows}


def compare_stores(
    url_a: str,
    url_b: str,
    datasets: Collection[str] | None = None,
    ignore: Collection[str] = (),
) -> list[DatasetDiff]:
    """Each dataset's differences, in `DATASETS` order. One dataset of each store is held
    in memory at a time."""
    from sinks._datasets import DATASETS
    from sinks.store import open_store

    results = []
    with open_store(url_a) as store_a, open_store(url_b) as store_b:
        for name, ds in DATASETS.items():
            if datasets is not None and name not in datasets:
                continue
            compared = [c for c in ds.column_names if c not in ds.key and c not in ignore]
            rows_a = _by_key(store_a.fetch(name), ds.key)
            rows_b = _by_key(store_b.fetch(name), ds.key)
            diff = DatasetDiff(name, len(rows_a), len(rows_b))
            for key in sorted(rows_a.keys() | rows_b.keys()):
                row_a, row_b = rows_a.get(key), rows_b.get(key)
                if row_b is None:
                    diff.only_a.append(key)
                elif row_a is None:
                    diff.only_b.append(key)
                else:
                    columns = tuple(c for c in compared if row_a[c] != row_b[c])
                    if columns:
                        diff.changed.append((key, columns))
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
