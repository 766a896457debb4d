"""Coalescing on the fakes: which received batches share a BLAST run, how the run's cost is
shared, and that each job keeps its own outcome (the real split of a real archive is tested
against blastn in tests/test_archive_split.py and tests/test_coalesced_runs.py)."""

import pytest

from blast_core.domain import coalescing, messages
from blast_core.domain.coalescing import Candidate, SearchKey
from blast_core.domain.limits import BATCH_TRIGGER_SHARE, LOCK_DURATION, PLATFORM_UPDATE_GRACE
from blast_core.hosts.worker import work_on
from blast_core.storage.ports import SUBJECT_BLOB
from unit.fakes import FAKE_DATABASE, build

KEY = SearchKey("blastn", "megablast", "16SCore", 10.0, 10, None, None)
OTHER = SearchKey("blastn", "megablast", "16SCore", 0.001, 10, None, None)


def test_batches_of_one_search_share_a_run_up_to_one_batch_of_letters():
    runs, left = coalescing.plan([Candidate(KEY, 300, 1000), Candidate(OTHER, 300, 1000),
                                  Candidate(KEY, 300, 1000), Candidate(KEY, 300, 1000)])
    assert runs == [[0, 2], [1]]
    assert left == [3], "a fourth would pass one batch's letters"


def test_only_blastn_batches_share_a_run():
    tblastx = SearchKey("tblastx", "tblastx", "16SCore", 10.0, 10, None, None)
    runs, left = coalescing.plan([Candidate(tblastx, 10, 1000), Candidate(tblastx, 10, 1000),
                                  Candidate(KEY, 10, 1000), Candidate(KEY, 10, 1000)])
    assert (runs, left) == ([[0], [1], [2, 3]], [])


def test_the_first_batch_is_always_taken_even_when_it_is_a_whole_batch():
    assert coalescing.plan([Candidate(KEY, 5000, 1000), Candidate(KEY, 1, 1000)]) == \
        ([[0]], [1])


def test_each_search_counts_against_its_own_batch_letters():
    runs, left = coalescing.plan([Candidate(KEY, 500, 1000), Candidate(OTHER, 50, 100),
                                  Candidate(OTHER, 10, 100)])
    assert (runs, left) == ([[0], [1]], [2]), "half a batch of each search make one batch"


def test_a_batch_trigger_takes_on_only_what_ends_within_the_lock():
    received = [Candidate(KEY, 300, 1000), Candidate(KEY, 300, 1000)]
    assert coalescing.plan(received, BATCH_TRIGGER_SHARE) == ([[0]], [1])
    assert BATCH_TRIGGER_SHARE * PLATFORM_UPDATE_GRACE <= LOCK_DURATION - 60


def test_a_job_is_interactive_only_when_small_for_the_setting_and_for_a_batch_trigger():
    assert messages.lane_for(20_000, 20_000, 500_000) == messages.INTERACTIVE
    assert messages.lane_for(20_001, 20_000, 500_000) == messages.BULK
    assert messages.lane_for(5_000, 20_000, 10_000) == messages.BULK, \
        "half a protein batch could outlast the lock a batch trigger is not renewed"
    assert messages.lane_for(4_000, 20_000, 10_000) == messages.INTERACTIVE


def test_the_shared_cpu_time_is_apportioned_by_letters():
    assert coalescing.apportion(6.0, [100, 200, 300]) == pytest.approx([1.0, 2.0, 3.0])
    assert coalescing.apportion(2.0, [0, 0]) == [1.0, 1.0]


def submit(world, letters: int, **options):
    bases = "ACGT" * (letters // 4 + 1)
    return world.service.submit({"query": f">q\n{bases[:letters]}\n",
                                 "database": FAKE_DATABASE.name, **options})


def test_jobs_received_together_run_as_one_search_and_each_keeps_its_own_record(blast):
    world = build(BLAST_BATCH_LETTERS="1000")
    small, big, other = submit(world, 100), submit(world, 300), submit(world, 100, evalue=0.5)
    work_on(world.service, world.transport.receive_many(16))
    assert sorted(queries for _, _, queries in blast.searches) == [1, 2], \
        "small and big in one run, other (another e-value) alone"
    for job in (small, big, other):
        assert world.job(job.id).status == "succeeded"
        assert world.job(job.id).hits == blast.hits_per_query
    run_cpu = 0.01  # what FakeBlast reports for every run
    assert world.job(small.id).cpu_seconds_blast == pytest.approx(run_cpu * 100 / 400)
    assert world.job(big.id).cpu_seconds_blast == pytest.approx(run_cpu * 300 / 400)
    assert world.job(other.id).cpu_seconds_blast == pytest.approx(run_cpu)
    assert [settled[0] for settled in world.transport.settlements] == ["complete"] * 3


def test_a_cancel_of_one_job_in_a_run_does_not_stop_the_others(blast):
    world = build(BLAST_BATCH_LETTERS="1000")
    kept, cancelled = submit(world, 100), submit(world, 100)
    blast.during = lambda job: world.service.cancel(cancelled.id) \
        if world.job(cancelled.id).status != "cancelled" else None
    work_on(world.service, world.transport.receive_many(16))
    assert len(blast.searches) == 1
    assert world.job(kept.id).status == "succeeded"
    assert world.job(cancelled.id).status == "cancelled"
    assert world.blobs.names(cancelled.id) == [], "the cancelled job's share is not kept"


def test_a_run_stops_only_when_every_job_in_it_is_cancelled(blast):
    world = build(BLAST_BATCH_LETTERS="1000")
    first, second = submit(world, 100), submit(world, 100)

    def cancel_both(job):
        for each in (first, second):
            world.service.cancel(each.id)

    blast.during = cancel_both
    work_on(world.service, world.transport.receive_many(16))
    for job in (first, second):
        record = world.job(job.id)
        assert record.status == "cancelled"
        assert record.cpu_seconds_blast == pytest.approx(0.25 / 2), "the stopped run's CPU, shared"


def test_more_than_a_batch_of_work_received_goes_back_untouched_for_another_worker(blast):
    world = build(BLAST_BATCH_LETTERS="250")
    jobs = [submit(world, 100) for _ in range(3)]
    work_on(world.service, world.transport.receive_many(16))
    settled = {message_id.split("-")[0]: outcome
               for outcome, message_id, *_ in world.transport.settlements}
    assert [settled[job.id] for job in jobs] == ["complete", "complete", "release"]
    assert world.job(jobs[2].id).status == "queued"
    assert world.job(jobs[2].id).attempts == 0
    [(_, copy)] = world.transport.waiting()
    assert (copy.job_id, copy.attempts, copy.query is not None) == (jobs[2].id, 0, True)
    work_on(world.service, world.transport.receive_many(16))
    assert world.job(jobs[2].id).status == "succeeded"
    assert world.job(jobs[2].id).attempts == 1


def test_a_job_of_subject_sequences_shares_runs_only_with_its_own_batches(blast):
    """Its batches search its own subject, never a database nor another job's subject."""
    world = build(BLAST_BATCH_LETTERS="1000")
    subject = ">s1\nACGTACGTAAACCCGGGTTT\n"
    two_batches = world.service.submit({"query": ">a\n" + "ACGT" * 50 + "\n>b\n" + "ACGT" * 50
                                        + "\n", "subject": subject})
    alike, on_database = (world.service.submit({"query": f">q\n{'ACGT' * 50}\n", **target})
                          for target in ({"subject": subject}, {"database": FAKE_DATABASE.name}))
    assert world.blobs.get_text(two_batches.id, SUBJECT_BLOB) == subject
    work_on(world.service, world.transport.receive_many(16))
    searched = sorted((job_id, [path.rsplit("/", 1)[-1] for path in targets], queries)
                      for job_id, targets, queries in blast.searches)
    assert searched == sorted([(two_batches.id, [SUBJECT_BLOB], 2), (alike.id, [SUBJECT_BLOB], 1),
                               (on_database.id, [FAKE_DATABASE.name], 1)])
    for job in (two_batches, alike, on_database):
        assert world.job(job.id).status == "succeeded"
    assert world.job(alike.id).subjects == 1 and world.job(on_database.id).subjects == 0
