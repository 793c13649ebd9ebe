"""Replay namespaces: their topic prefix, consumer groups and open-data store.

A namespace NAME lives beside the live pipeline of the same settings:

- topics and consumer groups: the live prefix + ``replay-NAME.`` (so
  ``replay-2013.civic.raw.air-quality``, group ``replay-2013.civicstream-air-quality``);
- store: its own store, beside the live one. For SQLite that is a file next to the live
  file: ``data/civicstream.db`` → ``data/civicstream.replay-2013.db``. The tables are
  the same datasets with the same names, so every reader of a store reads a namespace too.
  Other backends name their namespace store explicitly (``--store``) until they have a
  rule of their own here.

``live`` names the live namespace itself.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from civicstream.settings import ConfigError, Settings

__all__ = [
    "LIVE",
    "check_name",
    "namespace_prefix",
    "namespace_store_url",
    "resolve_store_url",
    "store_exists",
]

LIVE = "live"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def check_name(name: str) -> str:
    """`name` if it can name a namespace (letters, digits, - and _; not 'live')."""
    if not _NAME.match(name) or name == LIVE:
        msg = (
            f"namespace {name!r}: use 1-64 letters, digits, '-' or '_' (and not {LIVE!r}, "
            "which names the live datasets)"
        )
        raise ConfigError(msg)
    return name


def namespace_prefix(live_prefix: str, name: str) -> str:
    """The topic and group prefix of namespace `name`."""
    return f"{live_prefix}replay-{check_name(name)}."


def namespace_store_url(live_url: str, name: str) -> str:
    """The store URL of namespace `name`, derived from the live store's URL."""
    check_name(name)
    prefix = "sqlite:///"
    if live_url.startswith(prefix) and ":memory:" not in live_url:
        path = PurePosixPath(live_url.removeprefix(prefix))
        return prefix + str(path.with_name(f"{path.stem}.replay-{name}{path.suffix or '.db'}"))
    msg = (
        f"cannot derive a store for namespace {name!r} from {live_url!r}; give the "
        "namespace's store URL explicitly"
    )
    raise ConfigError(msg)


def resolve_store_url(settings: Settings, spec: str) -> str:
    """A store URL from ``live``, a namespace name, or a URL (anything with ``://``)."""
    if "://" in spec:
        return spec
    if spec == LIVE:
        return settings.store_url
    return namespace_store_url(settings.store_url, spec)


def store_exists(url: str) -> bool:
    """False only for a SQLite file that does not exist (opening it would create it)."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and ":memory:" not in url:
        return Path(url.removeprefix(prefix)).is_file()
    return True
