"""The Azure Functions app, invoked directly with the real `azure.functions` types (the
Functions host itself cannot run here), against Azurite and the real blastn."""

import gzip
import importlib.util
import json
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import azure.functions as func
import pytest
from azure.functions.queue import QueueMessage
from azure.functions.servicebus import ServiceBusMessage
from azure.functions.timer import TimerRequest
from conftest import ROOT, SMALL_DB, direct_blastn, sample_queries

from blast_core.api import routes
from blast_core.domain import jobs, messages
from blast_core.domain.fasta import Sequence, format_fasta
from blast_core.domain.job_request import JobRequest
from blast_core.domain.jobs import Job
from blast_core.service import bootstrap
from blast_core.service.bootstrap import default_service, reset_default_service
from blast_core.service.core import BlastService
from blast_core.settings import SettingsError

# Building a client does not connect; the Service Bus function is only handed a message here.
REQUEST = JobRequest(sequences=(Sequence("q", "ACGTACGTACGTACGTACGT"),), database=SMALL_DB,
                     program="blastn", task="megablast", evalue=10.0, max_target_seqs=10)
OFFLINE_SERVICEBUS = "Endpoint=sb://localhost/;SharedAccessKeyName=test;SharedAccessKey=unused"


def load_app(monkeypatch, env: dict[str, str]):
    """A fresh import of function_app.py under `env`, as the host would load it."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    reset_default_service()
    spec = importlib.util.spec_from_file_location(f"function_app_{id(env)}",
                                                  ROOT / "function_app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    functions = {f.get_function_name(): f for f in module.app.get_functions()}
    yield functions
    reset_default_service()


@pytest.fixture
def storage_app(monkeypatch, settings_env):
    yield from load_app(monkeypatch, settings_env)


@pytest.fixture
def servicebus_app(monkeypatch, settings_env):
    yield from load_app(monkeypatch, {**settings_env, "BLAST_QUEUE_TRANSPORT": "servicebus",
                                      "BLAST_SERVICEBUS": OFFLINE_SERVICEBUS})


def bindings(function) -> dict[str, dict]:
    return {b["type"]: b for b in json.loads(function.get_function_json())["bindings"]}


def call(functions, name: str, method: str, path: str, body: bytes = b"", params=None,
         route_params=None, headers=None) -> func.HttpResponse:
    request = func.HttpRequest(method, f"https://blast.example.net/api/{path}", body=body,
                               params=params or {}, route_params=route_params or {},
                               headers=headers or {})
    return functions[name].get_user_function()(request)


def test_every_route_is_a_function_with_its_route_and_key_level(storage_app):
    assert set(storage_app) == ({r.name for r in routes.ROUTES}
                                | {"blast_worker", "blast_bulk_worker", "cleanup_expired_jobs",
                                   "sweep_stranded_jobs"})
    for route in routes.ROUTES:
        trigger = bindings(storage_app[route.name])["httpTrigger"]
        assert (trigger["route"], trigger["methods"]) == (route.template, [route.method])
        assert trigger["authLevel"] == ("ANONYMOUS" if route.anonymous else "FUNCTION")


def test_storage_transport_registers_a_queue_trigger_per_lane(storage_app):
    for function, queue in (("blast_worker", "%BLAST_QUEUE_NAME%"),
                            ("blast_bulk_worker", "%BLAST_BULK_QUEUE_NAME%")):
        trigger = bindings(storage_app[function])["queueTrigger"]
        assert (trigger["queueName"], trigger["connection"]) == (queue, "BLAST_STORAGE")


def test_the_timer_function_deletes_expired_jobs_hourly(monkeypatch, settings_env):
    functions = next(load_app(monkeypatch, {**settings_env, "BLAST_RETENTION_DAYS": "1"}))
    trigger = bindings(functions["cleanup_expired_jobs"])["timerTrigger"]
    assert (trigger["schedule"], trigger.get("runOnStartup", False)) == ("0 17 * * * *", False)
    service = default_service()
    now_ms = int(time.time() * 1000)
    old, young = (Job.submitted(jobs.new_job_id(now_ms - hours * 3_600_000), REQUEST)
                  for hours in (25, 23))
    for job in (old, young):
        service.records.create(job)
        service.blobs.put_text(job.id, "batch-0.fasta", format_fasta(REQUEST.sequences), "text/x-fasta")
    functions["cleanup_expired_jobs"].get_user_function()(TimerRequest(past_due=False))
    assert service.records.get(old.id) is None and not service.blobs.exists(old.id, "batch-0.fasta")
    assert service.records.get(young.id) and service.blobs.exists(young.id, "batch-0.fasta")
    reset_default_service()


def test_servicebus_transport_registers_a_batch_trigger_and_a_bulk_trigger(servicebus_app):
    interactive = bindings(servicebus_app["blast_worker"])["serviceBusTrigger"]
    assert (interactive["queueName"], interactive["connection"]) == ("%BLAST_QUEUE_NAME%",
                                                                     "BLAST_SERVICEBUS")
    assert (interactive["cardinality"], interactive["dataType"]) == ("MANY", "BINARY")
    bulk = bindings(servicebus_app["blast_bulk_worker"])["serviceBusTrigger"]
    assert (bulk["queueName"], bulk["connection"]) == ("%BLAST_BULK_QUEUE_NAME%",
                                                       "BLAST_SERVICEBUS")
    assert bulk.get("cardinality", "ONE") == "ONE"


def test_submit_work_and_fetch_through_the_functions(storage_app, settings_env, tmp_path):
    query = sample_queries(SMALL_DB, 2, seed=12)
    submitted = call(storage_app, "submit_job", "POST", "jobs", headers={
        "Content-Type": "application/json"}, body=json.dumps({
            "query": query, "database": SMALL_DB, "max_target_seqs": 10}).encode())
    assert submitted.status_code == 202
    job = json.loads(submitted.get_body())
    assert submitted.headers["Location"] == f"https://blast.example.net/api/jobs/{job['id']}"

    deliver_next(storage_app)
    status = call(storage_app, "get_job", "GET", f"jobs/{job['id']}",
                  route_params={"job_id": job["id"]})
    done = json.loads(status.get_body())
    assert done["status"] == "succeeded"
    assert done["results"]["tsv"].startswith(f"https://blast.example.net/api/jobs/{job['id']}/")
    def get_result(**params: str) -> func.HttpResponse:
        return call(storage_app, "get_result", "GET", f"jobs/{job['id']}/results",
                    params={"format": "tsv", **params}, route_params={"job_id": job["id"]})

    making = get_result()  # a worker makes the format: the request never does
    assert (making.status_code, making.headers["Retry-After"]) == (202, "1")
    assert json.loads(making.get_body())["status"] == "making"
    deliver_next(storage_app)
    result = get_result()
    assert result.status_code == 200
    assert result.get_body().decode() == direct_blastn(query, SMALL_DB, tmp_path,
                                                       "-max_target_seqs", "10")

    # Columns of one's own: made by the queue trigger from the same archive.
    columns = ("qseqid", "sseqid", "qcovs", "stitle")
    making = get_result(columns=" ".join(columns))
    assert json.loads(making.get_body())["format"] == "tsv:qseqid,sseqid,qcovs,stitle"
    deliver_next(storage_app)
    chosen = get_result(columns=",".join(columns))
    assert chosen.status_code == 200
    assert chosen.get_body().decode() == direct_blastn(query, SMALL_DB, tmp_path,
                                                       "-max_target_seqs", "10", columns=columns)
    refused = get_result(columns="qseqid,sseqid;id")
    assert refused.status_code == 400
    assert json.loads(refused.get_body())["errors"][0]["field"] == "columns"

    # A byte range, and gzip for a client that accepts it, through the function's response.
    whole = result.get_body()
    ranged = call(storage_app, "get_result", "GET", f"jobs/{job['id']}/results",
                  headers={"Range": "bytes=10-49", "Accept-Encoding": "gzip"},
                  params={"format": "tsv"}, route_params={"job_id": job["id"]})
    assert (ranged.status_code, ranged.get_body()) == (206, whole[10:50])
    assert ranged.headers["Content-Range"] == f"bytes 10-49/{len(whole)}"
    compressed = call(storage_app, "get_result", "GET", f"jobs/{job['id']}/results",
                      headers={"Accept-Encoding": "gzip, deflate"}, params={"format": "tsv"},
                      route_params={"job_id": job["id"]})
    assert compressed.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(compressed.get_body()) == whole


def test_a_subject_job_through_the_functions(storage_app, tmp_path):
    """Subject sequences instead of a database: stored by the HTTP function, searched by the
    queue trigger, formatted from the archive alone."""
    query = sample_queries(SMALL_DB, 2, seed=16)
    subject = query.replace(">q", ">s") + sample_queries(SMALL_DB, 1, seed=17).replace(">q", ">t")
    submitted = call(storage_app, "submit_job", "POST", "jobs", headers={
        "Content-Type": "application/json"}, body=json.dumps({
            "query": query, "subject": subject}).encode())
    assert submitted.status_code == 202, submitted.get_body()
    job = json.loads(submitted.get_body())
    assert (job["database"], job["subjects"]) == ("", 3)
    deliver_next(storage_app)

    def get_result() -> func.HttpResponse:
        return call(storage_app, "get_result", "GET", f"jobs/{job['id']}/results",
                    params={"format": "tsv"}, route_params={"job_id": job["id"]})

    assert get_result().status_code == 202
    deliver_next(storage_app)
    (tmp_path / "q.fa").write_text(query)
    (tmp_path / "s.fa").write_text(subject)
    expected = subprocess.run(["blastn", "-query", str(tmp_path / "q.fa"), "-subject",
                               str(tmp_path / "s.fa"), "-outfmt", "6"],
                              capture_output=True, text=True, check=True).stdout
    assert "\ts1\t" in expected and get_result().get_body().decode() == expected


def deliver_next(functions) -> None:
    """Hand the next message of the interactive lane to its queue trigger, as the host does."""
    queue = default_service().transport.lane(messages.INTERACTIVE).queue
    [message] = queue.receive_messages(max_messages=1)
    functions["blast_worker"].get_user_function()(QueueMessage(
        id=message.id, body=message.content.encode(), dequeue_count=message.dequeue_count))
    queue.delete_message(message)


def test_the_service_bus_functions_process_runtime_messages(servicebus_app, service):
    """Each job's message, as the service sent it, handed to its lane's function: two small
    jobs in one batch to the interactive one, a big job's batch to the bulk one."""
    small = [service.submit({"query": sample_queries(SMALL_DB, 1, seed=seed),
                             "database": SMALL_DB}).id for seed in (13, 14)]
    big = service.submit({"query": sample_queries(SMALL_DB, 40, seed=15),
                          "database": SMALL_DB}).id

    sent = {messages.decode(m.content).job_id: m.content.encode() for lane in messages.LANES
            for m in service.transport.lane(lane).queue.receive_messages(max_messages=32)}

    def runtime_message(job_id: str) -> ServiceBusMessage:
        return ServiceBusMessage(body=sent[job_id], delivery_count=1, message_id=job_id,
                                 application_properties={}, user_properties={})

    servicebus_app["blast_worker"].get_user_function()([runtime_message(j) for j in small])
    servicebus_app["blast_bulk_worker"].get_user_function()(runtime_message(big))
    assert [service.get(job_id).status for job_id in (*small, big)] == ["succeeded"] * 3


def test_bad_input_and_health_through_the_functions(storage_app):
    bad = call(storage_app, "submit_job", "POST", "jobs", body=b'{"query": ">q\\nACGT"}',
               headers={"Content-Type": "application/json"})
    assert bad.status_code == 400 and bad.mimetype == "application/problem+json"
    assert json.loads(bad.get_body())["errors"] == [
        {"field": "database", "reason": "is required, or subject sequences instead"}]
    health = call(storage_app, "health", "GET", "health")
    assert json.loads(health.get_body())["status"] == "ok"
    assert json.loads(health.get_body())["problems"] == []
    databases = json.loads(call(storage_app, "list_databases", "GET", "databases").get_body())
    assert SMALL_DB in {d["name"] for d in databases["databases"]}


def test_a_malformed_setting_loads_every_function_and_is_named_where_used(monkeypatch,
                                                                          settings_env):
    """Settings are read where they are used: at import only the transport the trigger binds
    to. A bad value shows in /api/health (which still answers) and in each route's error."""
    functions = next(load_app(monkeypatch, {**settings_env, "BLAST_THREADS": "two",
                                            "BLAST_RETENTION_DAYS": "soon"}))
    assert set(functions) == ({r.name for r in routes.ROUTES}
                              | {"blast_worker", "blast_bulk_worker", "cleanup_expired_jobs",
                                 "sweep_stranded_jobs"})
    health = call(functions, "health", "GET", "health")
    assert health.status_code == 200
    assert json.loads(health.get_body()) == {"status": "degraded", "problems": [
        "BLAST_THREADS must be a whole number, not 'two'",
        "BLAST_RETENTION_DAYS must be a number of at least 0, not 'soon'"]}
    refused = call(functions, "submit_job", "POST", "jobs", headers={
        "Content-Type": "application/json"}, body=json.dumps({
            "query": ">q\nACGTACGTACGTACGTAAAA", "database": SMALL_DB}).encode())
    assert refused.status_code == 503
    assert "BLAST_THREADS must be a whole number, not 'two'" in json.loads(refused.get_body())[
        "detail"]
    with pytest.raises(SettingsError):
        functions["blast_worker"].get_user_function()(QueueMessage(
            id="m", body=b"{}", dequeue_count=1))  # the host abandons it: it comes back
    reset_default_service()


def test_the_service_is_built_once_when_many_invocations_start_together(monkeypatch,
                                                                        settings_env):
    for name, value in settings_env.items():
        monkeypatch.setenv(name, value)
    reset_default_service()
    built = []
    real = bootstrap.build

    def slow_build(settings):
        built.append(threading.get_ident())
        time.sleep(0.3)  # long enough for every thread to arrive meanwhile
        return real(settings)

    monkeypatch.setattr(bootstrap, "build", slow_build)
    start = threading.Barrier(8)

    def first_call() -> BlastService:
        start.wait()
        return default_service()

    with ThreadPoolExecutor(8) as pool:
        services = list(pool.map(lambda _: first_call(), range(8)))
    assert len(built) == 1 and len({id(s) for s in services}) == 1
    reset_default_service()
