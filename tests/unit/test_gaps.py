"""Gaps in raw offsets: seek back for records Faust skipped, move on past ones that are gone."""

from streams.gaps import CommitWatch, GapDecision, GapPolicy, StallWatch


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


# -- the watchdog: a stall, or a busy worker? --------------------------------------------------


def test_a_partition_ahead_without_progress_and_nothing_in_flight_is_rewound_on_the_second_tick():
    watch = StallWatch()
    assert not watch.check("raw-0", applied=100, ahead=150, in_flight=False, now=0.0)
    assert watch.check("raw-0", applied=100, ahead=150, in_flight=False, now=2.0)


def test_a_busy_worker_whose_records_wait_in_its_queue_is_not_rewound():
    """Found by the soak run: when a batch takes longer than two ticks (an hour closing for
    100 stations on a loaded machine), every partition's records wait in the agent's queue
    and the watchdog took that for a stall, rewinding all four partitions (16 times in 20
    minutes at 800 records/s, while the lag grew to 188,000; after the fix: no rewind, the
    lag stayed under 8,100 for 31 minutes)."""
    watch = StallWatch(in_flight_patience_s=60)
    for tick in range(29):  # 58 s of no progress with records in flight
        assert not watch.check("raw-0", applied=100, ahead=900, in_flight=True, now=2.0 * tick)
    assert watch.check("raw-0", applied=100, ahead=900, in_flight=True, now=60.0)


def test_progress_or_catching_up_resets_the_watch():
    watch = StallWatch()
    assert not watch.check("raw-0", applied=100, ahead=150, in_flight=False, now=0.0)
    assert not watch.check("raw-0", applied=120, ahead=150, in_flight=False, now=2.0)  # progress
    assert not watch.check("raw-0", applied=150, ahead=150, in_flight=False, now=4.0)  # caught up
    assert not watch.check("raw-0", applied=150, ahead=160, in_flight=False, now=6.0)
    assert watch.check("raw-0", applied=150, ahead=160, in_flight=False, now=8.0)
    assert not watch.check("raw-1", applied=None, ahead=10, in_flight=False, now=8.0)


def test_records_faust_dropped_where_nothing_was_committed_are_fetched_again_once():
    """Found by the scale-out test: Faust dropped the records it fetched around a
    rebalance and sought back to the committed offset, which does nothing where none is
    committed; nothing was read, so only the log's end shows what was skipped."""
    watch = StallWatch()
    assert not watch.check("raw-0", 100, ahead=None, in_flight=False, now=0.0, log_end=144)
    assert watch.check("raw-0", 100, ahead=None, in_flight=False, now=2.0, log_end=144)
    # a rewind to the end that brings nothing (the partition ends in transaction markers)
    # is not repeated
    for tick in range(2, 10):
        assert not watch.check(
            "raw-0", 100, ahead=100, in_flight=False, now=2.0 * tick, log_end=144
        )
    # after progress, a new shortfall at the end is acted on again
    assert not watch.check("raw-0", 150, ahead=150, in_flight=False, now=30.0, log_end=160)
    assert watch.check("raw-0", 150, ahead=150, in_flight=False, now=32.0, log_end=160)


def test_a_partition_read_to_its_end_is_left_alone():
    watch = StallWatch()
    for tick in range(5):
        assert not watch.check(
            "raw-0", 144, ahead=143, in_flight=False, now=2.0 * tick, log_end=144
        )


def test_applied_records_never_committed_are_committed_on_the_second_quiet_tick():
    """The records were applied (by the partition's previous owner) and their outputs are
    durable, but no ack here will ever commit them: the group's lag would never fall."""
    commits = CommitWatch()
    assert commits.check("raw-0", applied=144, committed=None, pending=False) is None
    assert commits.check("raw-0", applied=144, committed=None, pending=False) == 144
    assert commits.check("raw-0", applied=150, committed=100, pending=False) is None
    assert commits.check("raw-0", applied=150, committed=100, pending=False) == 150


def test_commits_are_left_to_faust_while_it_has_anything_of_the_partition_pending():
    commits = CommitWatch()
    for _ in range(5):
        assert commits.check("raw-0", applied=144, committed=None, pending=True) is None
    assert commits.check("raw-0", applied=144, committed=144, pending=False) is None
    assert commits.check("raw-0", applied=144, committed=144, pending=False) is None
    assert commits.check("raw-1", applied=None, committed=None, pending=False) is None
    assert commits.check("raw-1", applied=None, committed=None, pending=False) is None


def test_a_commit_moving_between_ticks_resets_the_commit_watch():
    commits = CommitWatch()
    assert commits.check("raw-0", applied=200, committed=100, pending=False) is None
    assert commits.check("raw-0", applied=200, committed=150, pending=False) is None
    assert commits.check("raw-0", applied=200, committed=150, pending=False) == 200
