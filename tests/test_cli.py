"""The command line against a real `serve`, as a user runs it: `python -m blast_core ...` in a
subprocess, with the URL and key from flags or from the environment."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys

import pytest
from conftest import ROOT, SMALL_DB, direct_blastn, sample_queries, service_env, start_server

from blast_core.cli import commands, output, parser
from blast_core.storage.azurite import free_port

API_KEY = "cli-key"
JOB_ID = re.compile(r"^[0-9a-f]{19}$")


@pytest.fixture(scope="module")
def server(azurite, blast_available, tmp_path_factory):
    # A 2 s limit fails a search of the 333 Mbase Combined16SrRNA at once; every other search
    # here takes a tenth of that.
    running = start_server(service_env(azurite, BLAST_TIME_LIMIT="2"),
                           tmp_path_factory.mktemp("cli") / "serve.log",
                           extra=["--api-key", API_KEY])
    yield running
    running.stop()


@pytest.fixture(scope="module")
def connected(server) -> dict[str, str]:
    """The environment that points the command line at the server."""
    return {"BLAST_API_URL": server.url.removesuffix("/api"), "BLAST_API_KEY": API_KEY}


def run(*args: str, env: dict[str, str] | None = None,
        stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("BLAST_API_URL", "BLAST_API_KEY")}
    return subprocess.run([sys.executable, "-m", "blast_core", *args], cwd=ROOT, input=stdin,
                          env={**base, **(env or {})}, capture_output=True, text=True,
                          timeout=120)


def test_submit_waits_with_progress_then_results_match_direct_blastn(server, tmp_path):
    query = sample_queries(SMALL_DB, 2, seed=41)
    (tmp_path / "q.fa").write_text(query)
    done = run("submit", str(tmp_path / "q.fa"), "--database", SMALL_DB, "--evalue", "1e-30",
               "--max-target-seqs", "5", "--wait", "--url", server.url, "--api-key", API_KEY)
    assert done.returncode == 0, done.stderr
    job_id, summary, *lines = done.stdout.splitlines()
    assert JOB_ID.match(job_id)
    assert re.fullmatch(r"\d+ hits for 2 queries; results:", summary)
    assert f"tsv   {server.url}/jobs/{job_id}/results?format=tsv" in lines
    assert lines[-1] == f"to fetch one: python -m blast_core results {job_id} --format tsv -o hits.tsv"
    # Not a terminal: one progress line per status, on stderr.
    assert re.search(rf"^job {job_id} succeeded: 2/2 queries after [\d.]+ s$", done.stderr, re.M)

    env = {"BLAST_API_URL": server.url, "BLAST_API_KEY": API_KEY}  # with /api, as it is shown
    saved = run("results", job_id, "--format", "tsv", "-o", str(tmp_path / "hits.tsv"), env=env)
    assert (saved.returncode, saved.stdout) == (0, "")
    assert (tmp_path / "hits.tsv").read_text() == direct_blastn(
        query, SMALL_DB, tmp_path, "-evalue", "1e-30", "-max_target_seqs", "5")
    text = run("results", job_id, "--format", "text", env=env)
    assert text.returncode == 0 and "Query= q2" in text.stdout


def test_status_recent_and_databases_as_tables_and_as_json(connected):
    submitted = run("submit", "-", "--database", SMALL_DB, "--task", "blastn-short",
                    env=connected, stdin=">short\nAGAGTTTGATCCTGGCTCAGATTGAACG\n")
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()

    status = run("status", job_id, env=connected)
    assert re.search(rf"^id +{job_id}$", status.stdout, re.M)
    assert re.search(r"^task +blastn-short$", status.stdout, re.M)
    assert json.loads(run("status", job_id, "--json", env=connected).stdout)["id"] == job_id

    recent = run("recent", "--limit", "5", "--minutes", "10", env=connected).stdout.splitlines()
    assert recent[0].split() == ["ID", "STATUS", "SUBMITTED", "(UTC)", "PROGRAM", "TASK",
                                 "DATABASE", "QUERIES", "HITS"]
    assert recent[1].split()[0] == job_id and "blastn-short" in recent[1].split()
    listed = json.loads(run("recent", "--limit", "1", "--json", env=connected).stdout)
    assert [j["id"] for j in listed] == [job_id]
    # This command starts more than 60 ms after the job was submitted.
    assert run("recent", "--minutes", "0.001", env=connected).stdout == \
        "no jobs in the last 0.001 minutes\n"

    table = run("databases", env=connected).stdout.splitlines()
    assert table[0].split() == ["NAME", "MOLECULE", "SEQUENCES", "LETTERS", "TITLE"]
    assert [SMALL_DB, "nucleotide", "5,681", "8,252,826", "rRNA_blastdb/rRNA_blast"] in \
        [line.split() for line in table]
    names = {d["name"] for d in json.loads(run("databases", "--json", env=connected).stdout)}
    assert SMALL_DB in names


def test_submit_searches_several_databases_when_named_more_than_once(connected, tmp_path):
    query = sample_queries("16SCore", 1, seed=51) + sample_queries("UniVec_Core", 1, seed=52)
    (tmp_path / "q.fa").write_text(query)
    done = run("submit", str(tmp_path / "q.fa"), "--database", "16SCore", "--database",
               "UniVec_Core", "--wait", env=connected)
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.splitlines()[0]
    status = run("status", job_id, env=connected).stdout
    assert re.search(r"^databases +16SCore, UniVec_Core$", status, re.M)
    assert run("results", job_id, env=connected).stdout == direct_blastn(
        query, "16SCore UniVec_Core", tmp_path, "-max_target_seqs", "100")


def test_samples_are_numbered_queries_of_a_real_database_the_same_every_time(connected):
    sample_set = commands.sample_set()
    assert sample_set == commands.sample_set() and len(sample_set) == parser.SAMPLE_COUNT
    assert sample_set[2].startswith(f">q3 sample of {SMALL_DB}, sequence ")

    chosen = run("sample", "3", "7", "--json", env=connected)
    assert chosen.returncode == 0, chosen.stderr
    jobs = json.loads(chosen.stdout)
    assert [j["sample"] for j in jobs] == [3, 7]
    for number, job in ((3, jobs[0]["job"]), (7, jobs[1]["job"])):
        letters = len("".join(sample_set[number - 1].splitlines()[1:]))
        assert (job["database"], job["queries"], job["query_letters"]) == (SMALL_DB, 1, letters)

    one = run("sample", env=connected)
    found = re.fullmatch(r"sample (\d+): job ([0-9a-f]{19})\n", one.stdout)
    assert found and 1 <= int(found.group(1)) <= parser.SAMPLE_COUNT


def test_a_job_that_fails_fails_the_waiting_command(connected, tmp_path):
    (tmp_path / "q.fa").write_text(sample_queries(SMALL_DB, 3, seed=43))
    # megablast: the sensitive task would be refused at submit, as no search of it could end
    # within 2 s (tuning.py); this one could, and is stopped at its limit.
    failed = run("submit", str(tmp_path / "q.fa"), "--database", "Combined16SrRNA", "--wait",
                 env=connected)
    assert failed.returncode == 1
    assert re.search(r"^error: job [0-9a-f]{19} failed: (batch \d+ of \d+: )?BLAST was stopped "
                     r"after 2 s, the longest one search may run here \(BLAST_TIME_LIMIT",
                     failed.stderr, re.M)


@pytest.mark.parametrize("args, code, message", [
    (["submit", "-", "--database", "nope"], 1,
     "error: the job request is invalid: database: no database named 'nope'; GET /api/databases "
     "lists them (HTTP 400)\n  database: no database named 'nope'; GET /api/databases lists "
     "them\n"),
    (["submit", "-", "--database", SMALL_DB, "--program", "blastp"], 1,
     f"  database: '{SMALL_DB}' is a nucleotide database; blastp needs protein\n"),
    (["status", "0" * 19], 1, "error: no job with id 0000000000000000000 (HTTP 404)\n"),
    (["results", "0" * 19, "--format", "csv"], 1, "format must be one of tsv, json, xml, xml2, "
                                                  "text"),
    (["status", "0" * 19, "--api-key", "wrong"], 1, "a valid API key is required"),
    (["submit", "/no/such.fa", "--database", SMALL_DB], 1, "No such file or directory"),
    (["submit", "-"], 2, "one of the arguments --database --subject is required"),
    (["recent", "--limit", "0"], 2, "--limit must be from 1 to 1000"),
    (["sample", "0"], 2, f"sample numbers are 1 to {parser.SAMPLE_COUNT}"),
])
def test_errors_go_to_stderr_with_a_non_zero_exit(connected, args, code, message):
    failed = run(*args, env=connected, stdin=">q\nACGTTGCAACGTAGCTAGCATCGATCGA\n")
    assert (failed.returncode, failed.stdout) == (code, "")
    assert message in failed.stderr


def test_no_service_at_the_url_is_an_error_too():
    url = f"http://127.0.0.1:{free_port()}"
    failed = run("databases", "--url", url)
    assert failed.returncode == 1 and failed.stderr.startswith(f"error: no answer from {url}/api/")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_progress_bar_is_redrawn_in_place():
    screen = Terminal()
    progress = output.Progress(screen)
    job = {"id": "0" * 19, "queries": 4, "batches": 2, "batches_done": 0, "queries_done": 0}
    progress.show({**job, "status": "queued"}, 0.0)
    progress.show({**job, "status": "running", "batches_done": 1, "queries_done": 3}, 0.5)
    progress.show({**job, "status": "succeeded", "batches_done": 2, "queries_done": 4}, 1.25)
    progress.end()
    assert screen.getvalue().split("\r")[1:] == [
        f"| [{'.' * 30}] 0/4 queries, 0/2 batches  queued       0.0 s",
        f"/ [{'#' * 22}{'.' * 8}] 3/4 queries, 1/2 batches  running      0.5 s",
        f"  [{'#' * 30}] 4/4 queries, 2/2 batches  succeeded    1.2 s\n"]
