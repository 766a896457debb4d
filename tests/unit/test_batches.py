"""The batch state machine behind `service.handle`: which deliveries change a job's record and
which are ignored, a job ending exactly once when its batches finish together, the give-up on
the last attempt. Most need no search at all; those that do use FakeBlast (the `blast`
fixture), never BLAST+."""

import logging
import threading

import pytest
from azure.core.exceptions import ResourceNotFoundError

from blast_core.domain import jobs, messages
from blast_core.service.errors import UnknownJob
from blast_core.storage.ports import BATCH_QUERIES_BLOB, archive_blob, batch_table_blob, query_blob
from unit.fakes import build

TIMES = jobs.BatchTimings(queued=1.0, staging=0.0, blast=2.0, transfer=0.5, blast_cpu=1.5)


def handle(world, job_id: str, batch: int, attempt: int = 1, last: bool = False) -> None:
    world.service.handle(world.message(job_id, batch), attempt, last_attempt=last)


def test_a_job_of_batches_succeeds_with_its_last_batch_each_counted_once(world, blast):
    job = world.submit(batches=3)
    for batch in (2, 0):
        handle(world, job.id, batch)
    running = world.job(job.id)
    assert (running.status, running.batch_states, running.queries_done, running.hits) == \
        ("running", "D.D", 2, 4)
    handle(world, job.id, 1)
    done = world.job(job.id)
    assert (done.status, done.batch_states, done.queries_done, done.hits, done.attempts) == \
        ("succeeded", "DDD", 3, 6, 3)
    assert done.finished_at and done.error is None and done.cpu_seconds_blast == \
        pytest.approx(0.03)
    assert world.blobs.names(job.id) == sorted(
        [query_blob(n) for n in range(3)] + [archive_blob(n) for n in range(3)]
        + [batch_table_blob(n) for n in range(3)] + [BATCH_QUERIES_BLOB])
    assert [s[0] for s in blast.searches] == [job.id] * 3
    assert {tuple(s[1]) for s in blast.searches} == {("/fake/blastdb/16SCore",)}


def test_a_redelivered_message_for_a_finished_batch_changes_nothing(world, blast):
    job = world.submit(batches=2)
    handle(world, job.id, 0)
    before = world.stored(job.id)
    assert before.job.batch_states == "D."
    handle(world, job.id, 0, attempt=2)
    assert world.stored(job.id) == before, "not even rewritten: the ETag is the same"
    assert len(blast.searches) == 1


def test_a_message_for_a_batch_of_a_job_that_ended_changes_nothing(world):
    job = world.submit(batches=2)
    world.change(job.id, lambda j: j.batch_started(1).batch_failed(1, "BLAST rejected it"))
    before = world.stored(job.id)
    handle(world, job.id, 0)  # pending, but its job failed: no search (none could run here)
    assert world.stored(job.id) == before


@pytest.mark.parametrize("batch", [3, 99])
def test_a_message_for_a_batch_the_job_does_not_have_is_malformed(world, batch):
    job = world.submit(batches=3)
    before = world.stored(job.id)
    with pytest.raises(messages.MalformedMessage, match=f"has no batch {batch}"):
        handle(world, job.id, batch)
    assert world.stored(job.id) == before


def test_a_message_for_a_job_without_a_record_is_an_unknown_job(world):
    with pytest.raises(UnknownJob, match="no record for job"):
        handle(world, jobs.new_job_id(), 0)
    assert world.records.ids() == []


def test_an_expired_jobs_message_is_ignored_before_its_record_is_read():
    world = build(BLAST_RETENTION_DAYS="1")
    expired = world.add_job(age_seconds=2 * 86_400, batches=2)
    cleaned_up = jobs.new_job_id(jobs.submitted_ms(expired.id))  # as old, and no record left
    before = world.stored(expired.id)
    reads = world.records.calls["get"]
    handle(world, expired.id, 0)
    handle(world, cleaned_up, 0)  # not UnknownJob: its message is dropped, not dead-lettered
    world.service.handle(messages.format_message(expired.id, "tsv"), 1)
    assert world.records.calls["get"] == reads
    assert world.stored(expired.id) == before


def test_two_batches_finishing_at_once_complete_the_job_exactly_once(world):
    """Worker A read the record before worker B wrote its batch done: A's write is refused
    (stale ETag), re-read and re-applied, so neither batch is lost and the job succeeds in
    exactly one write."""
    job = world.submit(batches=2)
    a = world.records.update(job.id, lambda j: j.batch_started(0))
    b = world.records.update(job.id, lambda j: j.batch_started(1))
    seen_by_a = []

    def finish_a(current: jobs.Job) -> jobs.Job | None:
        seen_by_a.append(current.batch_states)
        if len(seen_by_a) == 1:  # B writes between A's read and A's write
            world.records.update(job.id, lambda j: j.batch_finished(1, 1, 3, TIMES), known=b)
        return current.batch_finished(0, 1, 2, TIMES) if current.batch_unfinished(0) else None

    world.records.update(job.id, finish_a, known=a)
    done = world.job(job.id)
    assert seen_by_a == ["R.", "RD"]
    assert (done.status, done.batch_states, done.queries_done, done.hits) == \
        ("succeeded", "DD", 2, 5)
    assert done.seconds_blast == 2 * TIMES.blast
    assert [j.batch_states for j in world.records.written if j.status == jobs.SUCCEEDED] == ["DD"]


def test_batches_searched_in_parallel_threads_end_their_job_once(world, blast, caplog):
    submitted = [world.submit(batches=2) for _ in range(4)]
    with caplog.at_level(logging.INFO, logger="blast_core"):
        for job in submitted:
            start = threading.Barrier(2)

            def finish(batch: int, job_id: str = job.id, start=start) -> None:
                start.wait()
                handle(world, job_id, batch)

            threads = [threading.Thread(target=finish, args=(n,)) for n in (0, 1)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    for job in submitted:
        done = world.job(job.id)
        assert (done.status, done.batch_states, done.queries_done, done.attempts) == \
            ("succeeded", "DD", 2, 2)
        assert len([r for r in caplog.records
                    if f"job {job.id} succeeded" in r.getMessage()]) == 1
        assert len([j for j in world.records.written
                    if j.id == job.id and j.status == jobs.SUCCEEDED]) == 1


def test_a_transient_failure_leaves_the_batch_pending_until_the_last_attempt_fails_the_job(world):
    job = world.submit(batches=2)
    world.blobs.delete(job.id, query_blob(1))  # the batch fails before it starts
    with pytest.raises(ResourceNotFoundError):
        handle(world, job.id, 1, attempt=1)
    waiting = world.job(job.id)
    assert (waiting.status, waiting.batch_states, waiting.attempts, waiting.error) == \
        ("queued", "..", 0, None)
    with pytest.raises(ResourceNotFoundError):
        handle(world, job.id, 1, attempt=5, last=True)
    failed = world.job(job.id)
    assert (failed.status, failed.batch_states, failed.attempts) == ("failed", ".F", 0)
    assert failed.error == ("batch 2 of 2: gave up after 5 attempts: ResourceNotFoundError: "
                            "The specified blob does not exist.")
    assert failed.finished_at


def test_blast_refusing_a_batch_fails_the_job_naming_the_batch_without_a_retry(world, blast):
    job = world.submit(batches=3)
    blast.reject = "BLAST rejected the search: bad query"
    handle(world, job.id, 1)  # returns: no other attempt
    failed = world.job(job.id)
    assert (failed.status, failed.batch_states) == ("failed", ".F.")
    assert failed.error == "batch 2 of 3: BLAST rejected the search: bad query"
    assert archive_blob(1) not in world.blobs.names(job.id)


def test_a_job_left_running_by_a_dead_worker_runs_again(world, blast):
    job = world.submit()
    world.change(job.id, lambda j: j.batch_started(0))  # its worker died
    handle(world, job.id, 0, attempt=2)
    done = world.job(job.id)
    assert (done.status, done.attempts, done.batch_states) == ("succeeded", 2, "D")


def test_a_requeued_job_has_its_failed_and_running_batches_pending_again(world, blast):
    job = world.submit(batches=4)
    handle(world, job.id, 0)
    world.change(job.id, lambda j: j.batch_started(1).batch_started(2)
                 .batch_failed(2, "gave up after 5 attempts: OSError: down"))
    requeued = world.change(job.id, lambda j: j.requeued())
    assert (requeued.status, requeued.batch_states, requeued.error, requeued.finished_at) == \
        ("queued", "D...", None, None)
    assert (requeued.unfinished_batches(), requeued.attempts) == ([1, 2, 3], 3)
    for batch in (1, 2, 3):
        handle(world, job.id, batch, attempt=1)
    assert world.job(job.id).status == "succeeded"
