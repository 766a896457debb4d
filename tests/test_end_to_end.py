"""The whole path through real HTTP: `serve`, Azurite, a worker process, real blastn."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree

import pytest
import requests
from conftest import (
    SMALL_DB,
    Server,
    direct_blastn,
    fetch_result,
    sample_queries,
    service_env,
    start_server,
    wait_for_job,
)


@pytest.fixture(scope="module")
def server(azurite, blast_available, tmp_path_factory) -> Server:
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    running = start_server(service_env(azurite), log, workers=2)
    yield running
    running.stop()


def test_submit_poll_and_fetch_every_format_matches_direct_blastn(server, tmp_path):
    query = sample_queries(SMALL_DB, 3)
    submitted = requests.post(f"{server.url}/jobs", json={
        "query": query, "database": SMALL_DB, "evalue": 1e-20, "max_target_seqs": 20})
    assert submitted.status_code == 202, submitted.text
    job = submitted.json()
    assert job["status"] == "queued"
    assert submitted.headers["Location"] == f"{server.url}/jobs/{job['id']}"

    done = wait_for_job(server.url, job["id"])
    assert done["status"] == "succeeded", done
    assert done["queries"] == 3 and done["attempts"] == 1
    assert done["started_at"] and done["finished_at"]

    tsv = fetch_result(done["results"]["tsv"]).text
    expected = direct_blastn(query, SMALL_DB, tmp_path, "-evalue", "1e-20",
                             "-max_target_seqs", "20")
    assert tsv == expected and tsv.strip()
    pairs = {tuple(line.split("\t")[:2]) for line in expected.splitlines()}
    assert done["hits"] == len(pairs)

    report = fetch_result(done["results"]["json"]).json()
    searches = report["BlastOutput2"]
    assert [s["report"]["results"]["search"]["query_title"].split()[0] for s in searches] == \
        ["q1", "q2", "q3"]
    xml = ElementTree.fromstring(fetch_result(done["results"]["xml"]).content)
    assert len(xml.findall(".//Iteration")) == 3
    text = fetch_result(done["results"]["text"])
    assert text.headers["Content-Type"].startswith("text/plain")
    assert "Query= q1" in text.text

    timings = requests.get(f"{server.url}/jobs/{job['id']}").json()["timings"]
    assert 0 < timings["blast"] < timings["total"]
    assert timings["queued"] >= 0 and timings["transfer"] > 0 and timings["format"] > 0


def test_fasta_body_with_options_in_the_query_string(server):
    query = sample_queries(SMALL_DB, 1, seed=11)
    submitted = requests.post(f"{server.url}/jobs", data=query,
                              params={"database": SMALL_DB, "task": "blastn", "evalue": "0.001"},
                              headers={"Content-Type": "text/plain"})
    assert submitted.status_code == 202, submitted.text
    done = wait_for_job(server.url, submitted.json()["id"])
    assert (done["status"], done["task"], done["evalue"]) == ("succeeded", "blastn", 0.001)
    several = requests.post(f"{server.url}/jobs", data=query,
                            params={"database": f"{SMALL_DB} 16SCore"},
                            headers={"Content-Type": "text/plain"})
    assert several.status_code == 202 and several.json()["databases"] == [SMALL_DB, "16SCore"]
    padded = requests.post(f"{server.url}/jobs", data=query, params={"database": f" {SMALL_DB}\t"},
                           headers={"Content-Type": "text/plain"})
    assert padded.status_code == 202 and padded.json()["databases"] == [SMALL_DB]


def test_recent_jobs_newest_first_and_databases(server):
    ids = [requests.post(f"{server.url}/jobs", json={
        "query": sample_queries(SMALL_DB, 1, seed=seed), "database": SMALL_DB}).json()["id"]
        for seed in (21, 22, 23)]
    recent = requests.get(f"{server.url}/jobs", params={"limit": 3}).json()["jobs"]
    assert [j["id"] for j in recent] == ids[::-1]
    databases = {d["name"]: d for d in requests.get(f"{server.url}/databases").json()["databases"]}
    assert databases[SMALL_DB] == {"name": SMALL_DB, "title": "rRNA_blastdb/rRNA_blast",
                                   "molecule": "nucleotide", "sequences": 5681,
                                   "letters": 8252826}


def test_results_before_success_are_409_and_unknown_jobs_404(server):
    missing = requests.get(f"{server.url}/jobs/{'0' * 19}")
    assert missing.status_code == 404
    assert missing.headers["Content-Type"] == "application/problem+json"
    bad = requests.get(f"{server.url}/jobs/not-a-job")
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "job_id"
    job = requests.post(f"{server.url}/jobs", json={
        "query": sample_queries(SMALL_DB, 1, seed=5), "database": SMALL_DB}).json()
    early = requests.get(f"{server.url}/jobs/{job['id']}/results", params={"format": "tsv"})
    if early.status_code != 200:  # the worker may already be done
        assert early.status_code == 409 and job["id"] in early.json()["detail"]
    wait_for_job(server.url, job["id"])


def test_result_redirect_is_an_expiring_read_only_link(server):
    job = requests.post(f"{server.url}/jobs", json={
        "query": sample_queries(SMALL_DB, 1, seed=9), "database": SMALL_DB}).json()
    wait_for_job(server.url, job["id"])
    link = fetch_result(f"{server.url}/jobs/{job['id']}/results",
                        params={"format": "json", "redirect": "true"}, allow_redirects=False)
    assert link.status_code == 302
    location = link.headers["Location"]
    assert "sp=r" in location and "se=" in location
    assert json.loads(requests.get(location).content)["BlastOutput2"]
    assert requests.put(location, data=b"x", headers={"x-ms-blob-type": "BlockBlob"}).status_code \
        == 403
