"""Cancelling a job: a queued or running one ends `cancelled` with its blobs deleted, and its
batches do not run; an ended one cannot be cancelled; an unknown id is not found, and an
expired one is known to be expired from the id alone."""

import pytest

from blast_core.domain import jobs
from blast_core.service.errors import JobExpired, JobFinished, JobNotFound
from blast_core.storage.ports import BATCH_QUERIES_BLOB, archive_blob, query_blob
from unit.fakes import build


def test_a_queued_job_is_cancelled_its_blobs_deleted_and_its_batches_never_run(world):
    job = world.submit(batches=2)
    assert world.blobs.names(job.id) == [query_blob(0), query_blob(1), BATCH_QUERIES_BLOB]
    cancelled = world.service.cancel(job.id)
    record = world.stored(job.id)
    assert record.job == cancelled
    assert (cancelled.status, cancelled.attempts) == ("cancelled", 0) and cancelled.finished_at
    assert world.blobs.names(job.id) == []
    for _, message in world.transport.waiting():  # its messages are still queued
        world.service.handle(message, 1)  # no search: the no_programs fixture would say
    assert world.stored(job.id) == record


def test_a_running_job_is_cancelled_and_its_search_stops_with_its_time_recorded(world, blast):
    job = world.submit(batches=2)
    blast.during = lambda running: world.service.cancel(running.id)  # while BLAST runs
    world.service.handle(world.message(job.id, 0), 1)  # returns: no retry
    record = world.job(job.id)
    assert (record.status, record.batch_states, record.attempts, record.hits) == \
        ("cancelled", "R.", 1, None)
    # What the stopped search spent is on the record (the run summary's cost).
    assert (record.seconds_blast, record.cpu_seconds_blast) == (0.5, 0.25)
    assert world.blobs.names(job.id) == []


def test_a_failure_caused_by_a_cancel_is_no_failure(world, blast):
    job = world.submit()

    def cancelled_under_it(running: jobs.Job) -> None:
        world.service.cancel(running.id)
        raise OSError("the query blob was deleted under the search")

    blast.during = cancelled_under_it
    world.service.handle(world.message(job.id, 0), 5, last_attempt=True)  # no raise
    record = world.job(job.id)
    assert (record.status, record.error) == ("cancelled", None)


def test_a_cancel_of_a_job_that_ended_is_refused_and_changes_nothing(world, blast):
    job = world.submit()
    world.service.handle(world.message(job.id, 0), 1)
    before = world.stored(job.id)
    with pytest.raises(JobFinished) as refused:
        world.service.cancel(job.id)
    assert refused.value.job == before.job and refused.value.job.status == "succeeded"
    assert world.stored(job.id) == before
    assert world.blobs.names(job.id) == [archive_blob(0)]  # its query was in its message
    with pytest.raises(JobFinished):
        world.service.cancel(world.service.cancel(world.submit().id).id)  # cancelled already


@pytest.mark.parametrize("job_id", [jobs.new_job_id(), "not-a-job", "../x"])
def test_an_unknown_job_is_not_found(world, job_id):
    with pytest.raises(JobNotFound):
        world.service.cancel(job_id)
    assert world.records.ids() == []


def test_an_expired_job_is_expired_without_a_read_of_its_record():
    world = build(BLAST_RETENTION_DAYS="1")
    expired = world.add_job(age_seconds=86_400 + 60)
    before = world.stored(expired.id)
    calls = world.records.calls.copy()
    with pytest.raises(JobExpired) as refused:
        world.service.cancel(expired.id)
    assert refused.value.expired_at == jobs.expires_at(expired.id, 1)
    assert world.records.calls == calls, "no read, no write"
    assert world.stored(expired.id) == before
