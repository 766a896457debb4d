"""Query sets of any size, uploaded straight to Blob storage, for real: Azurite checks each
SAS link, `serve` and its workers (or the function app's functions, invoked as the host
invokes them) check and split the upload, blastn searches it, and the merged result equals
one direct blastn run over the same file. Every way an upload is misused is refused by name
and leaves nothing queued."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta

import azure.functions as func
import pytest
import requests
from azure.functions.queue import QueueMessage
from azure.storage.blob import ContainerClient
from conftest import (
    SMALL_DB,
    Server,
    direct_blastn,
    fetch_result,
    sample_queries,
    service_env,
    start_server,
    wait_for_job,
    wait_until,
)
from test_cli import run
from test_function_app import call, load_app

from blast_core.cli import client as cli_client
from blast_core.cli.client import BlastClient
from blast_core.domain import jobs, messages
from blast_core.service.bootstrap import default_service
from blast_core.storage.blobs import AzureJobBlobs
from blast_core.storage.ports import UPLOADS, upload_blob

QUERY = sample_queries(SMALL_DB, 14, seed=150)


@pytest.fixture(scope="module")
def env(azurite, blast_available) -> dict[str, str]:
    # Batches of at most 3,000 letters: the 14 queries become several batches.
    return service_env(azurite, BLAST_BATCH_LETTERS="3000")


@pytest.fixture(scope="module")
def server(env, tmp_path_factory) -> Server:
    running = start_server(env, tmp_path_factory.mktemp("uploads") / "serve.log")
    yield running
    running.stop()


def container(env) -> ContainerClient:
    return ContainerClient.from_connection_string(env["BLAST_STORAGE"],
                                                  env["BLAST_RESULTS_CONTAINER"])


def put(url: str, data: bytes) -> requests.Response:
    """One Put Blob, as a client with the link does."""
    return requests.put(url, data=data, headers={"x-ms-blob-type": "BlockBlob"}, timeout=30)


def uploaded(server: Server, data: bytes) -> str:
    made = requests.post(f"{server.url}/uploads", timeout=10)
    assert made.status_code == 201, made.text
    assert put(made.json()["url"], data).status_code == 201
    return made.json()["upload_id"]


def submit(server: Server, upload_id: str, **options) -> requests.Response:
    return requests.post(f"{server.url}/jobs", timeout=30, json={
        "query_upload": upload_id, "database": SMALL_DB, **options})


def test_an_upload_sent_in_blocks_is_split_searched_and_merged_as_one_blastn_run(
        server, env, tmp_path, monkeypatch):
    monkeypatch.setattr(cli_client, "UPLOAD_BLOCK_BYTES", 4096)  # several Put Blocks
    (tmp_path / "q.fa").write_text(QUERY)
    sent: list[int] = []
    upload_id = BlastClient(server.url).upload(str(tmp_path / "q.fa"), sent.append)
    assert len(sent) > 1 and sum(sent) == len(QUERY.encode())
    submitted = submit(server, upload_id, evalue=1e-20)
    assert submitted.status_code == 202, submitted.text
    job = submitted.json()
    assert (job["id"], job["status"], job["upload_bytes"]) == (upload_id, "validating",
                                                               len(QUERY.encode()))
    assert "upload_etag" not in job
    done = wait_for_job(server.url, job["id"])
    assert done["status"] == "succeeded", done
    assert done["queries"] == 14 and done["batches"] > 2
    tsv = fetch_result(f"{server.url}/jobs/{job['id']}/results?format=tsv")
    assert tsv.text == direct_blastn(QUERY, SMALL_DB, tmp_path, "-evalue", "1e-20",
                                     "-max_target_seqs", "100")
    assert not list(container(env).list_blobs(name_starts_with=f"{UPLOADS}/"))


def test_the_command_line_uploads_with_a_flag_or_above_its_size(server, tmp_path):
    query = sample_queries(SMALL_DB, 2, seed=151)
    (tmp_path / "q.fa").write_text(query)
    done = run("submit", str(tmp_path / "q.fa"), "--upload", "--database", SMALL_DB, "--wait",
               "--evalue", "1e-20", "--url", server.url)
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.splitlines()[0]
    assert "validating" in done.stderr or "checking" in done.stderr or "queued" in done.stderr
    tsv = fetch_result(f"{server.url}/jobs/{job_id}/results?format=tsv")
    assert tsv.text == direct_blastn(query, SMALL_DB, tmp_path, "-evalue", "1e-20",
                                     "-max_target_seqs", "100")


def test_a_link_writes_its_one_blob_until_it_expires_and_nothing_else(server, env):
    made = requests.post(f"{server.url}/uploads", timeout=10).json()
    url = made["url"]
    assert made["method"] == "PUT" and made["headers"] == {"x-ms-blob-type": "BlockBlob"}
    assert requests.get(url, timeout=10).status_code == 403  # no read
    assert requests.delete(url, timeout=10).status_code == 403  # no delete
    other = url.replace(upload_blob(made["upload_id"]), upload_blob(jobs.new_job_id()))
    assert put(other, b">q\nACGT\n").status_code == 403  # no other blob
    blobs = AzureJobBlobs.connect(default_connection(env), env["BLAST_RESULTS_CONTAINER"])
    expired = blobs.write_link(UPLOADS, upload_blob(made["upload_id"]),
                               datetime.now(UTC) - timedelta(minutes=1))
    refused = put(expired, b">q\nACGT\n")
    assert refused.status_code == 403 and "sig=" not in refused.text
    assert put(url, b">q\nACGT\n").status_code == 201


def default_connection(env):
    from blast_core.settings import Settings
    return Settings.from_env(env).connection("BLAST_STORAGE")


@pytest.mark.parametrize("data, reason", [
    (b"", "the upload is empty (0 bytes)"),
    (gzip.compress(QUERY.encode()), "the upload is gzip-compressed; upload it uncompressed"),
    (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", "the upload is not FASTA: its first line begins '%PDF-1.4'"),
])
def test_an_upload_that_is_no_fasta_is_refused_at_once(server, data, reason):
    upload_id = uploaded(server, data)
    refused = submit(server, upload_id)
    assert refused.status_code == 400
    assert refused.json()["errors"] == [{"field": "query_upload", "reason": reason}]
    assert requests.get(f"{server.url}/jobs/{upload_id}", timeout=10).status_code == 404


def test_an_upload_is_one_jobs_query_and_a_jobs_id_is_no_upload(server):
    upload_id = uploaded(server, QUERY.encode())
    assert submit(server, upload_id).status_code == 202
    again = submit(server, upload_id)
    assert again.status_code == 409
    assert again.json()["errors"][0]["field"] == "query_upload"
    other = requests.post(f"{server.url}/jobs", timeout=30, json={
        "query": QUERY, "database": SMALL_DB}).json()["id"]
    assert submit(server, other).status_code == 409
    never = submit(server, jobs.new_job_id())
    assert never.status_code == 404 and "nothing was uploaded" in never.text
    long_ago = jobs.new_job_id(int((datetime.now(UTC) - timedelta(hours=3)).timestamp() * 1000))
    expired = submit(server, long_ago)
    assert expired.status_code == 410 and f"upload {long_ago} expired at" in expired.text
    wait_for_job(server.url, upload_id)


def test_a_bad_sequence_deep_in_an_upload_fails_its_job_by_name_with_nothing_queued(
        server, env):
    good = sample_queries(SMALL_DB, 60, seed=152)  # beyond the bytes read at submission
    data = (good + ">read_61 the bad one\nACGTACGTJACGT\n" + QUERY).encode()
    upload_id = uploaded(server, data)
    assert submit(server, upload_id).status_code == 202
    failed = wait_for_job(server.url, upload_id)
    assert failed["status"] == "failed"
    assert failed["error"] == ("query_upload: sequence 61 (read_61) looks like a protein "
                               "sequence; this program needs nucleotides (IUPAC codes)")
    assert failed["batches"] == 0 and failed["queries"] == 0
    wait_until(lambda: not list(container(env).list_blobs(name_starts_with=f"{upload_id}/")),
               10, "the batches written to be deleted")
    assert not list(container(env).list_blobs(name_starts_with=f"{UPLOADS}/{upload_id}"))


def test_an_upload_through_the_functions(monkeypatch, settings_env, tmp_path):
    """The HTTP function makes the link and the job; the bulk lane's queue trigger splits the
    upload, and the lanes' triggers search its batches, as the host would invoke them."""
    functions = next(load_app(monkeypatch, {**settings_env, "BLAST_BATCH_LETTERS": "3000"}))
    made = call(functions, "new_upload", "POST", "uploads")
    assert made.status_code == 201
    link = json.loads(made.get_body())
    query = sample_queries(SMALL_DB, 4, seed=153)
    assert put(link["url"], query.encode()).status_code == 201
    submitted = call(functions, "submit_job", "POST", "jobs", headers={
        "Content-Type": "application/json"}, body=json.dumps({
            "query_upload": link["upload_id"], "database": SMALL_DB}).encode())
    assert submitted.status_code == 202, submitted.get_body()
    job_id = json.loads(submitted.get_body())["id"]
    deliver(functions, (messages.BULK,))
    assert default_service().get(job_id).status == jobs.QUEUED
    while default_service().get(job_id).status not in jobs.FINAL_STATUSES:
        deliver(functions)
    result = call(functions, "get_result", "GET", f"jobs/{job_id}/results",
                  params={"format": "tsv"}, route_params={"job_id": job_id})
    assert result.status_code == 202
    deliver(functions)
    result = call(functions, "get_result", "GET", f"jobs/{job_id}/results",
                  params={"format": "tsv"}, route_params={"job_id": job_id})
    assert result.get_body().decode() == direct_blastn(query, SMALL_DB, tmp_path,
                                                                "-max_target_seqs", "100")


TRIGGERS = {messages.INTERACTIVE: "blast_worker", messages.BULK: "blast_bulk_worker"}


def deliver(functions, lanes: tuple[str, ...] = messages.LANES) -> None:
    """The next message of the lanes' Storage Queues to its lane's trigger, as the host
    does."""
    for lane in lanes:
        queue = default_service().transport.lane(lane).queue
        for message in queue.receive_messages(max_messages=1):
            request: func.QueueMessage = QueueMessage(
                id=message.id, body=message.content.encode(),
                dequeue_count=message.dequeue_count)
            functions[TRIGGERS[lane]].get_user_function()(request)
            queue.delete_message(message)
            return
    raise AssertionError(f"no message in the {' or '.join(lanes)} lane")
