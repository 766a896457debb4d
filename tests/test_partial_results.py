"""The results so far of a job of several batches, for real (`serve`, Azurite, blastn): while
the job runs, the hits of the batches done, with the queries they cover, are each batch's own
lines of a direct blastn run; once it has succeeded they are the whole result, which the
merge now takes from those same tables; the command line and the web page show them."""

from __future__ import annotations

import re
import time

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
from test_cli import run

QUERIES = 24
QUERY = sample_queries(SMALL_DB, QUERIES, seed=160)
OPTIONS = ("-task", "blastn", "-evalue", "1e-30", "-max_target_seqs", "100")


@pytest.fixture(scope="module")
def server(azurite, blast_available, tmp_path_factory) -> Server:
    # Batches of at most 1,600 letters: each 16S query a batch of its own, one worker.
    running = start_server(service_env(azurite, BLAST_BATCH_LETTERS="1600"),
                           tmp_path_factory.mktemp("partial") / "serve.log")
    yield running
    running.stop()


def lines_by_query(tsv: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in tsv.splitlines(keepends=True):
        found.setdefault(line.split("\t")[0], []).append(line)
    return found


def test_a_running_jobs_hits_so_far_are_its_done_batches_own(server, tmp_path):
    job = requests.post(f"{server.url}/jobs", timeout=30, json={
        "query": QUERY, "database": SMALL_DB, "task": "blastn", "evalue": 1e-30}).json()
    assert job["batches"] == QUERIES and job["partial_results"].endswith(
        f"/jobs/{job['id']}/partial.tsv")
    expected = lines_by_query(direct_blastn(QUERY, SMALL_DB, tmp_path, *OPTIONS))
    seen_running = None
    for _ in range(1200):  # at most about two minutes
        partial = requests.get(job["partial_results"], timeout=30)
        state = requests.get(f"{server.url}/jobs/{job['id']}", timeout=30).json()
        done = int(partial.headers["Blast-Batches-Done"].partition("/")[0])
        if state["status"] == "running" and 0 < done < QUERIES:
            seen_running = partial
            break
        if state["status"] not in ("queued", "running"):
            break
        time.sleep(0.1)
    assert seen_running is not None, "the job ended before a partial state was seen"
    covered = seen_running.headers["Blast-Queries-Covered"]
    numbers = [n for part in covered.split(",") for n in _numbers(part)]
    assert len(numbers) == int(seen_running.headers["Blast-Queries-Done"].partition("/")[0])
    assert seen_running.headers["Blast-Queries-Done"].endswith(f"/{QUERIES}")
    assert seen_running.text == "".join(
        line for n in sorted(numbers) for line in expected.get(f"q{n}", []))
    final = wait_for_job(server.url, job["id"])
    assert final["status"] == "succeeded"
    whole = requests.get(job["partial_results"], timeout=30)
    assert whole.headers["Blast-Batches-Done"] == f"{QUERIES}/{QUERIES}"
    assert whole.headers["Blast-Queries-Covered"] == f"1-{QUERIES}"
    tsv = fetch_result(f"{server.url}/jobs/{job['id']}/results?format=tsv").text
    assert whole.text == tsv == "".join(line for lines in expected.values() for line in lines)
    cli = run("results", job["id"], "--partial", "--url", server.url)
    assert cli.returncode == 0 and cli.stdout == tsv
    assert re.search(rf"{QUERIES}/{QUERIES} queries \({QUERIES}/{QUERIES} batches\): "
                     rf"1-{QUERIES}", cli.stderr)


def test_a_job_of_one_batch_has_no_results_so_far(server):
    job = requests.post(f"{server.url}/jobs", timeout=30, json={
        "query": sample_queries(SMALL_DB, 1, seed=161), "database": SMALL_DB}).json()
    assert job["partial_results"] is None
    refused = requests.get(f"{server.url}/jobs/{job['id']}/partial.tsv", timeout=30)
    assert refused.status_code == 409 and "a job of one batch" in refused.text
    wait_for_job(server.url, job["id"])


def _numbers(part: str) -> list[int]:
    first, _, last = part.partition("-")
    return list(range(int(first), int(last or first) + 1))
