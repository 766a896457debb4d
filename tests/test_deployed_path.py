"""The deployed app's path: function_app.py driven by the emulated Functions host on the emulated
Service Bus (see tests/deployed.py), with a real Azurite and the real blastn. Each test is a way
the deployed app could lose or strand a job; where the emulation and Azure could differ, the
test says so. Durations are shrunk (a lock of 3 s stands for 5 minutes), never the rules."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from conftest import (
    SMALL_DB,
    direct_blastn,
    processes_running,
    sample_queries,
    wait_until,
)
from deployed import QUEUE, QUEUE_RULES, deployment, scaled
from emulation.servicebus import EXPIRED_REASON, MAX_DELIVERY_REASON

from blast_core.domain import jobs, messages
from blast_core.storage.ports import Outgoing, query_blob

LONG_DB = "SSURef_93.fasta"  # 300 Mbases: a sensitive search of one 16S query takes seconds
FEW_ATTEMPTS = scaled(QUEUE_RULES, max_delivery_count=3)


def submit(host, query: str, database: str = SMALL_DB, **options) -> dict:
    response = host.http("POST", "jobs", json.dumps({"query": query, "database": database,
                                                     **options}).encode(),
                         headers={"Content-Type": "application/json"})
    assert response.status == 202, response.body
    return response.json()


def job_of(host, job_id: str) -> dict:
    return host.http("GET", f"jobs/{job_id}").json()


def ended(host, job_id: str, timeout: float) -> dict:
    return wait_until(lambda: (job := job_of(host, job_id))["status"] in jobs.FINAL_STATUSES
                      and job, timeout, f"job {job_id} ending")


def result(host, job_id: str, format_name: str = "tsv") -> str:
    """A result as a browser's download link gets it: waiting while a worker makes it."""
    response = host.http("GET", f"jobs/{job_id}/results",
                         params={"format": format_name, "wait": "30"})
    assert response.status == 200, response.body[:300]
    return response.body.decode()


# Defect 1: a requeue (any deliberate resend) needs a fresh message id.


def test_a_requeued_dead_letter_runs_again_despite_duplicate_detection(azurite, blast_available,
                                                                       tmp_path):
    with deployment(azurite, tmp_path, rules=FEW_ATTEMPTS, receive=False,
                    env={"BLAST_BATCH_LETTERS": "1000"}) as deployed:
        host, operator = deployed.host, deployed.operator
        query = sample_queries(SMALL_DB, 2, seed=51)
        job = submit(host, query, max_target_seqs=10)
        # Two batches, their queries in Blob storage. Every attempt of the first fails (its
        # query's blob is gone): the job gives up and the message is dead-lettered.
        stored = operator.blobs.get_text(job["id"], query_blob(0))
        operator.blobs.delete(job["id"], query_blob(0))
        host.resume()
        assert ended(host, job["id"], 120)["status"] == "failed"
        wait_until(lambda: operator.dead_letters(), 60, "the dead letter")
        operator.blobs.put_text(job["id"], query_blob(0), stored, "text/x-fasta")
        assert operator.requeue_dead_letters() == ([job["id"]], 0)
        done = ended(host, job["id"], 120)
        assert done["status"] == "succeeded", done
        assert result(host, job["id"]) == direct_blastn(query, SMALL_DB, tmp_path,
                                                        "-max_target_seqs", "10")
        # The requeue's message was not dropped as a duplicate of the first one.
        assert deployed.namespace.history("duplicate") == []


def test_duplicate_detection_still_drops_a_repeated_submit(azurite, blast_available, tmp_path):
    """A submit whose send the SDK retries sends the same first message id again."""
    with deployment(azurite, tmp_path, receive=False) as deployed:
        host, operator = deployed.host, deployed.operator
        job = submit(host, sample_queries(SMALL_DB, 1, seed=52))
        again = messages.batch_message(job["id"], 0)
        operator.transport.send(Outgoing(again.encode(), again.first_id))
        assert [e.message_id for e in deployed.namespace.history("duplicate")] == [
            again.first_id]
        host.resume()
        assert ended(host, job["id"], 60)["attempts"] == 1


# Defect 2: a transient fault is retried after a delay, not at once.


def test_a_transient_fault_is_retried_with_backoff_until_it_passes(azurite, blast_available,
                                                                   tmp_path):
    """A batch's query blob is missing for 5 s (storage throttling, a role propagating):
    abandoning brings a Service Bus message straight back, so without a delay all five
    attempts are spent in well under a second and the job fails."""
    with deployment(azurite, tmp_path, receive=False,
                    env={"BLAST_BATCH_LETTERS": "1000"}) as deployed:
        host, operator = deployed.host, deployed.operator
        query = sample_queries(SMALL_DB, 2, seed=53)  # two batches, in Blob storage
        job = submit(host, query, max_target_seqs=10)
        stored = operator.blobs.get_text(job["id"], query_blob(0))
        operator.blobs.delete(job["id"], query_blob(0))
        restore = threading.Timer(5.0, operator.blobs.put_text,
                                  args=(job["id"], query_blob(0), stored, "text/x-fasta"))
        host.resume()
        wait_until(lambda: deployed.namespace.history("scheduled"), 60, "the first retry")
        restore.start()  # 5 s after the first attempt failed
        done = ended(host, job["id"], 120)
        restore.join()
        assert done["status"] == "succeeded", done["error"]
        assert done["attempts"] == 2, "each batch searched once: a batch whose query " \
            "cannot be read is not started"
        scheduled = deployed.namespace.history("scheduled")
        assert 2 <= len(scheduled) <= 3  # failed at 0 s and 2 s (and 6 s), then ran
        assert all(e.message_id.startswith(f"{job['id']}-0-") for e in scheduled)
        assert result(host, job["id"]) == direct_blastn(query, SMALL_DB, tmp_path,
                                                        "-max_target_seqs", "10")


# Defect 3: jobs whose message the platform dead-lettered, or that no message can reach.


def test_a_message_expired_in_the_queue_fails_its_job_at_the_next_sweep(azurite,
                                                                        blast_available,
                                                                        tmp_path):
    """The message waits longer than its time to live (a day, here 2 s; a backlog, or no
    instance able to run the app): Service Bus dead-letters it once a receiver pulls from the
    queue, and the timer function's sweep ends the job."""
    with deployment(azurite, tmp_path, rules=scaled(QUEUE_RULES, default_ttl=2),
                    receive=False) as deployed:
        host = deployed.host
        job = submit(host, sample_queries(SMALL_DB, 1, seed=54))
        time.sleep(2.5)
        host.timer("sweep_stranded_jobs")
        assert job_of(host, job["id"])["status"] == "queued", "not dead-lettered yet"
        host.resume()
        wait_until(lambda: deployed.namespace.properties(QUEUE)["dead_letter_message_count"],
                   10, "the expired message to be dead-lettered")
        host.timer("sweep_stranded_jobs")
        failed = job_of(host, job["id"])
        assert failed["status"] == "failed"
        assert failed["error"] == ("the queue dead-lettered its message (TTLExpiredException: "
                                   "The message expired and was dead lettered.)")
        assert [e.reason.split(":")[0] for e in deployed.operator.transport.peek_dead_letters(
            10)] == [EXPIRED_REASON]


def test_a_search_whose_instances_die_ends_failed_not_running_forever(azurite, blast_available,
                                                                      tmp_path):
    """Each delivery's instance is lost mid-search (no Python exception, no settlement): the
    lock expires, the message comes back, and after the queue's max delivery count Service
    Bus dead-letters it by itself. The sweep then ends the job, which our code never saw
    fail."""
    rules = scaled(QUEUE_RULES, max_delivery_count=2, lock_duration=2)
    with deployment(azurite, tmp_path, rules=rules) as deployed:
        job = submit(deployed.host, sample_queries(LONG_DB, 1, seed=55), database=LONG_DB,
                     task="blastn")
        for _ in range(rules.max_delivery_count):
            wait_until(lambda: processes_running(job["id"]), 60, "BLAST of the job to start")
            deployed.hosts[-1].crash()
            deployed.start_host()
        wait_until(lambda: deployed.namespace.properties(QUEUE)["dead_letter_message_count"],
                   30, "Service Bus to dead-letter the message")
        host = deployed.hosts[-1]
        assert job_of(host, job["id"])["status"] == "running"
        host.timer("sweep_stranded_jobs")
        failed = job_of(host, job["id"])
        assert failed["status"] == "failed"
        assert failed["error"].startswith(f"the queue dead-lettered its message "
                                          f"({MAX_DELIVERY_REASON}")
        assert failed["attempts"] == rules.max_delivery_count
        wait_until(lambda: not processes_running(job["id"]), 10, "no BLAST left behind")


def test_the_sweep_ends_jobs_no_message_can_still_reach(azurite, blast_available, tmp_path):
    """A running batch whose delivery has ended without a word, and a queued job whose message
    is gone (lost on a broker without a dead-letter queue), are ended once no delivery can
    still be under way: the sweep looks ahead in time rather than the test waiting hours."""
    with deployment(azurite, tmp_path, receive=False) as deployed:
        operator = deployed.operator
        running = operator.submit({"query": sample_queries(SMALL_DB, 1, seed=56),
                                   "database": SMALL_DB})
        record, etag = operator.records.get(running.id)
        operator.records.replace(record.batch_started(0), etag)
        queued = operator.submit({"query": sample_queries(SMALL_DB, 1, seed=57),
                                  "database": SMALL_DB})
        limits = operator.settings.limits
        now = datetime.now(UTC)
        soon = operator.sweep(now + timedelta(seconds=limits.running_stale_after - 60))
        assert (soon.dead_lettered, soon.stranded) == ([], [])
        later = operator.sweep(now + timedelta(seconds=limits.running_stale_after + 60))
        assert later.stranded == [running.id]
        assert operator.get(running.id).error.startswith("stranded: its search was running")
        assert operator.get(queued.id).status == "queued", "its message may still be waiting"
        last = operator.sweep(now + timedelta(seconds=limits.queued_stale_after + 60))
        assert last.stranded == [queued.id]
        assert operator.get(queued.id).error.startswith(
            "stranded: no queue message can still deliver its search")


# Defect 4: searches against the platform's limits.


def test_a_search_longer_than_the_invocation_allows_is_stopped_by_us_not_the_host(
        azurite, blast_available, tmp_path):
    """functionTimeout shrunk to 24 s (it is 1 h): BLAST may run 18 s (the timeout less a
    quarter kept for storing results). A longer search fails with that reason; the host never
    times out, so the other search running on the instance is not killed with it."""
    env = {"AzureFunctionsJobHost__functionTimeout": "00:00:24", "BLAST_TIME_LIMIT": "18"}
    with deployment(azurite, tmp_path, env=env, max_concurrent_calls=2) as deployed:
        host = deployed.host
        assert host.limits.function_timeout == 24
        long = submit(host, sample_queries(LONG_DB, 4, seed=58), database=LONG_DB,
                      task="blastn")
        wait_until(lambda: processes_running(long["id"]), 60, "the long search to start")
        query = sample_queries(SMALL_DB, 1, seed=59)
        short = submit(host, query)
        assert ended(host, short["id"], 60)["status"] == "succeeded"
        failed = ended(host, long["id"], 60)
        assert failed["status"] == "failed"
        assert failed["error"].startswith("BLAST was stopped after 18 s, the longest one search "
                                          "may run here")
        assert host.history("function-timeout") == [] and host.history("worker-died") == []
        assert failed["attempts"] == 1, "a search over the limit is not tried again"
        assert result(host, short["id"]) == direct_blastn(query, SMALL_DB, tmp_path,
                                                          "-max_target_seqs", "100")


def test_scale_in_kills_a_search_after_its_grace_and_another_instance_finishes_it(
        azurite, blast_available, tmp_path):
    """The scale controller removes an instance: it takes no more messages and its running
    search gets the grace period (60 minutes; here 2 s), then the instance is gone with
    BLAST. The lock expires and another instance runs the search again."""
    with deployment(azurite, tmp_path, hosts=0) as deployed:
        first = deployed.start_host(scale_in_grace=2.0)
        query = sample_queries(LONG_DB, 1, seed=60)
        job = submit(first, query, database=LONG_DB, task="blastn", max_target_seqs=10)
        wait_until(lambda: processes_running(job["id"]), 60, "BLAST to start on the instance")
        second = deployed.start_host()
        first.scale_in()
        assert first.history("scale-in")
        done = ended(second, job["id"], 180)
        assert (done["status"], done["attempts"]) == ("succeeded", 2)
        assert result(second, job["id"]) == direct_blastn(query, LONG_DB, tmp_path, "-task",
                                                          "blastn", "-max_target_seqs", "10")


# Defect 5: results are made by a worker, and big ones never pass through a function whole.


def test_results_are_made_by_a_worker_and_big_ones_are_links(azurite, blast_available,
                                                             tmp_path):
    """The first GET of a format answers 202 at once, whatever the job's size; a worker
    makes the format; a result over BLAST_MAX_INLINE_RESULT_BYTES (here 200 kB) answers a
    redirect to Blob storage instead of passing through the function."""
    import requests

    env = {"BLAST_MAX_INLINE_RESULT_BYTES": "200000", "BLAST_BATCH_LETTERS": "20000"}
    with deployment(azurite, tmp_path, env=env, http_timeout=5.0) as deployed:
        host = deployed.host
        query = sample_queries(SMALL_DB, 60, seed=61)
        job = submit(host, query, max_target_seqs=20)
        assert job["batches"] > 1
        assert ended(host, job["id"], 180)["status"] == "succeeded"
        started = time.monotonic()
        first = host.http("GET", f"jobs/{job['id']}/results", params={"format": "json"})
        assert first.status == 202 and time.monotonic() - started < 2
        assert first.headers["Retry-After"] == "1"
        link = wait_until(lambda: (r := host.http("GET", f"jobs/{job['id']}/results",
                                                  params={"format": "json"})).status == 302
                          and r.headers["Location"], 120, "the JSON to be made")
        report = requests.get(link, timeout=60).json()
        assert len(report["BlastOutput2"]) == 60
        assert job_of(host, job["id"])["formats"] == {"json": "ready"}
        tsv = wait_until(lambda: (r := host.http("GET", f"jobs/{job['id']}/results",
                                                 params={"format": "tsv", "wait": "3"}))
                         .status in (200, 302) and r, 120, "the tsv")
        text = tsv.body.decode() if tsv.status == 200 else \
            requests.get(tsv.headers["Location"], timeout=60).text
        assert text == direct_blastn(query, SMALL_DB, tmp_path, "-max_target_seqs", "20")


@pytest.mark.parametrize("setting", ["BLAST_THREADS", "BLAST_TIME_LIMIT"])
def test_a_bad_setting_leaves_the_app_running_and_says_what_is_wrong(azurite, blast_available,
                                                                     tmp_path, setting):
    """Defect 7, through the host: the functions load, health names the setting, and a
    submit is refused with the same words, storing and queueing nothing."""
    value = {"BLAST_THREADS": "two", "BLAST_TIME_LIMIT": "7200"}[setting]
    with deployment(azurite, tmp_path, host_env={setting: value}) as deployed:
        host = deployed.host
        assert "blast_worker" in host.functions and "sweep_stranded_jobs" in host.functions
        health = host.http("GET", "health")
        assert health.status == 200 and health.json()["status"] == "degraded"
        [problem] = health.json()["problems"]
        assert problem.startswith(setting)
        refused = host.http("POST", "jobs", b'{"query": ">q\\nACGTACGTAAGG", "database": "x"}',
                            headers={"Content-Type": "application/json"})
        assert refused.status == 503 and problem in refused.json()["detail"]
        assert deployed.namespace.properties(QUEUE)["active_message_count"] == 0
