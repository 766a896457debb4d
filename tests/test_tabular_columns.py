"""The columns a researcher chooses for a tabular result, through real HTTP (`serve`, Azurite,
a worker, blastn): the table equals a direct `blastn -outfmt "6 <columns>"` run, also for a job
of several batches; each set of columns is made once; bad columns are refused by name with
nothing asked of a worker; the NCBI URL API and the command line take them too."""

from __future__ import annotations

import html
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

from blast_core.domain import tabular

CHOSEN = ("qseqid", "sseqid", "qcovs", "qcovhsp", "slen", "stitle", "sstrand", "evalue",
          "bitscore", "btop")


@pytest.fixture(scope="module")
def server(azurite, blast_available, tmp_path_factory) -> Server:
    # Batches of at most 1,000 letters: each query is a batch of its own, so that a result
    # is merged from several archives.
    running = start_server(service_env(azurite, BLAST_BATCH_LETTERS="1000"),
                           tmp_path_factory.mktemp("columns") / "serve.log")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def finished(server) -> tuple[dict, str]:
    query = sample_queries(SMALL_DB, 4, seed=83)
    submitted = requests.post(f"{server.url}/jobs", json={
        "query": query, "database": SMALL_DB, "evalue": 1e-30, "max_target_seqs": 15})
    assert submitted.status_code == 202, submitted.text
    done = wait_for_job(server.url, submitted.json()["id"])
    assert done["status"] == "succeeded" and done["batches"] == 4, done
    return done, query


def result_url(server: Server, job: dict) -> str:
    return f"{server.url}/jobs/{job['id']}/results"


def formats_asked(server: Server, job: dict) -> dict[str, str]:
    return requests.get(f"{server.url}/jobs/{job['id']}").json()["formats"]


def test_chosen_columns_equal_a_direct_blastn_run_and_are_made_once(server, finished, tmp_path):
    job, query = finished
    expected = direct_blastn(query, SMALL_DB, tmp_path, "-evalue", "1e-30",
                             "-max_target_seqs", "15", columns=CHOSEN)
    assert expected.count("\n") > 20
    table = fetch_result(result_url(server, job), params={
        "format": "tsv", "columns": ",".join(CHOSEN)})
    assert table.status_code == 200, table.text
    assert table.headers["Content-Type"].startswith("text/tab-separated-values")
    assert table.text == expected
    assert [len(line.split("\t")) for line in expected.splitlines()] == \
        [len(CHOSEN)] * expected.count("\n")

    # The same columns, spaces between them: the same result, not made again.
    key = tabular.result_key(CHOSEN)
    made = formats_asked(server, job)
    assert made[key] == "ready"
    again = requests.get(result_url(server, job), params={"format": "tsv",
                                                          "columns": " ".join(CHOSEN)})
    assert again.status_code == 200 and again.text == expected
    assert formats_asked(server, job) == made


def test_the_default_columns_named_are_the_plain_tsv(server, finished, tmp_path):
    job, query = finished
    plain = fetch_result(result_url(server, job), params={"format": "tsv"}).text
    named = requests.get(result_url(server, job), params={
        "format": "tsv", "columns": ",".join(tabular.DEFAULT_COLUMNS)})
    assert named.status_code == 200 and named.text == plain
    assert plain == direct_blastn(query, SMALL_DB, tmp_path, "-evalue", "1e-30",
                                  "-max_target_seqs", "15")
    assert not [key for key in formats_asked(server, job) if key.startswith("tsv:")
                and key != tabular.result_key(CHOSEN)]


@pytest.mark.parametrize(("params", "reason"), [
    ({"columns": "qseqid,nope"}, "'nope' is not a column; choose from qseqid,"),
    ({"columns": "qseqid;rm -rf /"}, "'qseqid;rm' is not a column"),
    ({"columns": "$(reboot)"}, "'$(reboot)' is not a column"),
    ({"columns": "qseqid qseqid"}, "names qseqid more than once"),
    ({"columns": " "}, "must name at least one column"),
    ({"columns": "qseqid", "format": "json"}, "only the tsv format has columns, not json"),
])
def test_bad_columns_are_refused_by_name_and_nothing_is_asked_for(server, finished, params,
                                                                    reason):
    job, _ = finished
    before = formats_asked(server, job)
    refused = requests.get(result_url(server, job), params={"format": "tsv", **params})
    assert refused.status_code == 400
    problem = refused.json()
    assert problem["errors"][0]["field"] == "columns"
    assert problem["errors"][0]["reason"].startswith(reason)
    assert formats_asked(server, job) == before


def test_the_ncbi_url_api_takes_columns_with_the_tabular_view(server, finished, tmp_path):
    job, query = finished
    columns = ("qaccver", "saccver", "pident", "qcovs", "slen")

    def get(**params: str) -> requests.Response:
        deadline = time.monotonic() + 60
        while True:
            response = requests.get(f"{server.url}/blast.cgi", params={
                "CMD": "Get", "RID": job["id"], **params})
            if "Status=WAITING" not in response.text:
                return response
            assert time.monotonic() < deadline, f"{params} still WAITING"
            time.sleep(0.2)

    table = get(FORMAT_TYPE="Text", ALIGNMENT_VIEW="Tabular", COLUMNS=" ".join(columns))
    assert table.status_code == 200
    assert table.text == direct_blastn(query, SMALL_DB, tmp_path, "-evalue", "1e-30",
                                       "-max_target_seqs", "15", columns=columns)
    for params, message in [
            ({"FORMAT_TYPE": "XML", "COLUMNS": "qseqid"}, "COLUMNS goes with ALIGNMENT_VIEW"),
            ({"ALIGNMENT_VIEW": "Tabular", "COLUMNS": "qseqid,gi"}, "COLUMNS: 'gi' is not a "
                                                                     "column")]:
        refused = get(**params)
        assert refused.status_code == 400 and message in html.unescape(refused.text)


def test_the_command_line_writes_the_chosen_columns(server, finished, tmp_path):
    job, query = finished
    out = tmp_path / "chosen.tsv"
    env = {"BLAST_API_URL": server.url.removesuffix("/api")}
    done = run("results", job["id"], "--columns", "qseqid sseqid stitle", "-o", str(out),
               env=env)
    assert done.returncode == 0, done.stderr
    assert out.read_text() == direct_blastn(query, SMALL_DB, tmp_path, "-evalue", "1e-30",
                                            "-max_target_seqs", "15",
                                            columns=("qseqid", "sseqid", "stitle"))
    refused = run("results", job["id"], "--columns", "qseqid,bogus", env=env)
    assert refused.returncode != 0 and "'bogus' is not a column" in refused.stderr
