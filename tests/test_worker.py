"""Processing semantics on Azurite with the real blastn: idempotent redelivery, permanent and
transient failures, and the Storage Queue worker's retries and poison queue."""

import threading
import time

import pytest
from conftest import SMALL_DB, sample_queries, service_env

from blast_core import jobs
from blast_core.results import archive_blob, query_blob
from blast_core.service import BlastService, UnknownJob
from blast_core.settings import Settings
from blast_core.worker import run_worker


def submit(service: BlastService, seed: int = 1) -> str:
    return service.submit({"query": sample_queries(SMALL_DB, 1, seed=seed),
                           "database": SMALL_DB}).id


def test_a_redelivered_message_for_a_finished_job_does_not_search_again(service):
    job_id = submit(service)
    service.process(jobs.encode_message(job_id), 1)
    first, etag = service.records.get(job_id)
    assert (first.status, first.attempts) == ("succeeded", 1)
    service.process(jobs.encode_message(job_id), 2)
    again, etag_again = service.records.get(job_id)
    assert again == first and etag_again == etag


def test_a_job_left_running_by_a_dead_worker_runs_again(service):
    job_id = submit(service)
    job, etag = service.records.get(job_id)
    service.records.replace(job.batch_started(), etag)
    service.process(jobs.encode_message(job_id), 2)
    done, _ = service.records.get(job_id)
    assert (done.status, done.attempts) == ("succeeded", 2)
    assert b"".join(service.result(job_id, "tsv").chunks)


def test_blast_refusing_a_job_fails_it_without_retry(service, settings_env, tmp_path):
    job_id = submit(service)
    no_databases = BlastService.from_settings(Settings.from_env(
        {**settings_env, "BLAST_DB_DIR": str(tmp_path)}))
    no_databases.process(jobs.encode_message(job_id), 1)
    failed, _ = service.records.get(job_id)
    assert failed.status == "failed" and "BLAST rejected the search" in failed.error
    assert not service.results.exists(job_id, archive_blob(0))


def test_a_transient_error_retries_and_the_last_attempt_fails_the_job(service):
    job_id = submit(service)
    service.results._container.delete_blob(f"{job_id}/{query_blob(0)}")
    with pytest.raises(Exception, match=r"BlobNotFound|not exist"):
        service.process(jobs.encode_message(job_id), 1)
    assert service.records.get(job_id)[0].status == "running"
    with pytest.raises(Exception, match=r"BlobNotFound|not exist"):
        service.process(jobs.encode_message(job_id), service.settings.max_deliveries)
    failed, _ = service.records.get(job_id)
    assert failed.status == "failed"
    assert failed.error.startswith(f"gave up after {service.settings.max_deliveries} attempts: ")


def test_unreadable_and_unknown_messages_raise_so_they_are_retried(service):
    with pytest.raises(jobs.MalformedMessage):
        service.process(b"garbage", 1)
    with pytest.raises(UnknownJob):
        service.process(jobs.encode_message(jobs.new_job_id()), 1)


def test_the_worker_poisons_bad_messages_and_keeps_serving(azurite, blast_available):
    env = service_env(azurite, BLAST_MAX_DELIVERIES="2", BLAST_VISIBILITY_TIMEOUT="3")
    service = BlastService.from_settings(Settings.from_env(env))
    service.ensure_storage()
    service.transport.queue.send_message("this is not a job")
    service.transport.queue.send_message(jobs.encode_message(jobs.new_job_id()))
    good = submit(service, seed=8)
    stop = threading.Event()
    worker = threading.Thread(target=run_worker, args=(service, stop))
    worker.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            poisoned = service.transport.poison.peek_messages(max_messages=5)
            if len(poisoned) == 2 and service.records.get(good)[0].status == "succeeded":
                break
            time.sleep(0.2)
    finally:
        stop.set()
        worker.join(timeout=30)
    assert service.records.get(good)[0].status == "succeeded"
    assert sorted(m.content[:4] for m in poisoned) == sorted(['{"jo', "this"])
    assert service.transport.queue.peek_messages(max_messages=5) == []


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
    env = service_env(azurite, BLAST_MAX_DELIVERIES="1", BLAST_VISIBILITY_TIMEOUT="3")
    service = BlastService.from_settings(Settings.from_env(env))
    service.ensure_storage()
    job_id = submit(service, seed=40)
    query = service.results.get_text(job_id, query_blob(0))
    service.results._container.delete_blob(f"{job_id}/{query_blob(0)}")
    service.transport.poison.send_message("not a job at all")
    run_worker_until(service, lambda: service.get(job_id).status == "failed")

    letters = {letter.job_id: letter for letter in service.dead_letters()}
    assert letters[job_id].status == "failed"
    assert letters[job_id].error.startswith("gave up after 1 attempts")
    assert letters[None].status is None

    service.results.put_text(job_id, query_blob(0), query, "text/x-fasta")
    assert service.requeue_dead_letters() == ([job_id], 1)
    assert service.get(job_id).status == "queued"
    run_worker_until(service, lambda: service.get(job_id).status == "succeeded")
    assert service.get(job_id).attempts == 2
    assert [letter.job_id for letter in service.dead_letters()] == [None]

    # A cancelled job's dead letter is removed, not requeued: the job stays cancelled.
    cancelled = service.cancel(submit(service, seed=41)).id
    service.transport.poison.send_message(jobs.encode_message(cancelled))
    assert service.requeue_dead_letters() == ([], 1)
    assert service.get(cancelled).status == "cancelled"
    assert [letter.job_id for letter in service.dead_letters()] == [None]
