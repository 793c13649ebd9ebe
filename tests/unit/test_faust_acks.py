"""Faust's commit bookkeeping, kept commit-able (streams.app.drop_stale_acks)."""

from __future__ import annotations

from types import SimpleNamespace

from faust.types import TP

from streams.app import drop_stale_acks

RAW = TP("civic.raw.air-quality", 1)


def consumer(acked: list[int], committed: int | None) -> SimpleNamespace:
    return SimpleNamespace(
        _acked={RAW: list(acked)},
        _acked_index={RAW: set(acked)},
        _committed_offset={RAW: committed},
    )


def test_offsets_acked_twice_or_already_committed_are_dropped() -> None:
    """As seen after a restart: 915..920 with repeats, committed 916."""
    seen = consumer([915, 916, 916, 917, 917, 918, 919, 919, 920], committed=916)
    assert drop_stale_acks(seen) == 4
    assert seen._acked[RAW] == [916, 917, 918, 919, 920]
    assert seen._acked_index[RAW] == {916, 917, 918, 919, 920}


def test_a_clean_list_is_left_as_it_is() -> None:
    seen = consumer([916, 917, 919], committed=916)
    before = seen._acked[RAW]
    assert drop_stale_acks(seen) == 0
    assert seen._acked[RAW] is before and before == [916, 917, 919]
