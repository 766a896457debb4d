"""Job records on Azurite's Table service: optimistic concurrency and newest-first listing."""

import dataclasses

import pytest
from azure.data.tables import TableServiceClient

from blast_core.domain import jobs
from blast_core.settings import Settings
from blast_core.storage.ports import RecordConflict
from blast_core.storage.records import JobRecords, from_entity, to_entity


def make_job(now_ms: int) -> jobs.Job:
    return jobs.Job(id=jobs.new_job_id(now_ms), status="queued", database="16SCore",
                    program="blastn", task="megablast", evalue=1e-5, max_target_seqs=10,
                    queries=1, query_letters=100, submitted_at="2026-11-25T00:00:00.000Z",
                    batch_states=".")


@pytest.fixture
def records(azurite):
    settings = Settings.from_env({"BLAST_STORAGE": azurite.connection_string})
    table = f"records{jobs.new_job_id()[-8:]}"
    store = JobRecords.connect(settings.connection("BLAST_STORAGE"), table)
    store.ensure()
    store.ensure()  # idempotent
    yield store
    TableServiceClient.from_connection_string(azurite.connection_string).delete_table(table)


def test_entities_round_trip():
    job = dataclasses.replace(make_job(5), hits=3, attempts=2, error="x", batches=3,
                              batch_states="D.F", queries_done=2, seconds_blast=1.5)
    assert from_entity(to_entity(job)) == job


def test_numbers_beyond_32_bits_round_trip_through_the_table(records):
    """A 5 GiB upload's bytes and letters: the SDK writes a bare int as Edm.Int32."""
    job = dataclasses.replace(make_job(2_000), upload_bytes=5 << 30, query_letters=3 * 10**9)
    records.create(job)
    assert records.get(job.id).job == job
    assert records.recent(10)[0] == job


def test_a_stale_update_is_refused(records):
    job = make_job(1_000)
    records.create(job)
    _, etag = records.get(job.id)
    new_etag = records.replace(job.batch_started(0), etag)
    with pytest.raises(RecordConflict):
        records.replace(job.batch_failed(0, "late"), etag)
    records.replace(records.get(job.id)[0].batch_finished(
        0, 1, 4, jobs.BatchTimings(0.5, 0.0, 1.25, 0.1)), new_etag)
    assert records.get(job.id)[0].status == "succeeded"


def test_recent_jobs_come_newest_first_in_one_query(records):
    created = [make_job(ms) for ms in (10_000, 30_000, 20_000, 40_000)]
    for job in created:
        records.create(job)
    assert [j.id for j in records.recent(3)] == [created[3].id, created[1].id, created[2].id]
    assert len(records.recent(100)) == 4
    assert records.get(jobs.new_job_id()) is None
