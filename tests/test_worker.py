"""Processing semantics on Azurite with the real blastn: idempotent redelivery, permanent and
transient failures, and the Storage Queue worker's retries and poison queue."""

import threading
import time

import pytest
from conftest import SMALL_DB, queued_message, result_text, sample_queries, service_env

from blast_core.domain import jobs, messages
from blast_core.hosts.worker import handle, retry_delay, run_worker
from blast_core.service import bootstrap
from blast_core.service.core import BlastService
from blast_core.service.errors import UnknownJob
from blast_core.settings import Settings
from blast_core.storage.ports import Outgoing, archive_blob, query_blob


def submit(service: BlastService, seed: int = 1, sequences: int = 1) -> str:
    return service.submit({"query": sample_queries(SMALL_DB, sequences, seed=seed),
                           "database": SMALL_DB}).id


def two_batches(env: dict[str, str], **overrides: str) -> BlastService:
    """A service that makes a job of two 16S queries two batches, each query in Blob storage
    (a one-batch job's query travels in its message)."""
    service = bootstrap.build(Settings.from_env({**env, "BLAST_BATCH_LETTERS": "1000",
                                                 **overrides}))
    service.ensure_storage()
    return service


def test_a_redelivered_message_for_a_finished_job_does_not_search_again(service):
    job_id = submit(service)
    message = queued_message(service, job_id)
    service.handle(message, 1)
    first, etag = service.records.get(job_id)
    assert (first.status, first.attempts) == ("succeeded", 1)
    service.handle(message, 2)
    again, etag_again = service.records.get(job_id)
    assert again == first and etag_again == etag


def test_a_job_left_running_by_a_dead_worker_runs_again(service):
    job_id = submit(service)
    job, etag = service.records.get(job_id)
    service.records.replace(job.batch_started(0), etag)
    service.handle(queued_message(service, job_id), 2)
    done, _ = service.records.get(job_id)
    assert (done.status, done.attempts) == ("succeeded", 2)
    assert result_text(service, job_id)


def test_blast_refusing_a_job_fails_it_without_retry(service, settings_env, tmp_path):
    job_id = submit(service)
    no_databases = bootstrap.build(Settings.from_env(
        {**settings_env, "BLAST_DB_DIR": str(tmp_path)}))
    no_databases.handle(queued_message(service, job_id), 1)
    failed, _ = service.records.get(job_id)
    assert failed.status == "failed" and "BLAST rejected the search" in failed.error
    assert not service.blobs.exists(job_id, archive_blob(0))


def test_a_transient_error_retries_and_the_last_attempt_fails_the_job(settings_env):
    service = two_batches(settings_env)
    job_id = submit(service, sequences=2)
    service.blobs._container.delete_blob(f"{job_id}/{query_blob(0)}")
    with pytest.raises(Exception, match=r"BlobNotFound|not exist"):
        service.handle(messages.batch_message(job_id, 0), 1)
    assert service.records.get(job_id)[0].status == "queued", \
        "a batch whose query cannot be read is not started"
    with pytest.raises(Exception, match=r"BlobNotFound|not exist"):
        service.handle(messages.batch_message(job_id, 0), service.settings.max_deliveries,
                       last_attempt=True)
    failed, _ = service.records.get(job_id)
    assert failed.status == "failed"
    assert failed.error.startswith(
        f"batch 1 of 2: gave up after {service.settings.max_deliveries} attempts: ")


def test_unreadable_and_unknown_messages_can_never_succeed(service):
    with pytest.raises(UnknownJob):
        service.handle(messages.batch_message(jobs.new_job_id(), 0), 1)
    with pytest.raises(messages.MalformedMessage):
        service.handle(messages.batch_message(submit(service), 7), 1)  # no batch 7


class RecordingDelivery:
    """A delivery that records how it is settled (the transports' own are tested against
    Azurite and the emulated Service Bus)."""

    def __init__(self, body: str | bytes, delivery_count: int = 1):
        self.body = body.encode() if isinstance(body, str) else body
        self.delivery_count = delivery_count
        self.settled: list[tuple] = []

    def renew(self) -> None:
        pass

    def complete(self) -> None:
        self.settled.append(("complete",))

    def retry_later(self, seconds: int, copy: Outgoing) -> None:
        self.settled.append(("retry", seconds, messages.decode(copy.body), copy.message_id))

    def dead_letter(self, reason: str) -> None:
        self.settled.append(("dead-letter", reason))


class ScriptedService:
    """The one call `handle` makes of the service, failing as told."""

    def __init__(self, failure: Exception | None = None, max_deliveries: int = 5):
        self.failure = failure
        self.settings = Settings.from_env({"BLAST_MAX_DELIVERIES": str(max_deliveries)})
        self.attempts: list[int] = []

    def handle_many(self, work, capacity: float) -> list[Exception | None]:
        for _, attempt, last_attempt in work:
            self.attempts.append((attempt, last_attempt) if last_attempt else attempt)
        return [self.failure] * len(work)


def settled(service, body, delivery_count: int = 1) -> list[tuple]:
    delivery = RecordingDelivery(body, delivery_count)
    handle(service, delivery)()
    return delivery.settled


def test_a_failed_attempt_is_retried_later_as_a_copy_that_counts_it():
    message = messages.batch_message(jobs.new_job_id(), 2, {"traceparent": "t"})
    service = ScriptedService(OSError("storage is throttling"))
    [(kind, delay, copy, copy_id)] = settled(service, message.encode(), delivery_count=1)
    assert (kind, delay, copy.attempts, copy.batch, copy.trace) == \
        ("retry", retry_delay(1), 1, 2, {"traceparent": "t"})
    assert copy_id.startswith(message.first_id + "-"), "a resend needs a fresh message id"
    # The copy's first delivery is its job's second attempt, and so on.
    [(_, delay, again, _)] = settled(service, copy.encode(), delivery_count=1)
    assert (service.attempts, again.attempts, delay) == ([1, 2], 2, retry_delay(2))
    assert [retry_delay(n) for n in range(1, 8)] == [2, 4, 8, 16, 32, 60, 60]


def test_the_last_attempt_dead_letters_and_a_later_delivery_goes_unread():
    message = messages.batch_message(jobs.new_job_id(), 0).retried(4)
    service = ScriptedService(OSError("still throttled"))
    [(kind, reason)] = settled(service, message.encode(), delivery_count=1)
    assert (kind, service.attempts) == ("dead-letter", [(5, True)])  # told it is the last
    assert reason.startswith("gave up after 5 attempts: OSError: still throttled")
    # Under the Functions host, dead-lettering means raising until the queue's own max
    # delivery count: those deliveries are not worked on again.
    assert settled(service, message.encode(), delivery_count=2) == \
        [("dead-letter", "gave up after 5 attempts")]
    assert service.attempts == [(5, True)]


def test_unreadable_and_unknown_messages_are_dead_lettered_at_once():
    assert settled(ScriptedService(), b"not json") == \
        [("dead-letter", "unreadable: message body is not JSON")]
    unknown = settled(ScriptedService(UnknownJob("no record for job x")),
                      messages.batch_message(jobs.new_job_id(), 0).encode())
    assert unknown == [("dead-letter", "UnknownJob: no record for job x")]
    assert settled(ScriptedService(), messages.batch_message(jobs.new_job_id(), 0).encode()) \
        == [("complete",)]


def test_the_worker_poisons_bad_messages_and_keeps_serving(azurite, blast_available):
    env = service_env(azurite, BLAST_MAX_DELIVERIES="2", BLAST_VISIBILITY_TIMEOUT="3")
    service = bootstrap.build(Settings.from_env(env))
    service.ensure_storage()
    queues = service.transport.lane(messages.INTERACTIVE)
    queues.queue.send_message("this is not a job")
    queues.queue.send_message(messages.batch_message(jobs.new_job_id(), 0).encode())
    good = submit(service, seed=8)
    stop = threading.Event()
    worker = threading.Thread(target=run_worker, args=(service, stop))
    worker.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            poisoned = queues.poison.peek_messages(max_messages=5)
            if len(poisoned) == 2 and service.records.get(good)[0].status == "succeeded":
                break
            time.sleep(0.2)
    finally:
        stop.set()
        worker.join(timeout=30)
    assert service.records.get(good)[0].status == "succeeded"
    assert sorted(m.content[:4] for m in poisoned) == sorted(['{"jo', "this"])
    assert queues.queue.peek_messages(max_messages=5) == []


def run_worker_until(service: BlastService, done, timeout: float = 60) -> None:
    stop = threading.Event()
    worker = threading.Thread(target=run_worker, args=(service, stop))
    worker.start()
    try:
        deadline = time.monotonic() + timeout
        while not done() and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        stop.set()
        worker.join(timeout=30)
    assert done()


def test_dead_lettered_jobs_are_listed_and_requeued(azurite, blast_available):
    service = two_batches(service_env(azurite), BLAST_MAX_DELIVERIES="1",
                          BLAST_VISIBILITY_TIMEOUT="3")
    job_id = submit(service, seed=40, sequences=2)
    query = service.blobs.get_text(job_id, query_blob(0))
    service.blobs._container.delete_blob(f"{job_id}/{query_blob(0)}")
    poison = service.transport.lane(messages.BULK).poison  # the job's lane: 2,800 letters
    poison.send_message("not a job at all")
    run_worker_until(service, lambda: service.get(job_id).status == "failed")

    letters = {letter.job_id: letter for letter in service.dead_letters()}
    assert letters[job_id].status == "failed"
    assert letters[job_id].error.startswith("batch 1 of 2: gave up after 1 attempts")
    assert letters[None].status is None

    service.blobs.put_text(job_id, query_blob(0), query, "text/x-fasta")
    assert service.requeue_dead_letters() == ([job_id], 1)
    assert service.get(job_id).status == "queued"
    run_worker_until(service, lambda: service.get(job_id).status == "succeeded")
    assert service.get(job_id).attempts == 2
    assert [letter.job_id for letter in service.dead_letters()] == [None]

    # A cancelled job's dead letter is removed, not requeued: the job stays cancelled.
    cancelled = service.cancel(submit(service, seed=41)).id
    poison.send_message(messages.batch_message(cancelled, 0).encode())
    assert service.requeue_dead_letters() == ([], 1)
    assert service.get(cancelled).status == "cancelled"
    assert [letter.job_id for letter in service.dead_letters()] == [None]
