"""NCBI's Common URL API at /api/blast.cgi: Biopython's own client against `serve` (with the key
in the URL, as in Azure), every result format, the status blocks, and each refusal."""

from __future__ import annotations

import html
import io
import json
import re
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import replace
from types import SimpleNamespace

import pytest
import requests
from Bio import Blast
from Bio.Blast import NCBIWWW, NCBIXML
from conftest import SMALL_DB, direct_blastn, sample_queries, service_env, start_server

from blast_core.api import dispatch as api
from blast_core.api.dispatch import ApiRequest, ApiResponse
from blast_core.api.ncbi import NCBI_ROUTES
from blast_core.domain import jobs

API_KEY = "url-api-key"
KEY = {"x-functions-key": API_KEY}
PUT_ANSWER = re.compile(r"<!--QBlastInfoBegin\n    RID = ([0-9a-f]{19})\n    RTOE = (\d+)\n"
                        r"QBlastInfoEnd\n-->\n")


@pytest.fixture(scope="module")
def server(azurite, blast_available, tmp_path_factory):
    running = start_server(service_env(azurite), tmp_path_factory.mktemp("ncbi") / "serve.log",
                           extra=["--api-key", API_KEY])
    yield running
    running.stop()


def tabular_hits(tsv: str) -> list[tuple[str, int, int, int, int]]:
    return [(row[1], *map(int, row[6:10])) for row in (line.split("\t") for line in tsv.splitlines())]


def test_biopython_qblast_finds_the_hits_of_a_direct_blastn(server, tmp_path, monkeypatch):
    sequence = "".join(sample_queries(SMALL_DB, 1, seed=31).splitlines()[1:])
    # qblast keeps NCBI's 20 s between polls; against this local server, poll every 0.2 s.
    monkeypatch.setattr(NCBIWWW, "time", SimpleNamespace(
        time=time.time, sleep=lambda seconds: time.sleep(min(seconds, 0.2))))
    monkeypatch.setattr(NCBIWWW.qblast, "previous", 0)

    xml = NCBIWWW.qblast("blastn", SMALL_DB, sequence,
                         url_base=f"{server.url}/blast.cgi?code={API_KEY}").read()

    # qblast's defaults: no MEGABLAST (so NCBI's blastn task), EXPECT 10, HITLIST_SIZE 50.
    expected = tabular_hits(direct_blastn(f">Query_1\n{sequence}\n", SMALL_DB, tmp_path,
                                          "-task", "blastn", "-evalue", "10",
                                          "-max_target_seqs", "50"))
    record = NCBIXML.read(io.StringIO(xml))
    assert [(a.hit_def.split()[0], h.query_start, h.query_end, h.sbjct_start, h.sbjct_end)
            for a in record.alignments for h in a.hsps] == expected
    assert len(expected) > 5
    parsed = Blast.read(io.BytesIO(xml.encode()))
    assert [hit.target.description.split()[0] for hit in parsed] == \
        list(dict.fromkeys(row[0] for row in expected))


def test_put_by_get_and_results_by_form_post_in_every_format(server, tmp_path):
    query = sample_queries(SMALL_DB, 2, seed=32)
    put = requests.get(f"{server.url}/blast", headers=KEY, params={
        "CMD": "Put", "PROGRAM": "blastn", "MEGABLAST": "on", "DATABASE": SMALL_DB,
        "QUERY": query, "EXPECT": "1e-20", "HITLIST_SIZE": "5", "WORD_SIZE": "20",
        "FILTER": "F"})
    assert put.status_code == 200 and put.headers["Content-Type"].startswith("text/html")
    found = PUT_ANSWER.fullmatch(put.text)
    assert found, put.text
    rid = found.group(1)

    def get(**params: str) -> requests.Response:
        """Poll as NCBI's clients do: a result a worker is still making answers WAITING."""
        deadline = time.monotonic() + 60
        while True:
            response = requests.post(f"{server.url}/blast.cgi", headers=KEY,
                                     data={"CMD": "Get", "RID": rid, **params})
            if "FORMAT_OBJECT" in params or "Status=WAITING" not in response.text:
                return response
            assert time.monotonic() < deadline, f"{params} still WAITING"
            time.sleep(0.2)

    deadline = time.monotonic() + 60
    while "Status=READY" not in (info := get(FORMAT_OBJECT="SearchInfo").text):
        assert "Status=WAITING" in info and time.monotonic() < deadline, info
        time.sleep(0.2)
    assert info == ("<!--QBlastInfoBegin\n    Status=READY\nQBlastInfoEnd\n-->\n"
                    "<!--QBlastInfoBegin\n    ThereAreHits=yes\nQBlastInfoEnd\n-->\n")

    job = requests.get(f"{server.url}/jobs/{rid}", headers=KEY).json()
    assert (job["task"], job["evalue"], job["max_target_seqs"], job["word_size"],
            job["filter"]) == ("megablast", 1e-20, 5, 20, "no")
    tabular = get(FORMAT_TYPE="Text", ALIGNMENT_VIEW="Tabular")
    assert tabular.text == direct_blastn(query, SMALL_DB, tmp_path, "-task", "megablast",
                                         "-evalue", "1e-20", "-max_target_seqs", "5",
                                         "-word_size", "20", "-dust", "no")
    xml = ElementTree.fromstring(get(FORMAT_TYPE="XML").content)
    assert len(xml.findall(".//Iteration")) == 2
    xml2 = ElementTree.fromstring(get(FORMAT_TYPE="XML2").content)
    assert xml2.tag == "{http://www.ncbi.nlm.nih.gov}BlastXML2"
    assert len(xml2.findall(".//{http://www.ncbi.nlm.nih.gov}Search")) == 2
    assert len(json.loads(get(FORMAT_TYPE="JSON2").content)["BlastOutput2"]) == 2
    text = get(FORMAT_TYPE="Text")
    assert text.headers["Content-Type"].startswith("text/plain") and "Query= q2" in text.text
    assert get(FORMAT_TYPE="Text", ALIGNMENT_VIEW="Tabular", DESCRIPTIONS="10",
               ALIGNMENTS="10", NCBI_GI="false", tool="t", email="e@example.org").text == \
        tabular.text


def test_the_key_is_required_as_elsewhere_in_the_api(server):
    refused = requests.get(f"{server.url}/blast.cgi", params={"CMD": "Get", "RID": "0" * 19})
    assert refused.status_code == 401


# In-process, with no worker: a job stays queued for as long as the test needs.


def call(service, method: str = "GET", body: bytes = b"", headers: dict[str, str] | None = None,
         **params: str) -> ApiResponse:
    route = next(r for r in NCBI_ROUTES if r.method == method)
    request = ApiRequest(method, "blast.cgi", params=params, headers=headers or {}, body=body)
    response = api.handle(route, request, lambda: service)
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    return response


def text(response: ApiResponse) -> str:
    return response.body.decode() if isinstance(response.body, bytes) else \
        b"".join(response.body).decode()


def test_status_blocks_while_waiting_after_failure_and_for_unknown_rids(service):
    put = call(service, "POST", headers={"Content-Type": "application/x-www-form-urlencoded"},
               body=f"CMD=Put&PROGRAM=blastn&DATABASE={SMALL_DB}&QUERY=%3Eq%0AACGTTGCAACGTAGCT"
                    "AGCATCGATCGA".encode())
    rid = PUT_ANSWER.fullmatch(text(put)).group(1)
    assert service.get(rid).task == "blastn"  # NCBI: blastn without MEGABLAST=on
    waiting = "<!--QBlastInfoBegin\n    Status=WAITING\nQBlastInfoEnd\n-->\n"
    assert text(call(service, CMD="Get", RID=rid, FORMAT_OBJECT="SearchInfo")) == waiting
    result = call(service, CMD="Get", RID=rid, FORMAT_TYPE="XML")
    assert (result.status, text(result)) == (200, waiting)

    job, etag = service.records.get(rid)
    service.records.replace(replace(job, status=jobs.FAILED, error="BLAST rejected: no good"),
                            etag)
    info = call(service, CMD="Get", RID=rid, FORMAT_OBJECT="SearchInfo")
    assert (info.status, text(info)) == (200, waiting.replace("WAITING", "FAILED"))
    failed = call(service, CMD="Get", RID=rid, FORMAT_TYPE="XML")
    assert failed.status == 409
    assert "Status=FAILED" in text(failed) and "no good" in text(failed)

    unknown = call(service, CMD="Get", RID="0" * 19, FORMAT_OBJECT="SearchInfo")
    assert unknown.status == 404 and "Status=UNKNOWN" in text(unknown)


def test_delete_cancels_a_waiting_search_and_database_names_several(service):
    put = call(service, CMD="Put", PROGRAM="blastn", DATABASE=f"{SMALL_DB} 16SCore",
               QUERY=">q\nACGTTGCAACGTAGCTAGCATCGATCGA")
    rid = PUT_ANSWER.fullmatch(text(put)).group(1)
    assert service.get(rid).databases == [SMALL_DB, "16SCore"]
    deleted = call(service, CMD="Delete", RID=rid)
    assert deleted.status == 200 and "Status=UNKNOWN" in text(deleted)
    assert service.get(rid).status == jobs.CANCELLED
    info = call(service, CMD="Get", RID=rid, FORMAT_OBJECT="SearchInfo")
    assert "Status=UNKNOWN" in text(info)
    result = call(service, CMD="Get", RID=rid, FORMAT_TYPE="XML")
    assert result.status == 409 and "was deleted before it ended" in text(result)
    again = call(service, CMD="Delete", RID=rid)
    assert again.status == 409 and "has ended (cancelled)" in text(again)
    expired = call(service, CMD="Get", RID=jobs.new_job_id(0), FORMAT_OBJECT="SearchInfo")
    assert expired.status == 410 and "Status=UNKNOWN" in text(expired)


PUT = {"CMD": "Put", "PROGRAM": "blastn", "DATABASE": SMALL_DB,
       "QUERY": ">q\nACGTTGCAACGTAGCTAGCATCGATCGA"}
GET = {"CMD": "Get", "RID": "0" * 19}


@pytest.mark.parametrize("params, status, message", [
    ({}, 400, "CMD is required"),
    ({"CMD": "Remove"}, 400, "CMD: 'Remove' is not supported; use Put, Get or Delete"),
    ({**PUT, "QUERY": ""}, 400, "QUERY: is required"),
    ({**PUT, "QUERY": "NR_024570.1"}, 400, "QUERY: 'NR_024570.1' looks like an accession"),
    ({**PUT, "QUERY": "MKVLAAGIVALLLAAGCSSSKEETGTQA"}, 400, "QUERY: sequence 1 looks like a "
     "protein"),
    ({**PUT, "DATABASE": "nope"}, 400, "DATABASE: no database named 'nope'"),
    ({**PUT, "PROGRAM": ""}, 400, "PROGRAM: is required"),
    ({**PUT, "PROGRAM": "blastz"}, 400, "PROGRAM: \"blastz\" is not one of"),
    ({**PUT, "PROGRAM": "blastp"}, 400, "DATABASE: 'Combined16SrRNA_2-12-2008' is a nucleotide "
                                        "database; blastp needs protein"),
    ({**PUT, "PROGRAM": "blastx", "MEGABLAST": "on"}, 400, "MEGABLAST: applies to PROGRAM=blastn"),
    ({**PUT, "MEGABLAST": "maybe"}, 400, "MEGABLAST: must be on or off"),
    ({**PUT, "EXPECT": "small"}, 400, "EXPECT: must be a number, not \"small\""),
    ({**PUT, "EXPECT": "0"}, 400, "EXPECT: must be above 0"),
    ({**PUT, "HITLIST_SIZE": "0"}, 400, "HITLIST_SIZE: must be at least 1"),
    ({**PUT, "HITLIST_SIZE": "5.5"}, 400, "HITLIST_SIZE: must be a whole number"),
    ({**PUT, "WORD_SIZE": "3"}, 400, "WORD_SIZE: must be from 4 to 1000 for task blastn"),
    ({**PUT, "MEGABLAST": "on", "WORD_SIZE": "2000"}, 400, "WORD_SIZE: must be from 4 to 1000 "
                                                           "for task megablast, not 2000"),
    ({**PUT, "FILTER": "X"}, 400, "FILTER: must be F (off), T or L (on)"),
    ({**PUT, "ENTREZ_QUERY": "human[organism]"}, 400, "ENTREZ_QUERY: Entrez filters"),
    ({**PUT, "MATRIX": "BLOSUM45", "GAPCOSTS": "11 1"}, 400, "not supported with CMD=Put: "
                                                             "GAPCOSTS, MATRIX; the supported"),
    ({**PUT, "FORMAT_TYPE": "XML"}, 400, "FORMAT_TYPE (FORMAT_TYPE goes with CMD=Get here)"),
    ({**PUT, "DATABASE": "nope", "FILTER": "X"}, 400, "FILTER: must be F"),
    ({"CMD": "Get"}, 400, "RID is required"),
    ({"CMD": "Get", "RID": "ABC123XYZ01"}, 400, "RID: 'ABC123XYZ01' is not a RID"),
    ({**GET, "FORMAT_TYPE": "HTML"}, 400, "FORMAT_TYPE: 'HTML' is not supported; use XML"),
    ({**GET, "FORMAT_TYPE": "XML", "ALIGNMENT_VIEW": "Tabular"}, 400,
     "ALIGNMENT_VIEW: Tabular goes with FORMAT_TYPE=Text"),
    ({**GET, "ALIGNMENT_VIEW": "QueryAnchored"}, 400, "ALIGNMENT_VIEW: 'QueryAnchored'"),
    ({**GET, "FORMAT_OBJECT": "Report"}, 400, "FORMAT_OBJECT: 'Report' is not supported"),
    ({**GET, "EXPECT_LOW": "1"}, 400, "not supported with CMD=Get: EXPECT_LOW"),
    ({**GET, "FORMAT_TYPE": "XML"}, 404, "no search with RID 0000000000000000000"),
])
def test_refusals_name_the_parameter_ncbi_style_and_store_nothing(service, params, status,
                                                                  message):
    response = call(service, **params)
    assert response.status == status
    body = text(response)
    assert body.count('<div class="error msInf">Error: ') == 1
    assert message in html.unescape(body), body
    assert service.recent(5) == []


def test_a_body_that_is_not_a_form_is_refused(service):
    multipart = call(service, "POST", b"--x\r\n", {"Content-Type": "multipart/form-data; b=x"})
    assert multipart.status == 415 and "multipart/form-data body is not read" in text(multipart)
    binary = call(service, "POST", b"CMD=Put&QUERY=\xff\xfe",
                  {"Content-Type": "application/x-www-form-urlencoded"})
    assert binary.status == 400 and "not UTF-8" in text(binary)


@pytest.mark.parametrize("params", [
    {"CMD": "x" * 100_000}, {**PUT, "MEGABLAST": "x" * 100_000}, {**PUT, "FILTER": "x" * 100_000},
    {"CMD": "Get", "RID": "x" * 100_000}, {**GET, "FORMAT_TYPE": "x" * 100_000},
    {**GET, "FORMAT_OBJECT": "x" * 100_000}, {**GET, "ALIGNMENT_VIEW": "x" * 100_000}])
def test_a_long_value_is_shown_by_its_start(service, params):
    response = call(service, **params)
    assert response.status == 400
    assert f"'{'x' * 56}..." in html.unescape(text(response)) and len(text(response)) < 1000
