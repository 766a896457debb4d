"""Hit sequences as FASTA (`GET /api/jobs/{id}/hits.fasta`) through real HTTP (`serve`, Azurite,
a worker, blastn, blastdbcmd): every subject of a query, or the subjects named, whole or the
aligned region with flanks; checked against blastn's own aligned subject letters (`sseq`) and
lengths, in databases built without `-parse_seqids` (where only the archive says how blastdbcmd
finds a hit), in two databases searched together, and among a job's own subject sequences;
ids that are not the job's hits are refused by name."""

from __future__ import annotations

import subprocess

import pytest
import requests
from azure.storage.blob import ContainerClient
from conftest import (
    RRNA_DATA,
    SMALL_DB,
    Server,
    fetch_result,
    sample_queries,
    service_env,
    start_server,
    wait_for_job,
)
from test_cli import run

from blast_core.domain import fasta

COLUMNS = "qseqid,sseqid,sstart,send,slen,sseq"
COMPLEMENT = str.maketrans("ACGTUNRYKMSWBDHV", "TGCAANYRMKSWVHDB")


@pytest.fixture(scope="module")
def env(azurite, blast_available) -> dict[str, str]:
    return service_env(azurite, BLAST_BATCH_LETTERS="1000", BLAST_RESULTS_CONTAINER="hit-seqs")


@pytest.fixture(scope="module")
def server(env, tmp_path_factory) -> Server:
    running = start_server(env, tmp_path_factory.mktemp("hits") / "serve.log")
    yield running
    running.stop()


def finished(server: Server, **request) -> dict:
    submitted = requests.post(f"{server.url}/jobs", json=request)
    assert submitted.status_code == 202, submitted.text
    done = wait_for_job(server.url, submitted.json()["id"])
    assert done["status"] == "succeeded" and done["hits"], done
    return done


def table(server: Server, job: dict) -> list[dict]:
    """The job's hits as blastn reports them: ids, where on the subject, its length, its
    aligned letters."""
    text = fetch_result(f"{server.url}/jobs/{job['id']}/results",
                        params={"format": "tsv", "columns": COLUMNS}).text
    return [dict(zip(COLUMNS.split(","), line.split("\t"), strict=True))
            for line in text.splitlines()]


def hit_fasta(server: Server, job: dict, **params) -> requests.Response:
    return fetch_result(f"{server.url}/jobs/{job['id']}/hits.fasta", params=params)


def records(text: str) -> list[fasta.Sequence]:
    return fasta.parse(text)


def aligned_letters(hit: dict) -> tuple[int, int, str]:
    """Where the hit lies on the subject's plus strand, and its letters there."""
    letters = hit["sseq"].replace("-", "")
    start, end = int(hit["sstart"]), int(hit["send"])
    if start > end:
        return end, start, letters[::-1].translate(COMPLEMENT)
    return start, end, letters


@pytest.fixture(scope="module")
def job(server) -> dict:
    # Three queries of 16S, a batch each (BLAST_BATCH_LETTERS): hits on both strands.
    query = sample_queries(SMALL_DB, 3, seed=71)
    lines = query.splitlines()
    lines[3] = lines[3][::-1].translate(COMPLEMENT)
    return finished(server, query="\n".join(lines) + "\n", database=SMALL_DB, evalue=1e-30,
                    max_target_seqs=5)


def test_every_subject_of_a_query_whole(server, job):
    hits = [hit for hit in table(server, job) if hit["qseqid"] == "q2"]
    assert any(int(hit["sstart"]) > int(hit["send"]) for hit in hits), "minus strand hits"
    response = hit_fasta(server, job, query="q2")
    assert response.status_code == 200 and response.headers["Content-Type"].startswith(
        "text/x-fasta")
    found = records(response.text)
    subjects = list(dict.fromkeys(hit["sseqid"] for hit in hits))
    assert len(found) == len(subjects)
    for record, subject in zip(found, subjects, strict=True):
        for hit in (hit for hit in hits if hit["sseqid"] == subject):
            start, end, letters = aligned_letters(hit)
            assert len(record.residues) == int(hit["slen"])
            assert record.residues[start - 1:end] == letters


def test_the_aligned_regions_of_the_subjects_named_with_flanks(server, job):
    hits = table(server, job)
    named = list(dict.fromkeys(hit["sseqid"] for hit in hits))[:3]
    response = hit_fasta(server, job, subjects=",".join(named), region="aligned", flank="25")
    assert response.status_code == 200, response.text
    found = records(response.text)
    expected = [hit for hit in hits if hit["sseqid"] in named]
    assert len(found) == len({(h["sseqid"], h["sstart"], h["send"]) for h in expected})
    whole = {record.header: record.residues
             for record in records(hit_fasta(server, job, subjects=",".join(named)).text)}
    for record, hit in zip(found, dict.fromkeys(
            (h["sseqid"], h["sstart"], h["send"], h["slen"], h["sseq"]) for h in expected),
            strict=True):
        start, end, letters = aligned_letters(dict(zip(
            ("sseqid", "sstart", "send", "slen", "sseq"), hit, strict=True)))
        low, high = max(1, start - 25), min(int(hit[3]), end + 25)
        assert record.header.startswith(f":{low}-{high} ")
        assert record.residues == whole[record.header.split(maxsplit=1)[1]][low - 1:high]
        assert letters in record.residues


def test_two_databases_searched_together(server):
    query = sample_queries("UniVec_Core", 1, seed=72) + sample_queries("16SCore", 1, seed=72)
    job = finished(server, query=query.replace(">q1", ">vector", 1), database=[
        "16SCore", "UniVec_Core"], evalue=1e-10, max_target_seqs=3)
    hits = table(server, job)
    for query_id in ("vector", "q1"):
        mine = [hit for hit in hits if hit["qseqid"] == query_id]
        found = records(hit_fasta(server, job, query=query_id).text)
        assert len(found) == len({hit["sseqid"] for hit in mine}) > 0
        for record, hit in zip(found, dict.fromkeys(h["sseqid"] for h in mine), strict=True):
            first = next(h for h in mine if h["sseqid"] == hit)
            start, end, letters = aligned_letters(first)
            assert record.residues[start - 1:end] == letters


def test_the_hits_of_a_job_of_subject_sequences(server):
    query = sample_queries(SMALL_DB, 1, seed=73)
    subject = query.replace(">q1", ">mine", 1) + sample_queries(SMALL_DB, 2, seed=74).replace(
        ">q", ">other")
    job = finished(server, query=query, subject=subject, evalue=1e-5)
    response = hit_fasta(server, job, subjects="mine", region="aligned")
    [record] = records(response.text)
    [hit] = [hit for hit in table(server, job) if hit["sseqid"] == "mine"][:1]
    assert record.residues == aligned_letters(hit)[2]


@pytest.mark.parametrize(("params", "field", "reason"), [
    ({}, "query", "give query (a query's id) or subjects (subject ids), one of them"),
    ({"query": "q1", "subjects": "x"}, "query", "give query"),
    ({"query": "q 1"}, "query", "must be a query's id"),
    ({"subjects": "a,\u00e9"}, "subjects", "'\u00e9' is not a subject id"),
    ({"subjects": ",".join(f"s{n}" for n in range(501))}, "subjects",
     "names 501 ids; the limit is 500"),
    ({"query": "q1", "region": "all"}, "region", "must be whole or aligned, not 'all'"),
    ({"query": "q1", "flank": "5"}, "flank", "goes with region=aligned"),
    ({"query": "q1", "region": "aligned", "flank": "10001"}, "flank",
     "must be a whole number from 0 to 10000"),
])
def test_a_bad_selection_is_refused_at_once_and_nothing_is_stored(server, env, job, params,
                                                                   field, reason):
    container = ContainerClient.from_connection_string(env["BLAST_STORAGE"],
                                                       env["BLAST_RESULTS_CONTAINER"])

    def stored() -> list[str]:
        return [blob.name for blob in container.list_blobs(name_starts_with=f"{job['id']}/")]

    before = stored()
    refused = requests.get(f"{server.url}/jobs/{job['id']}/hits.fasta", params=params)
    assert refused.status_code == 400, refused.text
    assert any(e["field"] == field and e["reason"].startswith(reason)
               for e in refused.json()["errors"]), refused.json()
    assert stored() == before


def test_ids_that_are_not_the_jobs_hits_are_not_found_by_name(server, job):
    for params, field, reason in [
            ({"subjects": "gnl|BL_ORD_ID|1,not-a-hit"}, "subjects",
             "'gnl|BL_ORD_ID|1', 'not-a-hit' are not a subject hit by this job"),
            ({"query": "q9"}, "query", "'q9' is not a query of this job with hits")]:
        response = hit_fasta(server, job, **params)
        assert response.status_code == 404, response.text
        assert response.json()["errors"] == [{"field": field, "reason": response.json()[
            "errors"][0]["reason"]}]
        assert response.json()["errors"][0]["reason"].startswith(reason)
        again = requests.get(f"{server.url}/jobs/{job['id']}/hits.fasta", params=params)
        assert again.status_code == 404, "refused once and for all, not made again"


def test_the_database_letters_are_what_blastdbcmd_gives(server, job):
    """The same subject's whole sequence fetched through the service equals blastdbcmd's own
    output for the database's sequence of that title."""
    hits = table(server, job)
    subject = hits[0]["sseqid"]
    [record] = records(hit_fasta(server, job, subjects=subject).text)
    listed = {line.split("\t")[0]: line.split("\t")[1] for line in subprocess.run(
        ["blastdbcmd", "-db", str(RRNA_DATA / SMALL_DB), "-entry", "all", "-outfmt", "%t\t%s"],
        capture_output=True, text=True, check=True).stdout.splitlines()}
    assert listed[record.header] == record.residues


def test_the_command_line_writes_hit_sequences(server, job, tmp_path):
    environment = {"BLAST_API_URL": server.url.removesuffix("/api")}
    out = tmp_path / "q1.fasta"
    done = run("results", job["id"], "--fasta", "--query", "q1", "--aligned", "--flank", "5",
               "-o", str(out), env=environment)
    assert done.returncode == 0, done.stderr
    assert out.read_text() == hit_fasta(server, job, query="q1", region="aligned",
                                        flank="5").text
    missing = run("results", job["id"], "--fasta", "--subjects", "nope", env=environment)
    assert missing.returncode == 1 and "'nope' is not a subject hit by this job" in missing.stderr
