"""The fakes keep the rules of the real adapters that the service relies on: a unit test that
passes on a fake that breaks one would prove nothing. The tests taking a `store` or `blobs`
fixture also run on the real adapters against Azurite (tests/test_fakes_match_adapters.py);
tests/test_servicebus_emulation.py checks the queue's rules on the emulated Service Bus."""

from datetime import UTC, datetime, timedelta

import pytest
from azure.core.exceptions import ResourceNotFoundError

from blast_core.domain import jobs, messages
from blast_core.storage.ports import (
    BlobChanged,
    Outgoing,
    QueueCounts,
    RecordConflict,
    RecordExists,
    RecordMissing,
)
from unit.fakes import FakeClock, FakeJobBlobs, FakeJobStore, FakeTransport, LockLost


@pytest.fixture
def store() -> FakeJobStore:
    return FakeJobStore()


@pytest.fixture
def blobs() -> FakeJobBlobs:
    return FakeJobBlobs()


def make_job(now_ms: int, status: str = jobs.QUEUED) -> jobs.Job:
    return jobs.Job(id=jobs.new_job_id(now_ms), status=status, database="16SCore",
                    program="blastn", task="megablast", evalue=1e-5, max_target_seqs=10,
                    queries=1, query_letters=100, submitted_at="2026-11-25T00:00:00.000Z",
                    batch_states=".")


def test_a_record_is_written_only_at_its_etag_and_each_write_has_a_new_one(store):
    job = make_job(1_000)
    store.create(job)
    with pytest.raises(RecordExists):
        store.create(job)
    first, etag = store.get(job.id)
    assert first == job
    started = job.batch_started(0)
    new_etag = store.replace(started, etag)
    assert new_etag != etag
    with pytest.raises(RecordConflict):
        store.replace(job.batch_failed(0, "late"), etag)
    assert store.get(job.id) == (started, new_etag)
    store.delete(job.id)
    store.delete(job.id)  # gone already: nothing to do, as the Table client does
    with pytest.raises(RecordConflict):
        store.replace(job, new_etag)  # the Table answers 404: a conflict too
    with pytest.raises(RecordMissing):
        store.update(job.id, lambda current: current.cancel())


def test_a_record_reads_back_as_its_table_entity_does(store):
    job = make_job(5)
    store.create(jobs.Job(**{**job.to_dict(), "evalue": 1}))  # an int e-value, read as float
    assert type(store.get(job.id).job.evalue) is float


def test_an_update_re_reads_and_reapplies_its_change_when_another_write_came_first(store):
    job = make_job(1_000)
    store.create(job)
    stale = store.get(job.id)
    store.replace(stale.job.batch_started(0), stale.etag)
    seen = []
    updated = store.update(job.id, lambda current: seen.append(current.status) or current.cancel(),
                           known=stale)
    assert seen == ["queued", "running"]
    assert store.get(job.id) == updated and updated.job.status == "cancelled"


def test_queries_return_the_newest_jobs_first_and_stop_at_their_bounds(store):
    created = {ms: make_job(ms) for ms in (10_000, 30_000, 20_000, 40_000)}
    for job in created.values():
        store.create(job)
    newest_first = [created[ms].id for ms in (40_000, 30_000, 20_000, 10_000)]
    assert [j.id for j in store.recent(3)] == newest_first[:3]
    assert [j.id for j in store.since(jobs.ids_since(20_000), 10)] == newest_first[:3]
    assert [j.id for j in store.since(jobs.ids_since(20_000), 2)] == newest_first[:2]
    # ids_from pages from the oldest bound on; deleting a page does not shift the next.
    pages = store.ids_from(jobs.ids_since(30_000 + 1), 1)
    first = next(pages)
    assert first == [created[30_000].id]
    store.delete_many(first)
    assert list(pages) == [[created[20_000].id], [created[10_000].id]]


def test_open_jobs_are_the_queued_and_running_ones_unchanged_since_a_moment(store):
    queued, running, done = make_job(1), make_job(2), make_job(3, status=jobs.SUCCEEDED)
    for job in (queued, running, done):
        store.create(job)
    store.replace(running.batch_started(0), store.get(running.id).etag)
    now = datetime.now(UTC)
    found = store.open_jobs_unchanged_since(now + timedelta(minutes=1), 10)
    assert [job.id for job, _, _ in found] == [running.id, queued.id]  # newest first
    assert [etag for _, etag, _ in found] == [store.get(job.id).etag for job, _, _ in found]
    assert all(abs(changed - now) < timedelta(minutes=1) for _, _, changed in found)
    assert store.open_jobs_unchanged_since(now - timedelta(minutes=1), 10) == []
    assert len(store.open_jobs_unchanged_since(now + timedelta(minutes=1), 1)) == 1


def test_open_jobs_are_found_by_the_time_their_record_last_changed():
    clock = FakeClock()
    store = FakeJobStore(clock)
    queued, running, done = make_job(1), make_job(2), make_job(3, status=jobs.SUCCEEDED)
    for job in (queued, running, done):
        store.create(job)
    started = clock.now()
    clock.advance(60)
    store.replace(running.batch_started(0), store.get(running.id).etag)
    assert store.changed_at(running.id) == started + timedelta(seconds=60)
    found = store.open_jobs_unchanged_since(started + timedelta(seconds=30), 10)
    assert [(job.id, changed) for job, _, changed in found] == [(queued.id, started)]
    later = store.open_jobs_unchanged_since(started + timedelta(seconds=61), 10)
    assert {job.id for job, _, _ in later} == {queued.id, running.id}
    assert len(store.open_jobs_unchanged_since(started + timedelta(seconds=61), 1)) == 1


def test_blobs_of_a_job_are_read_streamed_and_deleted_by_job(blobs):
    blobs.put_text("a", "batch-0.fasta", ">q\nACGTACGT\n", "text/x-fasta")
    blobs.put_text("ab", "batch-0.fasta", "other job", "text/x-fasta")
    assert b"".join(blobs.stream("a", "batch-0.fasta")) == b">q\nACGTACGT\n"
    assert b"".join(blobs.stream("a", "batch-0.fasta", 3, 4)) == b"ACGT"
    assert b"".join(blobs.stream("a", "batch-0.fasta", 7)) == b"ACGT\n"
    assert blobs.stream("a", "result.tsv") is None
    assert blobs.stream("a", "result.tsv", 3, 4) is None
    blobs.put_text("a", "empty.tsv", "", "text/tab-separated-values")
    assert b"".join(blobs.stream("a", "empty.tsv")) == b"", "no hits: an empty result"
    assert (blobs.exists("a", "batch-0.fasta"), blobs.exists("a", "result.tsv")) == (True, False)
    with pytest.raises(ResourceNotFoundError, match="does not exist"):
        blobs.get_text("a", "result.tsv")
    blobs.delete("a", "result.tsv")  # none is fine
    blobs.delete_job("a")
    assert blobs.stream("a", "batch-0.fasta") is None
    assert blobs.get_text("ab", "batch-0.fasta") == "other job"


def test_a_blob_is_read_at_one_version_with_its_size_and_listed_by_folder(blobs):
    blobs.put_text("uploads", "u1.fasta", ">q\nACGT\n", "text/x-fasta")
    blobs.put_text("uploads", "u2.fasta", "", "text/x-fasta")
    blobs.put_text("uploadsx", "u3.fasta", "other folder", "text/x-fasta")
    found = blobs.properties("uploads", "u1.fasta")
    assert found.size == 8 and found.etag
    assert blobs.properties("uploads", "u2.fasta").size == 0
    assert blobs.properties("uploads", "none.fasta") is None
    assert sorted(blobs.names("uploads")) == ["u1.fasta", "u2.fasta"]
    assert b"".join(blobs.stream("uploads", "u1.fasta", etag=found.etag)) == b">q\nACGT\n"
    assert b"".join(blobs.stream("uploads", "u1.fasta", 0, 2, found.etag)) == b">q"
    blobs.put_text("uploads", "u1.fasta", ">q\nACGTT\n", "text/x-fasta")
    assert blobs.properties("uploads", "u1.fasta").etag != found.etag
    with pytest.raises(BlobChanged):
        b"".join(blobs.stream("uploads", "u1.fasta", etag=found.etag))
    assert blobs.stream("uploads", "none.fasta", etag=found.etag) is None


def test_a_blob_streams_in_chunks_of_its_chunk_size():
    blobs = FakeJobBlobs(chunk_size=4)
    blobs.put_text("a", "batch-0.fasta", ">q\nACGTACGT\n", "text/x-fasta")
    assert list(blobs.stream("a", "batch-0.fasta")) == [b">q\nA", b"CGTA", b"CGT\n"]


def send(transport: FakeTransport, message_id: str, delay: float = 0) -> None:
    transport.send(Outgoing(messages.batch_message(jobs.new_job_id(), 0).encode(), message_id),
                   delay)


def test_the_queue_drops_a_repeated_message_id_within_its_window_and_holds_a_delayed_one():
    clock = FakeClock()
    transport = FakeTransport(clock)
    send(transport, "m1")
    send(transport, "m1")
    send(transport, "m2", delay=30)
    assert [(s.message_id, s.accepted) for s in transport.sent] == [
        ("m1", True), ("m1", False), ("m2", True)]
    assert transport.counts() == QueueCounts(depth=1, dead_letters=0)
    assert transport.receive().message_id == "m1"
    assert transport.receive() is None, "m1 is locked and m2 not visible yet"
    clock.advance(30)
    assert transport.receive().message_id == "m2"
    clock.advance(3600)
    send(transport, "m1")
    assert transport.sent[-1].accepted, "past the duplicate detection window"


def test_a_delivery_is_settled_once_and_the_last_allowed_one_goes_to_the_dead_letters():
    transport = FakeTransport(max_delivery_count=2)
    send(transport, "m")
    first = transport.receive()
    first.abandon()
    with pytest.raises(LockLost):
        first.complete()
    second = transport.receive()
    assert (second.delivery_count, second.message_id) == (2, "m")
    second.lose_lock()
    assert transport.receive() is None
    [letter] = transport.peek_dead_letters(10)
    assert letter.reason.startswith("MaxDeliveryCountExceeded")
    held = transport.receive_dead_letter()
    assert transport.receive_dead_letter() is None, "a received dead letter is locked"
    with pytest.raises(ValueError):
        held.dead_letter("again")
    held.abandon()
    assert transport.peek_dead_letters(10) == [letter]
    transport.receive_dead_letter().complete()
    assert transport.counts() == QueueCounts(0, 0)


def test_a_retry_later_schedules_its_copy_and_completes_the_delivery():
    clock = FakeClock()
    transport = FakeTransport(clock)
    send(transport, "m")
    delivery = transport.receive()
    copy = Outgoing("copy", "m-again")
    delivery.retry_later(10, copy)
    assert [e.message_id for e in transport.queue] == ["m-again"]
    assert transport.receive() is None
    clock.advance(10)
    assert transport.receive().body == b"copy"
