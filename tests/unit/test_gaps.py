"""Gaps in raw offsets: seek back for records Faust skipped, move on past ones that are gone."""

from streams.gaps import GapDecision, GapPolicy


def test_records_that_exist_are_fetched_again():
    assert GapPolicy.resolve(10, 10) == GapDecision("seek", 10)


def test_a_probe_without_answer_never_skips_anything():
    assert GapPolicy.resolve(10, None) == GapDecision("seek", 10)


def test_offsets_without_records_are_moved_past():
    # transaction markers, compaction, or records deleted by retention
    assert GapPolicy.resolve(10, 14) == GapDecision("accept", 14)


def test_records_still_buffered_after_a_seek_do_not_trigger_it_again_at_once():
    policy = GapPolicy(reseek_after_s=3)
    assert policy.due(0, 10, now=0.0)
    assert not policy.due(0, 10, now=1.0)
    assert policy.due(0, 10, now=3.5)


def test_a_new_gap_and_other_partitions_are_acted_on_at_once():
    policy = GapPolicy()
    assert policy.due(0, 10, now=0.0)
    assert policy.due(0, 20, now=0.5)
    assert policy.due(1, 10, now=0.5)
