"""Coalesced runs for real: jobs received together are searched by one blastn process against a
real database through Azurite, and each job's results equal its own direct blastn run, also
when the jobs' query names collide; a crash in the middle of the shared run leaves every
message to come back, and the rerun records each batch once."""

from __future__ import annotations

import json
import logging
import subprocess
import time

import pytest
from conftest import RRNA_DATA, SMALL_DB, direct_blastn, result_text, sample_queries, service_env

from blast_core.blast import search
from blast_core.domain.messages import BULK, INTERACTIVE
from blast_core.hosts.worker import work_on
from blast_core.service import bootstrap
from blast_core.settings import Settings
from blast_core.storage.ports import query_blob

OPTIONS = {"evalue": 1e-5, "max_target_seqs": 5}
BLASTN_OPTIONS = ("-evalue", "1e-05", "-max_target_seqs", "5")


def renamed(fasta: str, *names: str) -> str:
    """The FASTA with its sequences' deflines replaced by `names`, in order."""
    records = [record.split("\n", 1)[1] for record in fasta.split(">")[1:]]
    return "".join(f">{name}\n{record}" for name, record in zip(names, records, strict=True))


def json_hits(report: str) -> list[list[tuple]]:
    return [[(hit["description"][0]["id"], [(h["bit_score"], h["evalue"], h["query_from"],
                                             h["query_to"]) for h in hit["hsps"]])
             for hit in search_["report"]["results"]["search"]["hits"]]
            for search_ in json.loads(report)["BlastOutput2"]]


@pytest.fixture
def coalescing_service(azurite, blast_available):
    service = bootstrap.build(Settings.from_env(service_env(azurite,
                                                            BLAST_VISIBILITY_TIMEOUT="3")))
    service.ensure_storage()
    return service


def test_jobs_received_together_are_one_blastn_run_and_each_equals_its_own_run(
        coalescing_service, tmp_path, caplog):
    service = coalescing_service
    sampled = sample_queries(SMALL_DB, 6, seed=414)
    records = [">" + record for record in sampled.split(">")[1:]]
    queries = [renamed(records[0] + records[1], "Query_1 first job", "shared"),
               renamed(records[2], "Query_1 second job"),  # the same names as the first's
               renamed(records[3] + records[4] + records[5], "shared", "Query_2", "x")]
    jobs = [service.submit({"query": query, "database": SMALL_DB, **OPTIONS})
            for query in queries]
    assert all(not service.blobs.exists(job.id, query_blob(0)) for job in jobs), \
        "a small job's query travels in its message"
    deliveries = service.transport.lane(INTERACTIVE).receive_many(16)
    assert len(deliveries) == 3
    with caplog.at_level(logging.INFO, logger="blast_core"):
        work_on(service, deliveries)
    assert sum("one of 3 in one BLAST run" in r.getMessage() for r in caplog.records) == 3
    for job, query in zip(jobs, queries, strict=True):
        done = service.get(job.id)
        assert (done.status, done.queries_done) == ("succeeded", query.count(">"))
        tsv = result_text(service, job.id, "tsv")
        assert tsv == direct_blastn(query, SMALL_DB, tmp_path, *BLASTN_OPTIONS)
        assert done.hits == len({tuple(line.split("\t")[:2]) for line in tsv.splitlines()})
        (tmp_path / "q.fa").write_text(query)
        direct = subprocess.run(["blastn", "-query", str(tmp_path / "q.fa"), "-db",
                                 str(RRNA_DATA / SMALL_DB), "-outfmt", "15", *BLASTN_OPTIONS],
                                capture_output=True, text=True, check=True).stdout
        mine = result_text(service, job.id, "json")
        assert json_hits(mine) == json_hits(direct)
        assert [s["report"]["results"]["search"]["query_title"]
                for s in json.loads(mine)["BlastOutput2"]] == \
            [line[1:] for line in query.splitlines() if line.startswith(">")]
    cpu = [service.get(job.id).cpu_seconds_blast for job in jobs]
    letters = [service.get(job.id).query_letters for job in jobs]
    assert all(c > 0 for c in cpu)
    assert cpu[0] / cpu[1] == pytest.approx(letters[0] / letters[1]), "apportioned by letters"


def test_a_crash_in_a_shared_run_brings_every_message_back_and_the_rerun_counts_each_once(
        coalescing_service, monkeypatch, tmp_path):
    """A worker that dies while BLAST runs settles nothing: stood in for by a run that raises
    BaseException (what a killed process leaves is the same: messages hidden, batches
    `running`). The fault tests kill real workers in the middle of searches too."""
    service = coalescing_service
    queries = [renamed(sample_queries(SMALL_DB, 1, seed=500 + n), "Query_1") for n in range(3)]
    jobs = [service.submit({"query": query, "database": SMALL_DB, **OPTIONS})
            for query in queries]
    real_run = search.run_search

    def crash(*args, **kwargs):
        raise SystemExit("the worker died")

    monkeypatch.setattr(search, "run_search", crash)
    deliveries = service.transport.lane(INTERACTIVE).receive_many(16)
    with pytest.raises(SystemExit):
        work_on(service, deliveries)
    assert [service.get(job.id).status for job in jobs] == ["running"] * 3
    monkeypatch.setattr(search, "run_search", real_run)
    again = []
    deadline = time.monotonic() + 20
    while len(again) < 3 and time.monotonic() < deadline:  # back once their hiding ends
        again += service.transport.lane(INTERACTIVE).receive_many(16)
        time.sleep(0.2)
    assert sorted(d.delivery_count for d in again) == [2, 2, 2]
    work_on(service, again)
    assert service.transport.counts().depth == 0, "every message settled once"
    for job, query in zip(jobs, queries, strict=True):
        done = service.get(job.id)
        assert (done.status, done.batches_done, done.queries_done, done.attempts) == \
            ("succeeded", 1, 1, 2)
        assert result_text(service, job.id, "tsv") == direct_blastn(query, SMALL_DB, tmp_path,
                                                                    *BLASTN_OPTIONS)


def test_a_job_lands_in_its_lane_by_its_letters(coalescing_service):
    service = coalescing_service
    threshold = service.settings.interactive_letters
    small = service.submit({"query": ">a\n" + "ACGT" * (threshold // 4), "database": SMALL_DB})
    big = service.submit({"query": ">a\n" + "ACGT" * (threshold // 4) + "A",
                          "database": SMALL_DB})
    [interactive] = service.transport.lane(INTERACTIVE).receive_many(16)
    [bulk] = service.transport.lane(BULK).receive_many(16)
    assert json.loads(interactive.body)["job_id"] == small.id
    assert json.loads(bulk.body)["job_id"] == big.id and json.loads(bulk.body)["lane"] == BULK
