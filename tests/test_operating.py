"""Operating the service: each job's run summary (CPU seconds of BLAST, throughput, cost), the
stats endpoint and command, and structured logs, against `serve`, Azurite and real blastn."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import time

import pytest
import requests
from conftest import ROOT, SMALL_DB, sample_queries, service_env, start_server, wait_for_job

from blast_core.blast.programs import ToolTimeout, run_measured, run_tool
from blast_core.domain import jobs, messages
from blast_core.domain.jobs import Job
from blast_core.logs import JsonFormatter, job_log
from blast_core.service import bootstrap
from blast_core.settings import Settings, SettingsError
from blast_core.storage.ports import Outgoing, QueueCounts
from blast_core.storage.queues import ServiceBusTransport

PRICE = "0.001"
BUSY = "s = 0\nfor i in range(4 * 10**6): s += i\nprint(s)"


def test_a_tool_run_reports_its_own_cpu_time_and_keeps_the_old_contract():
    started = time.monotonic()
    run = run_measured([sys.executable, "-c", BUSY], timeout=60)
    wall = time.monotonic() - started
    assert run.stdout.strip() == str(sum(range(4 * 10**6)))
    assert 0.1 < run.cpu_seconds <= wall + 0.05
    assert run_tool([sys.executable, "-c", "print('x')"], timeout=60) == "x\n"
    started = time.monotonic()
    with pytest.raises(ToolTimeout):
        run_tool(["sleep", "10"], timeout=0.5)
    assert time.monotonic() - started < 5


def test_the_price_setting_is_a_number():
    assert Settings.from_env({}).price_per_core_second == pytest.approx(0.00006)
    assert Settings.from_env({"BLAST_PRICE_PER_CORE_SECOND": "0.0002"}).price_per_core_second \
        == 0.0002
    for bad in ("cheap", "-1", "nan"):
        with pytest.raises(SettingsError, match="BLAST_PRICE_PER_CORE_SECOND"):
            Settings.from_env({"BLAST_PRICE_PER_CORE_SECOND": bad})


@pytest.fixture(scope="module")
def served(azurite, blast_available, tmp_path_factory):
    """`serve` with one worker, its log a file (so JSON lines), and one finished job."""
    env = service_env(azurite, BLAST_PRICE_PER_CORE_SECOND=PRICE)
    log = tmp_path_factory.mktemp("operating") / "serve.log"
    server = start_server(env, log, workers=1)
    query = sample_queries(SMALL_DB, 3)
    submitted = requests.post(f"{server.url}/jobs", json={
        "query": query, "database": SMALL_DB, "task": "blastn"}, timeout=30).json()
    job = wait_for_job(server.url, submitted["id"])
    yield server, job, query
    server.stop()


def test_a_job_has_a_timing_breakdown_and_a_run_summary(served):
    server, job, _ = served
    assert job["status"] == "succeeded", job
    timings, summary = job["timings"], job["summary"]
    assert timings["blast"] > 0 and timings["total"] >= timings["blast"]
    database = next(d for d in requests.get(f"{server.url}/databases", timeout=30).json()[
        "databases"] if d["name"] == SMALL_DB)
    assert summary["query_letters"] == job["query_letters"] > 0
    assert summary["database_letters"] == database["letters"] > 1_000_000
    # BLAST's own CPU time: some, and (one thread) not more than its wall time
    assert 0 < summary["cpu_seconds"] <= timings["blast"] + 0.05
    assert summary["letters_per_cpu_second"] == pytest.approx(
        job["query_letters"] / summary["cpu_seconds"], rel=0.01)
    assert summary["attempts"] == 1
    assert summary["price_per_core_second"] == float(PRICE)
    assert summary["estimated_cost"] == pytest.approx(summary["cpu_seconds"] * float(PRICE),
                                                      abs=1e-6)
    listed = requests.get(f"{server.url}/jobs", timeout=30).json()["jobs"]
    assert listed[0]["summary"] == summary


def test_status_shows_the_summary(served):
    server, job, _ = served
    shown = _cli("status", job["id"], url=server.url)
    for name in ("cpu_seconds", "database_letters", "estimated_cost"):
        assert re.search(rf"^summary\.{name} +{job['summary'][name]}$", shown, re.MULTILINE)
    assert re.search(rf"^timings\.blast +{job['timings']['blast']}$", shown, re.MULTILINE)


def test_stats_over_http_and_from_the_command_line(served):
    server, job, _ = served
    stats = requests.get(f"{server.url}/stats", timeout=30).json()
    assert stats["queue"] | {"age_seconds": 0} == {
        "transport": "storage", "name": stats["queue"]["name"],
        "bulk_name": stats["queue"]["bulk_name"], "depth": 0, "dead_letters": 0,
        "error": None, "age_seconds": 0}
    assert stats["jobs"]["last_hour"] == {"validating": 0, "queued": 0, "running": 0, "succeeded": 1,
                                          "failed": 0, "cancelled": 0, "total": 1}
    assert stats["jobs"]["last_day"] == stats["jobs"]["last_hour"]
    assert stats["end_to_end"]["jobs"] == 1
    assert stats["end_to_end"]["median_seconds"] == stats["end_to_end"]["p95_seconds"] \
        == pytest.approx(job["timings"]["total"], abs=0.01)
    assert stats["throughput"] == {
        "jobs": 1, "query_letters": job["query_letters"],
        "cpu_seconds": job["summary"]["cpu_seconds"],
        "letters_per_cpu_second": job["summary"]["letters_per_cpu_second"]}
    _valid(stats, "Stats")
    _valid(job, "Job")
    table = _cli("stats", url=server.url)
    assert "0 waiting, 0 dead-lettered (storage queue" in table
    assert "0 queued, 0 running, 1 succeeded, 0 failed, 0 cancelled (1 in all)" in table
    assert "over the last 1 finished jobs" in table
    assert "query letters per CPU second" in table
    as_json = json.loads(_cli("stats", "--json", url=server.url))
    assert as_json["jobs"] == stats["jobs"]


def test_logs_are_json_lines_with_the_job_fields_and_no_query(served):
    server, job, query = served
    lines = [line for line in server.log.read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    mine = [r for r in records if r.get("job_id") == job["id"]]
    assert any("queued" in r["message"] and "batch" not in r for r in mine)
    worker_lines = [r for r in mine if "batch" in r]
    assert worker_lines and all(r["batch"] == 0 and r["attempt"] == 1 for r in worker_lines)
    assert any("CPU s" in r["message"] for r in worker_lines)
    assert {"time", "level", "logger", "pid", "message"} <= set(mine[0])
    residues = [line for line in query.splitlines() if line and not line.startswith(">")]
    text = server.log.read_text()
    assert not any(chunk[:30] in text for chunk in residues)
    assert "AccountKey" not in text


def test_stats_read_the_queue_through_the_transport_with_a_short_cache(azurite, blast_available):
    service = bootstrap.build(Settings.from_env(service_env(azurite)))
    service.ensure_storage()
    try:
        now_ms = int(time.time() * 1000)
        for age_ms, status in ((60_000, jobs.SUCCEEDED), (2 * 3_600_000, jobs.FAILED),
                               (3 * 3_600_000, jobs.QUEUED), (2 * 86_400_000, jobs.SUCCEEDED)):
            service.records.create(Job(id=jobs.new_job_id(now_ms - age_ms), status=status,
                                       database=SMALL_DB, program="blastn", task="megablast",
                                       evalue=10.0, max_target_seqs=100, queries=1,
                                       query_letters=100, submitted_at=jobs.utc_now()))
        for number in range(3):
            service.transport.send(Outgoing(messages.batch_message(jobs.new_job_id(), number)
                                            .encode(), "m"))
        service.transport.lane(messages.BULK).poison.send_message(
            messages.batch_message(jobs.new_job_id(), 0).encode())
        stats = service.stats()
        assert (stats["queue"]["depth"], stats["queue"]["dead_letters"]) == (3, 1)
        assert stats["jobs"]["last_hour"]["total"] == 1
        assert stats["jobs"]["last_day"] == {"validating": 0, "queued": 1, "running": 0, "succeeded": 1,
                                             "failed": 1, "cancelled": 0, "total": 3}
        service.transport.send(Outgoing(messages.batch_message(jobs.new_job_id(), 0).encode(),
                                        "m"))
        assert service.stats()["queue"]["depth"] == 3, "read again within the cache time"
        service.queue_counts.forget()
        assert service.stats()["queue"]["depth"] == 4
    finally:
        service.transport.close()


def test_service_bus_counts_come_from_the_queue_runtime_properties():
    from azure.servicebus.management import QueueRuntimeProperties
    from azure.servicebus.management._generated.models import (
        MessageCountDetails,
        QueueDescription,
    )

    class RecordingAdmin:
        asked: list[str] = []

        def get_queue_runtime_properties(self, queue_name: str) -> QueueRuntimeProperties:
            self.asked.append(queue_name)
            return QueueRuntimeProperties._from_internal_entity(queue_name, QueueDescription(
                message_count_details=MessageCountDetails(active_message_count=7,
                                                          dead_letter_message_count=2)))

    admin = RecordingAdmin()
    transport = ServiceBusTransport(client=None, queue_name="blast-jobs", admin=admin)
    assert transport.counts() == QueueCounts(depth=7, dead_letters=2)
    assert admin.asked == ["blast-jobs"]


def test_a_service_bus_transport_from_settings_has_a_management_client():
    settings = Settings.from_env({
        "BLAST_SERVICEBUS": "Endpoint=sb://ns.example/;SharedAccessKeyName=k;SharedAccessKey=s2"})
    transport = ServiceBusTransport.connect(settings, settings.queue_name)
    assert type(transport._admin).__name__ == "ServiceBusAdministrationClient"


def test_the_json_formatter_puts_the_job_fields_on_each_line(caplog):
    caplog.set_level(logging.INFO, logger="blast_core")
    job_log("0123456789abcdef012", 2, 3).info("job %s batch %d running", "x", 2)
    line = json.loads(JsonFormatter().format(caplog.records[-1]))
    assert (line["job_id"], line["batch"], line["attempt"]) == ("0123456789abcdef012", 2, 3)
    assert line["message"] == "job x batch 2 running" and line["level"] == "INFO"


def _valid(document: dict, schema_name: str) -> None:
    """`document` matches its schema in the OpenAPI document (schemathesis checks the same,
    in the slow tests)."""
    import jsonschema

    from blast_core.api.openapi_schemas import SCHEMAS

    jsonschema.validate(document, {"$ref": f"#/components/schemas/{schema_name}",
                                   "components": {"schemas": SCHEMAS}})


def _cli(*args: str, url: str) -> str:
    done = subprocess.run([sys.executable, "-m", "blast_core", *args, "--url", url],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout
