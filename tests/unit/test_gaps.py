"""Gaps in raw offsets: seek back for records Faust skipped, move on past ones that are gone."""

from streams.gaps import GapDecision, GapPolicy


def test_a_new_gap_is_answered_by_seeking_back():
    assert GapPolicy().decide(0, 10, 12, earliest=0, now=0.0) == GapDecision("seek", 10)


def test_records_still_buffered_after_a_seek_do_not_seek_again_at_once():
    policy = GapPolicy()
    policy.decide(0, 10, 12, earliest=0, now=0.0)
    assert policy.decide(0, 10, 13, earliest=0, now=1.0).action == "wait"
    assert policy.decide(0, 10, 12, earliest=0, now=3.5) == GapDecision("seek", 10)


def test_an_offset_that_never_comes_back_is_accepted_after_a_few_tries():
    policy = GapPolicy(attempts=3, patience_s=10, reseek_after_s=3)
    decisions = [policy.decide(0, 10, 11, earliest=0, now=t).action for t in (0, 3, 6, 9, 12)]
    assert decisions == ["seek", "seek", "seek", "seek", "accept"]
    assert policy.decide(0, 10, 11, earliest=0, now=20).action == "seek"  # a fresh gap


def test_records_removed_by_retention_are_accepted_at_once():
    assert GapPolicy().decide(0, 10, 500, earliest=400, now=0.0) == GapDecision("accept", 400)


def test_partitions_are_independent():
    policy = GapPolicy()
    policy.decide(0, 10, 12, earliest=0, now=0.0)
    assert policy.decide(1, 7, 9, earliest=0, now=0.5) == GapDecision("seek", 7)
