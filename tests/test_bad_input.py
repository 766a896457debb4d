"""Bad input through real HTTP (`serve`): a 4xx problem that names the field, and nothing
stored or queued for it."""

import html
import json
import random

import pytest
import requests
from azure.data.tables import TableClient
from azure.storage.blob import ContainerClient
from azure.storage.queue import QueueClient
from conftest import SMALL_DB, service_env, start_server

from blast_core.api import dispatch
from blast_core.api.routes import ROUTES
from blast_core.domain import tuning
from blast_core.service import bootstrap
from blast_core.settings import Settings

QUERY = ">q\n" + "ACGT" * 30 + "\n"
JSON = {"Content-Type": "application/json"}
TEXT = {"Content-Type": "text/plain"}


def raw_json(**fields: str) -> dict:
    """A JSON body written out by hand, `fields` as literal JSON: what json.dumps would never
    write (NaN, Infinity, 1e999, an integer of 5,000 digits)."""
    members = [f'"query": {json.dumps(QUERY)}', f'"database": "{SMALL_DB}"',
               *(f'"{name}": {literal}' for name, literal in fields.items())]
    return {"data": ("{" + ", ".join(members) + "}").encode(), "headers": JSON}


def text_body(query: str = QUERY, **options: str) -> dict:
    """A FASTA body with the options in the query string."""
    return {"data": query.encode(), "params": {"database": SMALL_DB, **options},
            "headers": TEXT}


@pytest.fixture(scope="module")
def api(azurite, blast_available, tmp_path_factory):
    env = service_env(azurite)
    server = start_server(env, tmp_path_factory.mktemp("bad") / "serve.log", workers=0)
    yield server.url, env
    server.stop()


def nothing_stored(env: dict[str, str]) -> None:
    connection = env["BLAST_STORAGE"]
    container = ContainerClient.from_connection_string(connection, env["BLAST_RESULTS_CONTAINER"])
    assert list(container.list_blobs()) == []
    table = TableClient.from_connection_string(connection, env["BLAST_JOBS_TABLE"])
    assert list(table.list_entities()) == []
    queue = QueueClient.from_connection_string(connection, env["BLAST_QUEUE_NAME"])
    assert queue.peek_messages(max_messages=5) == []


CASES = [
    ("empty body", {"data": b""}, 400, "body"),
    ("invalid JSON", {"data": b"{nope", "headers": {"Content-Type": "application/json"}}, 400,
     "body"),
    ("JSON not an object", {"json": [1, 2]}, 400, "body"),
    ("not FASTA", {"json": {"query": "hello, world!", "database": SMALL_DB}}, 400, "query"),
    ("no sequence", {"json": {"query": ">header only\n", "database": SMALL_DB}}, 400, "query"),
    ("protein for blastn", {"json": {"query": ">p\nMKVLEEPQRSTLLV\n", "database": SMALL_DB}},
     400, "query"),
    ("unknown database", {"json": {"query": QUERY, "database": "NoSuchDb"}}, 400, "database"),
    ("path as database", {"json": {"query": QUERY, "database": "../../etc/passwd"}}, 400,
     "database"),
    ("smuggled option", {"json": {"query": QUERY, "database": SMALL_DB,
                                  "evalue": "1 -out /tmp/x"}}, 400, "evalue"),
    ("smuggled task", {"json": {"query": QUERY, "database": SMALL_DB,
                                "task": "megablast -remote"}}, 400, "task"),
    ("unknown program", {"json": {"query": QUERY, "database": SMALL_DB, "program": "blastz"}},
     400, "program"),
    ("unknown field", {"json": {"query": QUERY, "database": SMALL_DB, "out": "/tmp/x"}}, 400,
     "out"),
    ("wrong type", {"json": {"query": QUERY, "database": SMALL_DB, "max_target_seqs": "ten"}},
     400, "max_target_seqs"),
    ("out of range", {"json": {"query": QUERY, "database": SMALL_DB, "evalue": -1}}, 400,
     "evalue"),
    ("text body without database", {"data": QUERY.encode(),
                                    "headers": {"Content-Type": "text/plain"}}, 400, "database"),
    ("text body with bad number", {"data": QUERY.encode(), "params": {
        "database": SMALL_DB, "evalue": "lots"}, "headers": {"Content-Type": "text/plain"}}, 400,
     "evalue"),
    ("unsupported content type", {"data": b"\x00\x01", "headers": {
        "Content-Type": "application/octet-stream"}}, 415, "body"),
    ("not UTF-8", {"data": b"\xff\xfe>q", "headers": {"Content-Type": "text/plain"}}, 400, "body"),
    # Numbers that are no finite number, in JSON: Python's json reads NaN and the infinities,
    # and turns 1e999 into inf; an integer of over 4,300 digits is a ValueError in int().
    ("NaN evalue", raw_json(evalue="NaN"), 400, "evalue"),
    ("Infinity evalue", raw_json(evalue="Infinity"), 400, "evalue"),
    ("-Infinity evalue", raw_json(evalue="-Infinity"), 400, "evalue"),
    ("1e999 evalue", raw_json(evalue="1e999"), 400, "evalue"),
    ("NaN max_target_seqs", raw_json(max_target_seqs="NaN"), 400, "max_target_seqs"),
    ("Infinity word_size", raw_json(word_size="Infinity"), 400, "word_size"),
    ("5000-digit max_target_seqs", raw_json(max_target_seqs="9" * 5000), 400,
     "max_target_seqs"),
    ("1e999 word_size", raw_json(word_size="1e999"), 400, "word_size"),
    # A lone surrogate, which only JSON's escapes can make, and no encoding can write.
    ("lone surrogate in the query", {"data": b'{"query": ">q\\ud800\\nACGT", "database": "'
                                             + SMALL_DB.encode() + b'"}', "headers": JSON},
     400, "query"),
    # ... and in the query string of a FASTA body.
    ("text body, evalue nan", text_body(evalue="nan"), 400, "evalue"),
    ("text body, evalue inf", text_body(evalue="inf"), 400, "evalue"),
    ("text body, evalue -Infinity", text_body(evalue="-Infinity"), 400, "evalue"),
    ("text body, evalue 1e999", text_body(evalue="1e999"), 400, "evalue"),
    ("text body, evalue 1_0", text_body(evalue="1_0"), 400, "evalue"),
    ("text body, 5000-digit max_target_seqs", text_body(max_target_seqs="9" * 5000), 400,
     "max_target_seqs"),
    ("text body, word_size in Arabic-Indic digits", text_body(word_size="\u0661\u0662"), 400,
     "word_size"),
    ("text body, word_size nan", text_body(word_size="nan"), 400, "word_size"),
    # Nesting is bounded before parsing: json.loads recurses once per level.
    ("JSON nested 100,000 deep", {"data": b"[" * 100_000 + b"]" * 100_000, "headers": JSON},
     400, "body"),
    ("object nested 100,000 deep", {"data": b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
                                    "headers": JSON}, 400, "body"),
    # Options in the query string beside a JSON body would be ignored: the search would not
    # be the one asked for.
    ("query-string option beside a JSON body", {"json": {"query": QUERY, "database": SMALL_DB},
                                                "params": {"evalue": "1e-5"}}, 400, "evalue"),
    ("query in the query string beside a FASTA body", {
        "data": QUERY.encode(), "params": {"database": SMALL_DB, "query": "ACGT"},
        "headers": TEXT}, 400, "query"),
    ("1 MB FASTA header", {"json": {"query": ">" + "h" * 1_000_000 + "\nACGTACGT\n",
                                    "database": SMALL_DB}}, 400, "query"),
    ("1 MB FASTA header in a text body", text_body(">q " + "h" * 1_000_000 + "\nACGTACGT\n"),
     400, "query"),
]


@pytest.mark.parametrize("name, request_args, status, field", CASES, ids=[c[0] for c in CASES])
def test_bad_submissions_are_refused_and_leave_nothing_behind(api, name, request_args, status,
                                                              field):
    url, env = api
    response = requests.post(f"{url}/jobs", timeout=30, **request_args)
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status and problem["detail"]
    assert field in {e["field"] for e in problem["errors"]}, problem
    nothing_stored(env)


def test_oversized_bodies_are_refused_before_reading(api):
    url, env = api
    response = requests.post(f"{url}/jobs", data=b">q\n" + b"A" * 20_000_100,
                             headers={"Content-Type": "text/plain"}, timeout=60)
    assert response.status_code == 413
    nothing_stored(env)


def test_a_search_no_instance_could_finish_in_time_is_refused_at_submit(api):
    """One sequence of a million letters against SSURef_93 (300 Mbases) with task blastn
    needs over an hour even at twice the fastest rate measured (tuning.py): refused now,
    with what to do, rather than stopped at BLAST_TIME_LIMIT after the wait."""
    url, env = api
    letters = "".join(random.Random(5).choice("ACGT") for _ in range(1_000_000))
    response = requests.post(f"{url}/jobs", timeout=60, json={
        "query": ">long read\n" + letters, "database": "SSURef_93.fasta", "task": "blastn"})
    assert response.status_code == 400, response.text
    [error] = response.json()["errors"]
    assert error["field"] == "query"
    assert error["reason"].startswith("sequence 1 (long): 1,000,000 letters against "
                                      "299,658,204 database letters with task blastn take at "
                                      "least 73 minutes, longer than the 45 minutes")
    assert error["reason"].endswith("use task megablast, or split the sequence")
    nothing_stored(env)
    # megablast gets through it in time: 2 minutes at twice its fastest rate measured.
    assert tuning.least_search_seconds("blastn", "megablast", 1_000_000, 299_658_204, 1) < 200


@pytest.mark.parametrize("path, status", [
    ("jobs/ZZZ", 400), ("jobs/..%2F..%2Fetc", 404), (f"jobs/{'a' * 19}", 404),
    (f"jobs/{'a' * 19}/results", 404), ("nope", 404)])
def test_bad_paths(api, path, status):
    url, _ = api
    response = requests.get(f"{url}/{path}", timeout=10)
    assert response.status_code == status
    assert json.loads(response.text)["status"] == status


def test_bad_query_parameters(api):
    url, _ = api
    assert requests.get(f"{url}/jobs", params={"limit": "0"}).json()["errors"][0]["field"] == \
        "limit"
    # "\u00b2" (superscript two) passes str.isdigit() but not int(); so does a 5,000-digit
    # number (Python's 4,300-digit limit).
    for limit in ("x", "\u00b2", "9" * 5000, "nan", "inf", "1e999", "2.5", ""):
        response = requests.get(f"{url}/jobs", params={"limit": limit})
        assert response.status_code == 400, (limit, response.text)
        assert response.json()["errors"] == [
            {"field": "limit", "reason": "must be a whole number from 1 to 1000"}]
    response = requests.get(f"{url}/jobs/{'a' * 19}/results", params={"format": "pdf"})
    assert (response.status_code, response.json()["errors"][0]["field"]) == (400, "format")
    # Columns: only BLAST+'s specifiers, each once; a list of 30,000 names is read in linear
    # time; no separator but ASCII ones (a no-break space is no separator).
    for columns, reason in [
            ("qseqid,sseqid;ls", "'sseqid;ls' is not a column"),
            ("qseqid\u00a0sseqid", "'qseqid\\xa0sseqid' is not a column"),
            ("qseqid\x00", "'qseqid\\x00' is not a column"),
            ("6 qseqid", "'6' is not a column"),
            ("-outfmt", "'-outfmt' is not a column"),
            (" ".join(["qseqid"] * 30_000), "names qseqid more than once"),
            ("", "must name at least one column")]:
        response = requests.get(f"{url}/jobs/{'a' * 19}/results",
                                params={"format": "tsv", "columns": columns}, timeout=10)
        assert response.status_code == 400, (columns[:20], response.text)
        [error] = response.json()["errors"]
        assert error["field"] == "columns" and error["reason"].startswith(reason), error
    assert requests.delete(f"{url}/jobs").status_code == 405


NCBI_NUMBERS = [
    ("EXPECT", "nan", 'EXPECT: must be a number, not "nan"'),
    ("EXPECT", "NaN", 'EXPECT: must be a number, not "NaN"'),
    ("EXPECT", "inf", 'EXPECT: must be a number, not "inf"'),
    ("EXPECT", "-Infinity", 'EXPECT: must be a number, not "-Infinity"'),
    ("EXPECT", "1e999", 'EXPECT: must be a number, not "1e999"'),
    ("HITLIST_SIZE", "9" * 5000, 'HITLIST_SIZE: must be a whole number, not "999'),
    ("HITLIST_SIZE", "nan", 'HITLIST_SIZE: must be a whole number, not "nan"'),
    ("WORD_SIZE", "\u0661\u0662", 'WORD_SIZE: must be a whole number, not "\\u0661\\u0662"'),
    ("WORD_SIZE", "Infinity", 'WORD_SIZE: must be a whole number, not "Infinity"'),
]


@pytest.mark.parametrize("name, value, reason", NCBI_NUMBERS,
                         ids=[f"{name}={value[:10]}" for name, value, _ in NCBI_NUMBERS])
def test_ncbi_put_numbers_that_are_no_finite_number_are_refused(api, name, value, reason):
    url, env = api
    response = requests.post(f"{url}/blast.cgi", timeout=30, data={
        "CMD": "Put", "PROGRAM": "blastn", "DATABASE": SMALL_DB, "QUERY": QUERY, name: value})
    assert response.status_code == 400, response.text
    assert reason in html.unescape(response.text), response.text
    nothing_stored(env)


def test_the_routes_bound_the_body_size_themselves(azurite, blast_available):
    """Under the Functions host the body arrives whole, with no Content-Length check in front:
    the submit route and the NCBI API refuse a long one before decoding or parsing it."""
    env = service_env(azurite, BLAST_MAX_QUERY_BYTES="1000", BLAST_MAX_SUBJECT_BYTES="500")
    service = bootstrap.build(Settings.from_env(env))
    service.ensure_storage()
    routes = {route.name: route for route in ROUTES}
    oversized = b'{"query": "' + b"A" * 3001 + b'"}'
    submitted = dispatch.handle(routes["submit_job"], dispatch.ApiRequest(
        "POST", "jobs", headers={"Content-Type": "application/json"}, body=oversized),
        lambda: service)
    assert submitted.status == 413
    assert json.loads(submitted.body)["errors"] == [
        {"field": "body", "reason": "is 3014 bytes; the limit is 3000"}]
    put = dispatch.handle(routes["ncbi_blast_cgi_post"], dispatch.ApiRequest(
        "POST", "blast.cgi", body=b"CMD=Put&QUERY=" + b"A" * 3001), lambda: service)
    assert put.status == 413 and b"the request body is 3015 bytes; the limit is 3000" in put.body
    nothing_stored(env)
