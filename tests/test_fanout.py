"""Fan-out and fan-in: splitting is pure; merged results equal one blastn run over the whole
query file, hit for hit, on a real database; the job completes exactly once under races."""

from __future__ import annotations

import json
import logging
import subprocess
import threading
import time
import tracemalloc
import xml.etree.ElementTree as ElementTree

import pytest
from conftest import RRNA_DATA, SMALL_DB, direct_blastn, result_text, sample_queries, service_env

from blast_core.api import views
from blast_core.domain import batches, fasta, jobs, messages, tuning
from blast_core.hosts.worker import run_worker
from blast_core.service import bootstrap
from blast_core.service.core import BlastService
from blast_core.settings import Settings
from blast_core.storage.ports import query_blob


def sequences(*lengths: int) -> list[fasta.Sequence]:
    return [fasta.Sequence(f"s{i}", "A" * n) for i, n in enumerate(lengths)]


def test_batches_hold_whole_sequences_up_to_the_letter_limit():
    split = batches.split(sequences(40, 50, 10, 100, 5, 5), max_letters=100)
    assert [[len(s.residues) for s in batch] for batch in split] == [[40, 50, 10], [100], [5, 5]]
    assert batches.split(sequences(300), max_letters=100) == [sequences(300)]
    assert len(batches.split(sequences(*[10] * 50), max_letters=10_000)) == 1
    assert tuning.batch_letters("blastn", "megablast", 8_000_000, 1, 0) == 500_000
    assert tuning.batch_letters("blastp", "blastp", 300_000_000, 1, 0) == 10_000
    assert tuning.batch_letters("blastn", "megablast", 300_000_000, 1, 1234) == 1234
    # Against 300 Mbases a batch holds what half the slowest rate gets through in 10 minutes.
    assert tuning.batch_letters("blastn", "megablast", 300_000_000, 1, 0) == 220_000
    assert tuning.batch_letters("blastn", "blastn", 300_000_000, 2, 0) == 64_000


def test_merging_one_part_returns_it_unchanged():
    assert list(batches.merge("xml", [["a\n", "b\n"]], [0])) == ["a\n", "b\n"]


def fanout_service(azurite, **settings: str) -> BlastService:
    service = bootstrap.build(Settings.from_env(service_env(azurite, **settings)))
    service.ensure_storage()
    return service


def work_until_done(service: BlastService, job_ids: list[str], workers: int = 2,
                    timeout: float = 180) -> None:
    stop = threading.Event()
    threads = [threading.Thread(target=run_worker, args=(service, stop)) for _ in range(workers)]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(service.get(j).status in jobs.FINAL_STATUSES for j in job_ids):
                break
            stop.wait(0.2)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)


def json_hits(report: str) -> list[list[tuple]]:
    """Per query: every hit's subject and HSPs (coordinates, bit score, e-value)."""
    return [[(hit["description"][0]["id"],
              [(h["query_from"], h["query_to"], h["hit_from"], h["hit_to"], h["bit_score"],
                h["evalue"]) for h in hit["hsps"]])
             for hit in search["report"]["results"]["search"]["hits"]]
            for search in json.loads(report)["BlastOutput2"]]


# The layout of each format around its reports, as BLAST+ 2.12 writes it: what comes before
# the first report, one report, what goes between two reports, and what follows the last.
LAYOUTS = {
    "json": (["{\n", '"BlastOutput2": [\n'],
             ["{\n", '    "report": {"query": "Query_1"}\n', "  }\n"], [",\n"],
             ["]\n", "}\n"]),
    "xml": (['<?xml version="1.0"?>\n', "<BlastOutput>\n", "<BlastOutput_iterations>\n"],
            ["<Iteration>\n", "  <Iteration_iter-num>1</Iteration_iter-num>\n",
             "  <Iteration_query-ID>Query_1</Iteration_query-ID>\n", "</Iteration>\n"], [],
            ["</BlastOutput_iterations>\n", "</BlastOutput>\n"]),
    "xml2": (['<?xml version="1.0"?>\n', "<BlastXML2>\n"],
             ["<BlastOutput2>\n", "  <query-id>Query_1</query-id>\n", "</BlastOutput2>\n"],
             ["\n"], ["</BlastXML2>\n"]),
    "text": (["BLASTN 2.12.0+\n", "Database: x\n"], ["Query= q\n", "  hit  1e-50\n"], [],
             ["  Database: x\n", "  Number of letters in database: 8\n", "Matrix: blastn\n"]),
}


@pytest.mark.parametrize("format_name", list(LAYOUTS))
def test_merging_streams_whatever_the_size_of_the_parts(format_name):
    """Two parts of 200,000 reports each (tens of MB) are merged while the merge holds a
    few kB: nothing of a part but its closing lines is kept. The merged whole reads as one
    part of 400,000 reports would."""
    head, report, between, tail = LAYOUTS[format_name]

    def part(reports: int):  # a generator: a part never exists whole, here or in the merge
        yield from head
        for number in range(reports):
            yield from (between if number else [])
            yield from report
        yield from tail

    tracemalloc.start()
    try:
        merged = batches.merge(format_name, [part(200_000), part(200_000)], [0, 200_000])
        lines = sum(1 for _ in merged)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert lines == sum(1 for _ in part(400_000))
    assert peak < 200_000, f"the merge held {peak} bytes"
    small = list(batches.merge(format_name, [part(2), part(2)], [0, 2]))
    assert small[:len(head)] == head and small[-len(tail):] == tail
    assert len(small) == sum(1 for _ in part(4))


def test_a_fanned_out_job_equals_one_blastn_run_over_the_whole_file(azurite, blast_available,
                                                                    tmp_path):
    service = fanout_service(azurite, BLAST_BATCH_LETTERS="3000")
    query = sample_queries(SMALL_DB, 9, seed=77)
    job = service.submit({"query": query, "database": SMALL_DB, "task": "blastn",
                          "evalue": 1e-10, "max_target_seqs": 15})
    assert job.batches == 5 and views.job_view(job)["batches_done"] == 0
    work_until_done(service, [job.id])
    done = service.get(job.id)
    assert (done.status, done.batches_done, done.queries_done) == ("succeeded", 5, 9)

    def result(name: str) -> str:
        return result_text(service, job.id, name)

    options = ("-task", "blastn", "-evalue", "1e-10", "-max_target_seqs", "15")
    tsv = result("tsv")
    assert tsv == direct_blastn(query, SMALL_DB, tmp_path, *options)
    assert done.hits == len({tuple(line.split("\t")[:2]) for line in tsv.splitlines()})

    whole = tmp_path / "whole.json"
    (tmp_path / "q.fa").write_text(query)
    subprocess.run(["blastn", "-query", str(tmp_path / "q.fa"), "-db", str(RRNA_DATA / SMALL_DB),
                    "-outfmt", "15", "-out", str(whole), *options], check=True)
    merged_json = result("json")
    assert json_hits(merged_json) == json_hits(whole.read_text())
    assert [s["report"]["results"]["search"]["query_id"]
            for s in json.loads(merged_json)["BlastOutput2"]] == [f"Query_{n}" for n in range(1, 10)]

    iterations = ElementTree.fromstring(result("xml")).findall(".//Iteration")
    assert [i.findtext("Iteration_iter-num") for i in iterations] == [str(n) for n in range(1, 10)]
    assert [i.findtext("Iteration_query-def").split()[0] for i in iterations] == \
        [f"q{n}" for n in range(1, 10)]
    xml2 = ElementTree.fromstring(result("xml2"))
    assert len(xml2.findall("{http://www.ncbi.nlm.nih.gov}BlastOutput2")) == 9
    text = result("text")
    assert [line.split()[1] for line in text.splitlines() if line.startswith("Query=")] == \
        [f"q{n}" for n in range(1, 10)]
    assert text.count("  Database: ") == 1 and text.startswith("BLASTN")


def test_splitting_queries_leaves_every_e_value_unchanged(azurite, blast_available, tmp_path):
    """E-values depend on each query's length and the database size only: batch sizes of one
    query or of all of them give the same hits and e-values."""
    query = sample_queries("16SCore", 6, seed=3)
    outcomes = []
    for letters in ("1", "100000"):
        service = fanout_service(azurite, BLAST_BATCH_LETTERS=letters)
        job = service.submit({"query": query, "database": "16SCore", "task": "dc-megablast"})
        work_until_done(service, [job.id])
        assert service.get(job.id).batches == (6 if letters == "1" else 1)
        outcomes.append(result_text(service, job.id, "tsv"))
    assert outcomes[0] == outcomes[1] and outcomes[0].strip()


def test_the_last_two_batches_finishing_together_complete_the_job_once(azurite, blast_available,
                                                                       caplog):
    service = fanout_service(azurite, BLAST_BATCH_LETTERS="1600")
    job_ids = [service.submit({"query": sample_queries(SMALL_DB, 2, seed=90 + n),
                               "database": SMALL_DB}).id for n in range(4)]
    assert {service.get(j).batches for j in job_ids} == {2}
    with caplog.at_level(logging.INFO, logger="blast_core"):
        for job_id in job_ids:
            start = threading.Barrier(2)

            def finish(number: int, job_id: str = job_id, start=start) -> None:
                start.wait()
                service.handle(messages.batch_message(job_id, number), 1)

            threads = [threading.Thread(target=finish, args=(n,)) for n in (0, 1)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    for job_id in job_ids:
        done = service.get(job_id)
        assert (done.status, done.batch_states, done.queries_done) == ("succeeded", "DD", 2)
        assert done.attempts == 2
        completions = [r for r in caplog.records if f"job {job_id} succeeded" in r.getMessage()]
        assert len(completions) == 1


def test_a_batch_failing_for_good_fails_the_job_naming_the_batch(azurite, blast_available):
    service = fanout_service(azurite, BLAST_BATCH_LETTERS="1600")
    job = service.submit({"query": sample_queries(SMALL_DB, 3, seed=5), "database": SMALL_DB})
    assert job.batches == 3
    service.blobs.put_text(job.id, query_blob(1), ">empty\n\n", "text/x-fasta")
    work_until_done(service, [job.id])
    failed = service.get(job.id)
    assert failed.status == "failed"
    assert failed.error.startswith("batch 2 of 3: BLAST rejected the search")
    assert failed.batch_state(1) == jobs.BATCH_FAILED


@pytest.mark.parametrize("batch", [5, 99])
def test_a_message_for_a_batch_the_job_does_not_have_is_malformed(azurite, blast_available,
                                                                  batch):
    service = fanout_service(azurite)
    job = service.submit({"query": sample_queries(SMALL_DB, 1, seed=6), "database": SMALL_DB})
    with pytest.raises(messages.MalformedMessage, match="has no batch"):
        service.handle(messages.batch_message(job.id, batch), 1)
