"""A job's lifecycle beyond one search: cancelling it, searching several databases at once,
and deleting it when the retention period ends. Real blastn, Azurite and `serve`."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from conftest import (
    SMALL_DB,
    direct_blastn,
    fetch_result,
    processes_running,
    sample_queries,
    service_env,
    start_server,
    wait_for_job,
    wait_until,
)

from blast_core.api import views
from blast_core.blast.programs import StopCheck, ToolStopped, run_measured
from blast_core.domain import client_input, job_request, jobs, messages
from blast_core.domain.database import DatabaseInfo
from blast_core.domain.fasta import QueryLimits, Sequence, format_fasta
from blast_core.domain.job_request import JobRequest
from blast_core.domain.jobs import Job
from blast_core.service import bootstrap
from blast_core.service.core import BlastService
from blast_core.service.errors import JobExpired
from blast_core.settings import Settings
from blast_core.storage.ports import query_blob

LONG_DB = "SSURef_93.fasta"  # 300 Mbases: 20 queries with task blastn take minutes


def blob_names(service: BlastService, job_id: str) -> list[str]:
    return [b.name for b in service.blobs._container.list_blobs(name_starts_with=f"{job_id}/")]


# Cancel


def test_a_stop_check_kills_the_program_and_a_failing_check_does_not():
    started = time.monotonic()
    with pytest.raises(ToolStopped) as stopped:
        run_measured([sys.executable, "-c", "while True: pass"], timeout=60,
                     stop=StopCheck(lambda: True, 0.5))
    assert time.monotonic() - started < 5
    assert stopped.value.cpu_seconds > 0.2  # what it used before it was stopped

    def broken() -> bool:
        raise ConnectionError("storage is down")

    assert run_measured(["echo", "ran"], timeout=60, stop=StopCheck(broken, 0.05)).stdout == "ran\n"
    assert run_measured([sys.executable, "-c", "import time; time.sleep(0.5)"], timeout=60,
                        stop=StopCheck(broken, 0.05)).cpu_seconds >= 0


def test_a_cancelled_queued_job_never_runs(service):
    job = service.submit({"query": sample_queries(SMALL_DB, 2, seed=21), "database": SMALL_DB})
    cancelled = service.cancel(job.id)
    assert (cancelled.status, cancelled.finished_at is not None) == ("cancelled", True)
    assert blob_names(service, job.id) == []
    delivery = service.transport.receive()
    service.handle(messages.decode(delivery.body), delivery.delivery_count)  # not run
    delivery.complete()
    after = service.get(job.id)
    assert (after.status, after.attempts, after.batches_done, after.hits) == ("cancelled", 0, 0, None)
    assert blob_names(service, job.id) == []


@pytest.fixture(scope="module")
def cancel_server(azurite, blast_available, tmp_path_factory):
    env = service_env(azurite, BLAST_CANCEL_CHECK_SECONDS="0.5", BLAST_BATCH_LETTERS="7000")
    server = start_server(env, tmp_path_factory.mktemp("cancel") / "serve.log", workers=1)
    service = bootstrap.build(Settings.from_env(env))
    yield server, service
    server.stop()
    service.transport.close()


def test_cancelling_a_running_search_stops_blastn_skips_its_batches_and_keeps_nothing(
        cancel_server):
    server, service = cancel_server
    query = sample_queries(LONG_DB, 20, seed=1)
    job = requests.post(f"{server.url}/jobs", json={
        "query": query, "database": LONG_DB, "task": "blastn"}, timeout=30).json()
    assert job["batches"] > 1
    wait_until(lambda: processes_running(job["id"]), 120, "blastn of the job to start")

    answer = requests.delete(f"{server.url}/jobs/{job['id']}", timeout=30)
    assert answer.status_code == 200 and answer.json()["status"] == "cancelled"
    cancelled_at = time.monotonic()
    wait_until(lambda: not processes_running(job["id"]), 20, "blastn to be stopped")
    assert time.monotonic() - cancelled_at < 15

    # Every batch message is settled: the first one's BLAST was stopped, the rest never ran.
    wait_until(lambda: service.transport.counts().depth == 0, 60, "the queue to drain")
    record = service.get(job["id"])
    assert (record.status, record.batches_done, record.attempts, record.hits) == (
        "cancelled", 0, 1, None)
    # What the stopped BLAST spent is on the record, for the run summary's cost.
    assert record.seconds_blast > 0 and record.cpu_seconds_blast > 0
    assert blob_names(service, job["id"]) == []
    assert "cancelled" in server.log.read_text()

    again = requests.delete(f"{server.url}/jobs/{job['id']}", timeout=30)
    assert again.status_code == 409 and again.json()["job_status"] == "cancelled"
    results = requests.get(f"{server.url}/jobs/{job['id']}/results", timeout=30)
    assert results.status_code == 409 and "has no results" in results.json()["detail"]

    # The worker goes on to the next job.
    small = requests.post(f"{server.url}/jobs", json={
        "query": sample_queries(SMALL_DB, 1, seed=22), "database": SMALL_DB}, timeout=30).json()
    assert wait_for_job(server.url, small["id"])["status"] == "succeeded"
    done = requests.delete(f"{server.url}/jobs/{small['id']}", timeout=30)
    assert done.status_code == 409 and done.json()["job_status"] == "succeeded"
    unknown = requests.delete(f"{server.url}/jobs/{jobs.new_job_id()}", timeout=30)
    assert unknown.status_code == 404
    malformed = requests.delete(f"{server.url}/jobs/not-a-job", timeout=30)
    assert malformed.status_code == 400 and malformed.json()["errors"][0]["field"] == "job_id"


def test_the_cli_cancels_a_job(cancel_server):
    server, service = cancel_server
    job = service.submit({"query": sample_queries(LONG_DB, 2, seed=3), "database": LONG_DB,
                          "task": "blastn"})
    cancel = subprocess.run([sys.executable, "-m", "blast_core", "cancel", job.id, "--url",
                             server.url], capture_output=True, text=True, timeout=60)
    assert (cancel.returncode, cancel.stdout.strip()) == (0, f"job {job.id} cancelled")
    again = subprocess.run([sys.executable, "-m", "blast_core", "cancel", job.id, "--url",
                            server.url], capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and "is cancelled" in again.stderr and "409" in again.stderr


# Several databases


NUCLEOTIDE = {name: DatabaseInfo(name, name, "nucleotide", 10, 1000) for name in ("a", "b", "c")}
PROTEIN = {"p": DatabaseInfo("p", "p", "protein", 10, 1000)}
LIMITS = QueryLimits(10**6, 100, 10**6, 1000)


@pytest.mark.parametrize("database, reason", [
    (["a", "p"], "databases searched together must be of one molecule type: 'a' is "
                 "nucleotide; 'p' is protein"),
    (["a", "zz", "yy"], "no database named 'zz'; GET /api/databases lists them"),
    (["a", "a"], "must not name a database twice"),
    ([], "must not be empty"),
    (["a", 5], "item 2 must be a string, not 5"),
    (["a", "../b"], "item 2 must be a plain name"),
    (["a"] * 11, "must have at most 10 items, not 11"),
    ({"a": 1}, "must be a string or a list, not {\"a\": 1}"),
])
def test_every_database_of_a_list_is_validated(database, reason):
    with pytest.raises(client_input.InvalidRequest) as refused:
        job_request.parse_request({"query": "ACGT" * 10, "database": database}, LIMITS,
                                  {**NUCLEOTIDE, **PROTEIN}.get)
    assert refused.value.errors[0].field == "database"
    assert refused.value.errors[0].reason.startswith(reason)
    if database == ["a", "zz", "yy"]:
        assert [e.reason.split("'")[1] for e in refused.value.errors] == ["zz", "yy"]


def test_a_list_of_databases_is_one_blast_db_argument():
    request = job_request.parse_request({"query": "ACGT" * 10, "database": ["b", "a"]}, LIMITS,
                                        NUCLEOTIDE.get)
    job = Job.submitted(jobs.new_job_id(), request)
    assert (job.database, job.databases) == ("b a", ["b", "a"])
    assert job_request.parse_request({"query": "ACGT" * 10, "database": "a"}, LIMITS,
                                     NUCLEOTIDE.get).database == "a"


@pytest.fixture(scope="module")
def server(azurite, blast_available, tmp_path_factory):
    env = service_env(azurite, BLAST_BATCH_LETTERS="300")
    server = start_server(env, tmp_path_factory.mktemp("multi") / "serve.log", workers=2)
    yield server
    server.stop()


def test_two_databases_searched_together_match_direct_blastn(server, tmp_path):
    query = sample_queries("16SCore", 3, seed=31) + sample_queries("UniVec_Core", 3, seed=32)
    job = requests.post(f"{server.url}/jobs", json={
        "query": query, "database": ["16SCore", "UniVec_Core"], "task": "blastn",
        "evalue": 1e-5, "max_target_seqs": 50}, timeout=30).json()
    assert job["batches"] > 1
    done = wait_for_job(server.url, job["id"])
    assert done["status"] == "succeeded"
    assert (done["database"], done["databases"]) == ("16SCore UniVec_Core",
                                                     ["16SCore", "UniVec_Core"])
    letters = {d["name"]: d["letters"] for d in
               requests.get(f"{server.url}/databases", timeout=30).json()["databases"]}
    assert done["summary"]["database_letters"] == letters["16SCore"] + letters["UniVec_Core"]

    tsv = fetch_result(done["results"]["tsv"]).text
    assert tsv == direct_blastn(query, "16SCore UniVec_Core", tmp_path, "-task", "blastn",
                                "-evalue", "1e-5", "-max_target_seqs", "50")
    subjects = [line.split("\t")[1] for line in tsv.splitlines()]
    assert any(s.startswith("gi|") for s in subjects)  # 16SCore's ids
    assert any(s.startswith("gnl|uv|") for s in subjects)  # UniVec_Core's
    report = fetch_result(done["results"]["json"]).json()
    assert {r["report"]["search_target"]["db"] for r in report["BlastOutput2"]} == {
        "16SCore UniVec_Core"}


def test_databases_list_says_how_many_one_search_may_name(server):
    listing = requests.get(f"{server.url}/databases", timeout=30).json()
    assert listing["max_per_search"] == job_request.MAX_DATABASES
    refused = requests.post(f"{server.url}/jobs", json={
        "query": "ACGT" * 10, "database": ["16SCore", "no-such-db"]}, timeout=30)
    assert refused.status_code == 400
    assert refused.json()["errors"] == [{"field": "database", "reason": "no database named "
                                         "'no-such-db'; GET /api/databases lists them"}]


# Retention


REQUEST = JobRequest(sequences=(Sequence("q", "ACGTACGTACGTACGTACGT"),), database=SMALL_DB,
                     program="blastn", task="megablast", evalue=10.0, max_target_seqs=10)


def test_clean_up_deletes_exactly_the_expired_jobs_reading_no_younger_one(azurite,
                                                                          blast_available):
    service = bootstrap.build(Settings.from_env(service_env(
        azurite, BLAST_RETENTION_DAYS="1")))
    service.ensure_storage()
    now_ms = int(time.time() * 1000)
    hour = 3_600_000
    # More expired jobs than one page of the clean-up, and younger ones up to the bound.
    ages = [24 * hour + 60_000 + n * 1000 for n in range(130)] + [23 * hour, hour, 0]
    created = [Job.submitted(jobs.new_job_id(now_ms - age), REQUEST) for age in ages]
    for job in created:
        service.records.create(job)
        service.blobs.put_text(job.id, query_blob(0), format_fasta(REQUEST.sequences), "text/x-fasta")
    expired, young = created[:130], created[130:]

    bound = jobs.expired_ids_bound(int(time.time() * 1000), 1)
    read = [job_id for page in service.records.ids_from(bound, 100) for job_id in page]
    assert sorted(read) == sorted(job.id for job in expired)  # nothing younger is even read

    assert service.clean_up(limit=100) == 100
    assert service.clean_up() == 30
    assert service.clean_up() == 0
    for job in expired:
        assert service.records.get(job.id) is None and blob_names(service, job.id) == []
        with pytest.raises(JobExpired):
            service.get(job.id)
    for job in young:
        assert service.get(job.id).status == "queued"
        assert blob_names(service, job.id) == [f"{job.id}/{query_blob(0)}"]
    assert [j.id for j in service.recent(10)] == [j.id for j in reversed(young)]


def test_retention_zero_keeps_everything(service):
    assert service.settings.retention_days == 60  # the default
    forever = BlastService(Settings.from_env({**service.settings.env, "BLAST_RETENTION_DAYS": "0"}),
                           service.catalog, service.records, service.blobs, service.transport)
    old = Job.submitted(jobs.new_job_id(int(time.time() * 1000) - 10**12), REQUEST)
    service.records.create(old)
    assert forever.clean_up() == 0
    assert forever.get(old.id).id == old.id
    assert views.job_view(old, retention_days=forever.settings.retention_days)["expires_at"] is None
    with pytest.raises(JobExpired):
        service.get(old.id)


def test_expired_jobs_answer_410_their_links_expire_first_and_serve_deletes_them(
        azurite, blast_available, tmp_path):
    retention = 20.0  # seconds
    env = service_env(azurite, BLAST_RETENTION_DAYS=repr(retention / 86400),
                      BLAST_CLEANUP_SECONDS="1")
    server = start_server(env, tmp_path / "serve.log")
    service = bootstrap.build(Settings.from_env(env))
    try:
        first = requests.post(f"{server.url}/jobs", json={
            "query": sample_queries(SMALL_DB, 1, seed=41), "database": SMALL_DB},
            timeout=30).json()
        done = wait_for_job(server.url, first["id"])
        assert done["status"] == "succeeded"
        expires_at = datetime.fromisoformat(done["expires_at"])
        submitted = datetime.fromtimestamp(jobs.submitted_ms(first["id"]) / 1000, UTC)
        assert expires_at == submitted + timedelta(seconds=retention)
        link = fetch_result(f"{server.url}/jobs/{first['id']}/results",
                            params={"format": "tsv", "redirect": "true"},
                            allow_redirects=False).headers["Location"]
        link_expiry = datetime.fromisoformat(parse_qs(urlsplit(link).query)["se"][0])
        assert link_expiry <= expires_at
        assert blob_names(service, first["id"])

        time.sleep(max(0.0, (submitted + timedelta(seconds=retention / 2)
                             - datetime.now(UTC)).total_seconds()))
        second = requests.post(f"{server.url}/jobs", json={
            "query": sample_queries(SMALL_DB, 1, seed=42), "database": SMALL_DB},
            timeout=30).json()

        def expired() -> list[requests.Response]:
            answer = requests.get(f"{server.url}/jobs/{first['id']}", timeout=30)
            return [answer] if answer.status_code == 410 else []

        [gone] = wait_until(expired, retention + 30, "the first job to expire")
        assert gone.headers["Content-Type"] == "application/problem+json"
        assert datetime.fromisoformat(gone.json()["expired_at"]) == expires_at
        assert requests.get(link, timeout=30).status_code in (403, 404)
        wait_until(lambda: service.records.get(first["id"]) is None
                   and not blob_names(service, first["id"]), 30, "the clean-up")
        for path in (f"jobs/{first['id']}", f"jobs/{first['id']}/results"):
            assert requests.get(f"{server.url}/{path}", timeout=30).status_code == 410
        assert requests.delete(f"{server.url}/jobs/{first['id']}", timeout=30).status_code == 410
        listed = [j["id"] for j in requests.get(f"{server.url}/jobs", timeout=30).json()["jobs"]]
        assert first["id"] not in listed and second["id"] in listed

        # The younger job is untouched (it expires `retention / 2` later).
        assert requests.get(f"{server.url}/jobs/{second['id']}", timeout=30).status_code == 200
        assert blob_names(service, second["id"])
        log = server.log.read_text()
        assert "clean-up: deleted 1 expired jobs" in log
    finally:
        server.stop()
        service.transport.close()
