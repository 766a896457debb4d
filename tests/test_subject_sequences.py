"""Your own subject sequences instead of a database (`blastn -subject`, NCBI's "Align two or
more sequences"), through real HTTP (`serve`, Azurite, a worker, blastn): every format made from
the job's archive equals a direct `blastn -query q -subject s` run, also for a job of several
batches; the subject is validated as a query is, within limits of its own, and a refused one
leaves nothing behind; the NCBI URL API (SUBJECTS) and the command line take it too."""

from __future__ import annotations

import html
import json
import subprocess
import time

import pytest
import requests
from azure.data.tables import TableClient
from azure.storage.blob import ContainerClient
from conftest import (
    SMALL_DB,
    Server,
    fetch_result,
    sample_queries,
    service_env,
    start_server,
    wait_for_job,
)
from test_cli import run

from blast_core.domain.tabular import DEFAULT_COLUMNS

MAX_SUBJECTS = 12


@pytest.fixture(scope="module")
def env(azurite, blast_available) -> dict[str, str]:
    # Batches of at most 1,000 letters: each 16S query is a batch of its own.
    return service_env(azurite, BLAST_BATCH_LETTERS="1000",
                       BLAST_MAX_SUBJECTS=str(MAX_SUBJECTS), BLAST_MAX_SUBJECT_BYTES="40000",
                       BLAST_RESULTS_CONTAINER="subject-results", BLAST_JOBS_TABLE="subjectjobs")


@pytest.fixture(scope="module")
def server(env, tmp_path_factory) -> Server:
    running = start_server(env, tmp_path_factory.mktemp("subject") / "serve.log")
    yield running
    running.stop()


def renamed(fasta: str, prefix: str) -> str:
    return "".join(f">{prefix}{line[2:]}" if line.startswith(">q") else line
                   for line in fasta.splitlines(keepends=True))


QUERY = sample_queries(SMALL_DB, 3, seed=91)
# Each query's own sequence mutated again, and four others: hits and non-hits.
SUBJECT = renamed(sample_queries(SMALL_DB, 3, seed=91), "s") + renamed(
    sample_queries(SMALL_DB, 4, seed=92), "other")


def direct(tmp_path, query: str, subject: str, *options: str,
           outfmt: str = f"6 {' '.join(DEFAULT_COLUMNS)}") -> str:
    (tmp_path / "q.fa").write_text(query)
    (tmp_path / "s.fa").write_text(subject)
    return subprocess.run(["blastn", "-query", str(tmp_path / "q.fa"), "-subject",
                           str(tmp_path / "s.fa"), "-outfmt", outfmt, *options],
                          capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def finished(server) -> dict:
    submitted = requests.post(f"{server.url}/jobs", json={
        "query": QUERY, "subject": SUBJECT, "task": "blastn", "evalue": 1e-5})
    assert submitted.status_code == 202, submitted.text
    done = wait_for_job(server.url, submitted.json()["id"])
    assert done["status"] == "succeeded", done
    return done


def test_a_subject_job_equals_a_direct_blastn_subject_run(server, finished, tmp_path):
    job = finished
    assert (job["database"], job["databases"], job["subjects"], job["batches"]) == ("", [], 7, 3)
    assert job["subject_letters"] == job["summary"]["database_letters"] > 0
    expected = direct(tmp_path, QUERY, SUBJECT, "-task", "blastn", "-evalue", "1e-05")
    assert {line.split("\t")[1][:2] for line in expected.splitlines()} >= {"s1", "s2", "s3"}
    assert fetch_result(job["results"]["tsv"]).text == expected
    assert job["hits"] == len({tuple(line.split("\t")[:2]) for line in expected.splitlines()})

    columns = "qseqid sseqid qcovs qcovhsp slen evalue bitscore"
    chosen = fetch_result(f"{server.url}/jobs/{job['id']}/results",
                          params={"format": "tsv", "columns": columns})
    assert chosen.text == direct(tmp_path, QUERY, SUBJECT, "-task", "blastn", "-evalue", "1e-05",
                                 outfmt=f"6 {columns}")
    # BLAST+ writes a subject search's JSON as `bl2seq` searches, one report per query.
    report = fetch_result(job["results"]["json"]).json()["BlastOutput2"]
    assert [[search["query_title"].split()[0] for search in r["report"]["results"]["bl2seq"]]
            for r in report] == [["q1"], ["q2"], ["q3"]]
    assert report[0]["report"]["search_target"]["subjects"]  # no database named
    assert "Query= q2" in fetch_result(job["results"]["text"]).text


def test_subject_jobs_of_their_own_are_never_searched_with_another(server, tmp_path):
    """Two small jobs with different subjects, submitted together: each its own result."""
    other_subject = renamed(sample_queries(SMALL_DB, 2, seed=93), "t")
    query = sample_queries(SMALL_DB, 1, seed=93)
    ids = [requests.post(f"{server.url}/jobs", json={"query": query, "subject": subject}).json()
           ["id"] for subject in (other_subject, SUBJECT)]
    first, second = (wait_for_job(server.url, job_id) for job_id in ids)
    assert fetch_result(first["results"]["tsv"]).text == direct(tmp_path, query, other_subject)
    assert fetch_result(second["results"]["tsv"]).text == direct(tmp_path, query, SUBJECT)


def stored(env: dict[str, str]) -> tuple[int, int]:
    connection = env["BLAST_STORAGE"]
    blobs = ContainerClient.from_connection_string(connection, env["BLAST_RESULTS_CONTAINER"])
    table = TableClient.from_connection_string(connection, env["BLAST_JOBS_TABLE"])
    return len(list(blobs.list_blobs())), len(list(table.list_entities()))


@pytest.mark.parametrize(("request_fields", "field", "reason"), [
    ({"subject": ">s1\nACGTJACGT\n"}, "subject",
     "sequence 1 (s1) looks like a protein sequence; this program needs nucleotides (IUPAC "
     "codes)"),
    ({"subject": ">s1\nACGT$(reboot)\n"}, "subject",
     "sequence 1 (s1) has characters that are not sequence letters: '$' '(' ')'"),
    ({"subject": ">s1\nACGT\n>s2\n\n"}, "subject", "sequence 2 (s2) is empty"),
    ({"subject": ""}, "subject", "must not be empty"),
    ({"subject": ">only a header\n"}, "subject", "sequence 1 (only) is empty"),
    ({"subject": "".join(f">s{n}\nACGT\n" for n in range(MAX_SUBJECTS + 1))}, "subject",
     f"holds {MAX_SUBJECTS + 1} sequences; the limit is {MAX_SUBJECTS}"),
    ({"subject": ">big\n" + "A" * 40_000}, "subject", "is 40005 bytes; the limit is 40000"),
    ({"subject": ">s1\nACGT\n", "database": SMALL_DB}, "subject",
     "give subject sequences or a database, not both"),
    ({}, "database", "is required, or subject sequences instead"),
    ({"subject": ">s1\nACGTACGTACGTACGTACGTACGT\n", "program": "blastp"}, "subject",
     "sequence 1 (s1) looks like a nucleotide sequence; blastp needs a protein subject"),
    ({"subject": ["ACGT"]}, "subject", 'must be a string, not ["ACGT"]'),
])
def test_a_bad_subject_is_refused_by_name_and_nothing_is_stored(server, env, finished,
                                                                  request_fields, field, reason):
    before = stored(env)
    refused = requests.post(f"{server.url}/jobs", json={
        "query": ">q\nMKTAYIAKQRQISFVKSHFSRQ\n" if request_fields.get("program") == "blastp"
        else QUERY, **request_fields})
    assert refused.status_code == 400, refused.text
    errors = refused.json()["errors"]
    assert {"field": field, "reason": reason} in errors, errors
    assert stored(env) == before


def test_the_ncbi_url_api_takes_subjects(server, tmp_path):
    put = requests.post(f"{server.url}/blast.cgi", data={
        "CMD": "Put", "PROGRAM": "blastn", "MEGABLAST": "on", "QUERY": QUERY,
        "SUBJECTS": SUBJECT, "EXPECT": "1e-10"})
    assert put.status_code == 200 and "RID = " in put.text, put.text
    rid = put.text.split("RID = ")[1].split()[0]
    deadline = time.monotonic() + 60
    while True:
        got = requests.get(f"{server.url}/blast.cgi", params={
            "CMD": "Get", "RID": rid, "FORMAT_TYPE": "Text", "ALIGNMENT_VIEW": "Tabular"})
        if "Status=WAITING" not in got.text:
            break
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert got.text == direct(tmp_path, QUERY, SUBJECT, "-task", "megablast", "-evalue", "1e-10")
    both = requests.post(f"{server.url}/blast.cgi", data={
        "CMD": "Put", "PROGRAM": "blastn", "QUERY": QUERY, "SUBJECTS": ">s\nACGTTT\n$\n"})
    assert both.status_code == 400
    assert "SUBJECTS: sequence 1 (s) has characters that are not sequence letters: '$'" in \
        html.unescape(both.text)


def test_the_command_line_submits_a_subject_file(server, tmp_path):
    (tmp_path / "query.fa").write_text(QUERY)
    (tmp_path / "subject.fa").write_text(SUBJECT)
    environment = {"BLAST_API_URL": server.url.removesuffix("/api")}
    submitted = run("submit", str(tmp_path / "query.fa"), "--subject", str(tmp_path / "subject.fa"),
                    "--json", env=environment)
    assert submitted.returncode == 0, submitted.stderr
    job = json.loads(submitted.stdout)
    assert wait_for_job(server.url, job["id"])["status"] == "succeeded"
    out = tmp_path / "hits.tsv"
    assert run("results", job["id"], "-o", str(out), env=environment).returncode == 0
    assert out.read_text() == direct(tmp_path, QUERY, SUBJECT)
    both = run("submit", str(tmp_path / "query.fa"), "--subject", str(tmp_path / "subject.fa"),
               "--database", SMALL_DB, env=environment)
    assert both.returncode == 2 and "not allowed with argument" in both.stderr
