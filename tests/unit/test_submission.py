"""Submitting: the query's batches stored, then the record, then one message per batch under
its first id; nothing left behind when a step fails, nothing stored for a bad request."""

import pytest

from blast_core.domain import client_input, fasta, jobs
from blast_core.storage.ports import query_blob
from unit.fakes import FAKE_DATABASE, query


def test_a_job_is_stored_batch_by_batch_then_recorded_then_queued(world):
    job = world.submit(batches=3)
    assert world.job(job.id) == job
    assert (job.status, job.batches, job.batch_states, job.queries) == ("queued", 3, "...", 3)
    stored = [world.blobs.get_text(job.id, query_blob(n)) for n in range(3)]
    assert "".join(stored) == query(3)
    assert [fasta.count_sequences(text.splitlines()) for text in stored] == [1, 1, 1]
    assert [(message_id, message.batch) for message_id, message in world.transport.waiting()] \
        == [(f"{job.id}-{n}", n) for n in range(3)]
    assert world.woken == [True]


def test_a_job_that_cannot_be_queued_leaves_no_record_and_no_blobs(world):
    world.transport.send_error = ConnectionError("the queue is unreachable")
    with pytest.raises(ConnectionError):
        world.submit(batches=2)
    assert world.records.ids() == []
    [created] = [job.id for job in world.records.written]
    assert world.blobs.names(created) == []
    assert world.woken == []


def test_a_job_whose_record_cannot_be_written_leaves_no_blobs(world):
    def refuse(job: jobs.Job) -> None:
        raise OSError("the table is unreachable")

    world.records.create = refuse
    with pytest.raises(OSError):
        world.submit(batches=2)
    assert world.blobs.calls["put_text"] == 3 and world.blobs.calls["delete_job"] == 1
    assert world.transport.sent == []


def test_a_bad_request_stores_nothing(world):
    with pytest.raises(client_input.InvalidRequest):
        world.service.submit({"query": query(1), "database": "no-such-db"})
    with pytest.raises(client_input.InvalidRequest):
        world.service.submit({"query": query(1), "database": FAKE_DATABASE.name,
                              "evalue": -1})
    assert world.records.ids() == [] and world.transport.sent == []
    assert world.blobs.calls["put_text"] == 0
