"""Bad input through real HTTP (`serve`): a 4xx problem that names the field, and nothing
stored or queued for it."""

import json

import pytest
import requests
from azure.data.tables import TableClient
from azure.storage.blob import ContainerClient
from azure.storage.queue import QueueClient
from conftest import SMALL_DB, service_env, start_server

QUERY = ">q\n" + "ACGT" * 30 + "\n"


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
    assert requests.get(f"{url}/jobs", params={"limit": "x"}).status_code == 400
    response = requests.get(f"{url}/jobs/{'a' * 19}/results", params={"format": "pdf"})
    assert (response.status_code, response.json()["errors"][0]["field"]) == (400, "format")
    assert requests.delete(f"{url}/jobs").status_code == 405
