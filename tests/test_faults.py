"""Fault scenarios, each run through both ways the app runs (tests/faults.py): `serve` on the
Storage Queue, and the deployed app under the emulated Functions host on the emulated Service
Bus. Real blastn and a real Azurite; workers killed with -9 at random moments, a storage
outage, load from many clients, messages that are not ours, a cancel while BLAST runs, and a
dead letter requeued. Every job must end, once, with the hits of a clean run.

Each test writes its figures to test-artifacts/reliability-<transport>-<name>.json, the
table of docs/reliability.md: jobs, faults, lost, done twice, stranded."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from azure.data.tables import TableClient
from conftest import (
    ROOT,
    SMALL_DB,
    direct_blastn,
    processes_running,
    sample_queries,
    sequences_of,
    service_env,
    wait_until,
)
from deployed import QUEUE_RULES, deployment, scaled
from faults import (
    HostPath,
    ServePath,
    blast_processes_for,
    outcome,
    record_figures,
    statuses_once_settled,
    successes_logged,
)

from blast_core.blast.samples import sample_reads
from blast_core.domain import messages
from blast_core.storage.azurite import LocalAzurite
from blast_core.storage.ports import query_blob

pytestmark = pytest.mark.slow
PATHS = ["storage", "servicebus"]
LONG_DB = "SSURef_93.fasta"
VECTORS = "UniVec_Core"


@contextmanager
def running(path: str, azurite: LocalAzurite, tmp_path: Path, workers: int = 1,
            paused: bool = False, **env: str) -> Iterator[ServePath | HostPath]:
    """The app on `path` with `workers` searches at a time, taking messages unless `paused`
    (until `resume()`). Locks and visibility last 3 s (deployed: 5 minutes and 60 s), so a
    killed worker's message soon comes back."""
    if path == "storage":
        settings = service_env(azurite, BLAST_VISIBILITY_TIMEOUT="3", **env)
        served = ServePath(settings, tmp_path, workers, paused)
        try:
            yield served
        finally:
            served.close()
    else:
        rules = scaled(QUEUE_RULES, max_delivery_count=int(env.pop("BLAST_MAX_DELIVERIES", 5)))
        with deployment(azurite, tmp_path, rules=rules, env=env, receive=not paused,
                        max_concurrent_calls=workers) as deployed:
            yield HostPath(deployed)


def submit_all(app, count: int, seed: int, sequences: int = 1) -> dict[str, str]:
    """Job id -> query of `count` jobs of `sequences` sequences against the 16S database."""
    queries = {}
    for number in range(count):
        query = sample_queries(SMALL_DB, sequences, seed=seed + number)
        answer = app.http("POST", "jobs", json={"query": query, "database": SMALL_DB,
                                                "max_target_seqs": 10})
        assert answer.status_code == 202, answer.text
        queries[answer.json()["id"]] = query
    return queries


def status_of(app):
    """A job's status; "unanswered" while the app cannot answer (its worker is being killed:
    a request that was running in it gets a 500, in Azure too), and the poll goes on."""
    def status(job_id: str) -> str:
        answer = app.http("GET", f"jobs/{job_id}")
        return answer.json()["status"] if answer.status_code == 200 else "unanswered"

    return status


def results_match_direct_blastn(app, queries: dict[str, str], tmp_path: Path) -> None:
    for job_id, query in queries.items():
        tsv = app.http("GET", f"jobs/{job_id}/results", params={"format": "tsv", "wait": "30"})
        assert tsv.text == direct_blastn(query, SMALL_DB, tmp_path, "-max_target_seqs", "10")


@pytest.fixture
def own_azurite(tmp_path):
    """An Azurite of this test's own, with its data on disk so it survives a restart."""
    server = LocalAzurite(ROOT, tmp_path / "azurite").start()
    yield server
    server.stop()


@pytest.mark.parametrize("path", PATHS)
def test_workers_killed_at_random_moments_lose_and_duplicate_nothing(path, own_azurite,
                                                                     blast_available, tmp_path):
    with running(path, own_azurite, tmp_path, BLAST_MAX_DELIVERIES="20") as app:
        queries = submit_all(app, 24, seed=1000)
        rng = random.Random(2026)
        for _ in range(6):
            time.sleep(rng.uniform(0.3, 2.5))
            app.kill_worker()
        statuses = statuses_once_settled(status_of(app), list(queries), timeout=240)
        figures = outcome(statuses, successes_logged(app.log))
        record_figures(app.transport, "kill-9", {**figures, "faults": "6 kill -9 of a worker"})
        assert figures == {"jobs": 24, "lost": 0, "done_twice": 0, "stranded": 0}
        results_match_direct_blastn(app, queries, tmp_path)
        assert blast_processes_for(list(queries)) == []


@pytest.mark.parametrize("path", PATHS)
def test_a_storage_outage_mid_run_loses_nothing(path, own_azurite, blast_available, tmp_path):
    with running(path, own_azurite, tmp_path, workers=2, BLAST_MAX_DELIVERIES="20") as app:
        queries = submit_all(app, 16, seed=2000)
        time.sleep(1.5)
        own_azurite.stop()
        time.sleep(4.0)
        own_azurite.start()
        statuses = statuses_once_settled(status_of(app), list(queries), timeout=240)
        figures = outcome(statuses, successes_logged(app.log))
        record_figures(app.transport, "storage-outage",
                       {**figures, "faults": "Azurite stopped for 4 s"})
        assert figures == {"jobs": 16, "lost": 0, "done_twice": 0, "stranded": 0}
        results_match_direct_blastn(app, queries, tmp_path)


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("path", PATHS)
def test_many_concurrent_clients_are_all_answered_and_every_job_ends(path, azurite,
                                                                     blast_available, tmp_path):
    query = ">vector probe\n" + "GATCTTTTCTACGGGGTCTGACGCTCAGTGGAACGAAAACTCACGTTAAGGGATTTTGGTCATG\n"
    total, clients = 1000, 32
    with running(path, azurite, tmp_path, workers=2) as app:
        started = time.monotonic()

        def submit(number: int) -> tuple[int, str]:
            answer = app.http("POST", "jobs", json={"query": query, "database": "UniVec_Core",
                                                    "max_target_seqs": 5 + number % 5})
            return answer.status_code, answer.json().get("id", "")

        with ThreadPoolExecutor(clients) as pool:
            answers = list(pool.map(submit, range(total)))
        submit_seconds = time.monotonic() - started
        codes = [code for code, _ in answers]
        accepted = [job_id for code, job_id in answers if code == 202]
        statuses = statuses_once_settled(status_of(app), accepted, timeout=900)
        figures = outcome(statuses, successes_logged(app.log))
        record_figures(app.transport, "load", {
            **figures, "faults": f"{clients} concurrent clients", "accepted": len(accepted),
            "server_errors": sum(1 for code in codes if code >= 500),
            "submit_seconds": round(submit_seconds, 1),
            "seconds_until_all_ended": round(time.monotonic() - started, 1)})
        assert not [code for code in codes if code >= 500], sorted(set(codes))
        assert figures == {"jobs": total, "lost": 0, "done_twice": 0, "stranded": 0}
        logs = "".join(log.read_text() for log in tmp_path.glob("*.log"))
        records = json.dumps([dict(e) for e in TableClient.from_connection_string(
            azurite.connection_string, app.operator.settings.jobs_table).list_entities()])
        for secret in (azurite.key, azurite.connection_string, "sig="):
            assert secret not in logs and secret not in records


@pytest.mark.parametrize("path", PATHS)
def test_messages_that_are_not_ours_end_in_the_dead_letters_and_others_run(
        path, azurite, blast_available, tmp_path):
    with running(path, azurite, tmp_path) as app:
        strays = ["this is not a job", "[1, 2]", '{"job_id": "../../etc"}',
                  messages.batch_message("0" * 19, 0).encode(),  # names no job
                  '{"job_id": "' + "1" * 19 + '", "format": "pdf"}']
        for body in strays:
            app.send_raw(body)
        queries = submit_all(app, 8, seed=3000)
        statuses = statuses_once_settled(status_of(app), list(queries), timeout=120)
        wait_until(lambda: app.dead_letter_count() == len(strays), 60,
                   "every stray message in the dead letters")
        figures = outcome(statuses, successes_logged(app.log))
        record_figures(app.transport, "malformed", {
            **figures, "faults": f"{len(strays)} messages that are not ours",
            "dead_lettered": app.dead_letter_count()})
        assert figures == {"jobs": 8, "lost": 0, "done_twice": 0, "stranded": 0}
        results_match_direct_blastn(app, queries, tmp_path)


@pytest.mark.parametrize("path", PATHS)
def test_cancel_stops_a_running_search_and_its_pending_batches(path, azurite, blast_available,
                                                               tmp_path):
    with running(path, azurite, tmp_path, BLAST_CANCEL_CHECK_SECONDS="0.5",
                 BLAST_BATCH_LETTERS="7000") as app:
        answer = app.http("POST", "jobs", json={"query": sample_queries(LONG_DB, 20, seed=1),
                                                "database": LONG_DB, "task": "blastn"})
        job = answer.json()
        assert job["batches"] > 1
        wait_until(lambda: processes_running(job["id"]), 120, "BLAST of the job to start")
        assert app.http("DELETE", f"jobs/{job['id']}").status_code == 200
        cancelled_at = time.monotonic()
        wait_until(lambda: not processes_running(job["id"]), 20, "BLAST to be stopped")
        stopped_after = time.monotonic() - cancelled_at
        time.sleep(2)  # the other batches' messages arrive and are settled without BLAST
        record = app.operator.get(job["id"])
        statuses = {job["id"]: record.status}
        figures = outcome(statuses, successes_logged(app.log), expected="cancelled")
        record_figures(app.transport, "cancel", {
            **figures, "faults": f"cancel of a {job['batches']}-batch job while BLAST runs",
            "blast_stopped_after_seconds": round(stopped_after, 1),
            "batches_run": record.attempts})
        assert figures == {"jobs": 1, "lost": 0, "done_twice": 0, "stranded": 0}
        assert record.attempts == 1 and record.cpu_seconds_blast > 0
        assert list(app.operator.blobs._container.list_blobs(
            name_starts_with=f"{job['id']}/")) == []


@pytest.mark.parametrize("path", PATHS)
def test_a_job_that_gave_up_runs_again_when_requeued(path, azurite, blast_available, tmp_path):
    with running(path, azurite, tmp_path, paused=True, BLAST_MAX_DELIVERIES="3",
                 BLAST_BATCH_LETTERS="1000") as app:
        operator = app.operator
        queries = submit_all(app, 1, seed=4000, sequences=2)  # two batches, in Blob storage
        [job_id] = queries
        # Until requeued, every attempt at the first batch fails: its query's blob is gone.
        stored = operator.blobs.get_text(job_id, query_blob(0))
        operator.blobs.delete(job_id, query_blob(0))
        app.resume()
        gave_up = statuses_once_settled(status_of(app), [job_id], timeout=120)
        assert gave_up == {job_id: "failed"}
        wait_until(lambda: operator.dead_letters(), 60, "the dead letter")
        operator.blobs.put_text(job_id, query_blob(0), stored, "text/x-fasta")
        assert operator.requeue_dead_letters() == ([job_id], 0)
        statuses = statuses_once_settled(status_of(app), [job_id], timeout=120)
        figures = outcome(statuses, successes_logged(app.log))
        record_figures(app.transport, "requeue", {
            **figures, "faults": "every attempt failed, then the dead letter was requeued"})
        assert figures == {"jobs": 1, "lost": 0, "done_twice": 0, "stranded": 0}
        results_match_direct_blastn(app, queries, tmp_path)


@pytest.mark.parametrize("path", PATHS)
def test_an_upload_whose_workers_are_killed_while_splitting_runs_once(
        path, own_azurite, blast_available, tmp_path):
    """A query set of 150,000 reads uploaded to Blob storage, its split (two seconds) killed
    with -9 once it has recorded some progress, then its search at random moments: the split
    is done again from the start, every batch is queued and searched to one result, a clean
    run's."""
    reads = "".join(sample_reads(sequences_of(SMALL_DB), sequences_of(VECTORS), 150_000))
    with running(path, own_azurite, tmp_path, BLAST_MAX_DELIVERIES="20") as app:
        made = app.http("POST", "uploads").json()
        stored = requests.put(made["url"], data=reads.encode(),
                              headers=made["headers"], timeout=120)
        assert stored.status_code == 201
        answer = app.http("POST", "jobs", json={"query_upload": made["upload_id"],
                                                "database": VECTORS, "max_target_seqs": 10})
        assert answer.status_code == 202, answer.text
        job_id = answer.json()["id"]
        def splitting() -> bool:
            job = app.http("GET", f"jobs/{job_id}").json()
            return job["status"] == "validating" and job["upload_checked"] > 0

        wait_until(splitting, 60, "the split under way", interval=0.02)
        app.kill_worker()  # mid-split: it has recorded its progress, and is not done
        rng = random.Random(2027)
        for _ in range(3):
            time.sleep(rng.uniform(0.5, 2.5))
            app.kill_worker()
        statuses = statuses_once_settled(status_of(app), [job_id], timeout=300)
        figures = outcome(statuses, successes_logged(app.log))
        record_figures(app.transport, "upload-kill-9",
                       {**figures, "faults": "kill -9 of a worker during the split, then 3 more"})
        assert figures == {"jobs": 1, "lost": 0, "done_twice": 0, "stranded": 0}
        job = app.http("GET", f"jobs/{job_id}").json()
        assert job["queries"] == 150_000 and job["batches"] > 40
        tsv = app.http("GET", f"jobs/{job_id}/results", params={"format": "tsv", "wait": "60"})
        assert tsv.text == direct_blastn(reads, VECTORS, tmp_path, "-max_target_seqs", "10")
