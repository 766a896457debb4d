"""Results of any size, downloaded through real HTTP (`serve`, Azurite, a worker, blastn): a
single byte range of the stored result (206), a range beyond it (416), gzip for a client that
accepts it, compressed as it streams, and the plain result with its length otherwise."""

from __future__ import annotations

import gzip
import json

import pytest
import requests
from conftest import SMALL_DB, Server, fetch_result, sample_queries, service_env, start_server, wait_for_job

IDENTITY = {"Accept-Encoding": "identity"}


@pytest.fixture(scope="module")
def server(azurite, blast_available, tmp_path_factory) -> Server:
    running = start_server(service_env(azurite), tmp_path_factory.mktemp("downloads") / "serve.log")
    yield running
    running.stop()


def finished_job(server: Server, query: str) -> dict:
    submitted = requests.post(f"{server.url}/jobs", json={"query": query, "database": SMALL_DB})
    assert submitted.status_code == 202, submitted.text
    done = wait_for_job(server.url, submitted.json()["id"])
    assert done["status"] == "succeeded", done
    return done


@pytest.fixture(scope="module")
def job(server) -> dict:
    return finished_job(server, sample_queries(SMALL_DB, 3, seed=61))


@pytest.fixture(scope="module")
def whole(job) -> bytes:
    """The tsv result as stored, asked for without compression."""
    response = fetch_result(job["results"]["tsv"], headers=IDENTITY)
    assert response.status_code == 200 and "Content-Encoding" not in response.headers
    assert response.headers["Accept-Ranges"] == "bytes"
    assert int(response.headers["Content-Length"]) == len(response.content) > 1000
    return response.content


@pytest.mark.parametrize(("header", "part"), [
    ("bytes=0-99", slice(0, 100)), ("bytes=100-", slice(100, None)), ("bytes=-50", slice(-50, None)),
    ("bytes=500-99999999", slice(500, None))])
def test_a_byte_range_is_that_part_of_the_stored_result(job, whole, header, part):
    response = requests.get(job["results"]["tsv"], headers={"Range": header,
                                                            "Accept-Encoding": "gzip"})
    assert response.status_code == 206
    assert response.content == whole[part], "a range is never compressed"
    start = part.start if part.start >= 0 else len(whole) + part.start
    end = len(whole) - 1 if part.stop is None else part.stop - 1
    assert response.headers["Content-Range"] == f"bytes {start}-{end}/{len(whole)}"
    assert int(response.headers["Content-Length"]) == end - start + 1
    assert "Content-Encoding" not in response.headers


def test_a_range_beyond_the_result_is_416_with_its_size(job, whole):
    response = requests.get(job["results"]["tsv"], headers={"Range": f"bytes={len(whole)}-"})
    assert response.status_code == 416
    assert response.headers["Content-Range"] == f"bytes */{len(whole)}"
    assert response.json()["errors"][0]["field"] == "Range"


def test_a_range_header_that_is_no_single_byte_range_gets_the_whole_result(job, whole):
    for header in ("bytes=0-9,20-29", "lines=1-2", "bytes=9-3"):
        response = requests.get(job["results"]["tsv"], headers={"Range": header, **IDENTITY})
        assert (response.status_code, response.content) == (200, whole), header


def test_a_client_that_accepts_gzip_gets_the_result_compressed(job, whole):
    response = requests.get(job["results"]["tsv"], headers={"Accept-Encoding": "gzip"},
                            stream=True)
    assert response.headers["Content-Encoding"] == "gzip"
    assert response.headers["Vary"] == "Accept-Encoding"
    compressed = response.raw.read(decode_content=False)
    assert gzip.decompress(compressed) == whole and len(compressed) < len(whole) / 2
    report = fetch_result(job["results"]["json"])  # requests asks for gzip and decodes it
    assert report.headers["Content-Encoding"] == "gzip"
    assert len(report.json()["BlastOutput2"]) == 3


def test_an_empty_result_has_no_byte_to_range_over(server):
    job = finished_job(server, ">nothing_like_16S\n" + "ACGT" * 30 + "\n")
    assert job["hits"] == 0
    empty = fetch_result(job["results"]["tsv"], headers=IDENTITY)
    assert (empty.status_code, empty.content, empty.headers["Content-Length"]) == (200, b"", "0")
    ranged = requests.get(job["results"]["tsv"], headers={"Range": "bytes=0-"})
    assert ranged.status_code == 416 and ranged.headers["Content-Range"] == "bytes */0"
    assert json.loads(ranged.text)["status"] == 416
