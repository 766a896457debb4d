"""Fault tests on the Storage Queue transport against a real Azurite: workers killed with -9 at
random moments, a storage outage mid-run, and load from many concurrent clients. Every job
must end, succeed exactly once and give the same hits as a clean run.

Each test writes its figures to test-artifacts/reliability-<name>.json (docs/reliability.md)."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from azure.data.tables import TableClient
from conftest import ROOT, SMALL_DB, direct_blastn, result_text, sample_queries, service_env, start_server

from blast_core import jobs
from blast_core.local_storage import LocalAzurite
from blast_core.service import BlastService
from blast_core.settings import Settings

pytestmark = pytest.mark.slow
ARTIFACTS = ROOT / "test-artifacts"


def record_figures(name: str, figures: dict) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"reliability-{name}.json").write_text(json.dumps(figures, indent=1))
    print(f"\n{name}: {json.dumps(figures)}")


@pytest.fixture
def own_azurite(tmp_path):
    """An Azurite of this test's own, with its data on disk so it survives a restart."""
    server = LocalAzurite(ROOT, tmp_path / "azurite").start()
    yield server
    server.stop()


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "blast_core", "worker"], cwd=ROOT,
                                env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)


def blast_processes_for(job_ids: list[str]) -> list[str]:
    """Command lines of live BLAST+ processes working for any of these jobs."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if ("blast" in cmdline and any(job_id in cmdline for job_id in job_ids)):
            found.append(cmdline.replace("\0", " "))
    return found


def wait_until_all_end(service: BlastService, job_ids: list[str], timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = {job_id: service.get(job_id) for job_id in job_ids}
        if all(job.status in jobs.FINAL_STATUSES for job in states.values()):
            return states
        time.sleep(0.5)
    open_jobs = {j: s.status for j, s in states.items() if s.status not in jobs.FINAL_STATUSES}
    raise AssertionError(f"{len(open_jobs)} jobs did not end: {open_jobs}")


def successes_logged(log: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for job_id in re.findall(r"job ([0-9a-f]{19}) succeeded", log.read_text()):
        counts[job_id] = counts.get(job_id, 0) + 1
    return counts


def submit_batch(service: BlastService, count: int) -> tuple[list[str], dict[str, str]]:
    queries = {}
    ids = []
    for seed in range(count):
        query = sample_queries(SMALL_DB, 1, seed=1000 + seed)
        job_id = service.submit({"query": query, "database": SMALL_DB, "max_target_seqs": 10}).id
        ids.append(job_id)
        queries[job_id] = query
    return ids, queries


def assert_results_match_direct_blastn(service: BlastService, queries: dict[str, str],
                                       tmp_path: Path) -> None:
    for job_id, query in queries.items():
        assert result_text(service, job_id, "tsv") == direct_blastn(
            query, SMALL_DB, tmp_path, "-max_target_seqs", "10"), job_id


def faulty_setup(azurite: LocalAzurite) -> tuple[dict[str, str], BlastService]:
    """Short visibility, so a killed worker's message soon comes back; room for many retries."""
    env = service_env(azurite, BLAST_VISIBILITY_TIMEOUT="3", BLAST_MAX_DELIVERIES="20")
    service = BlastService.from_settings(Settings.from_env(env))
    service.ensure_storage()
    return env, service


def check_each_succeeded_once(service: BlastService, states: dict, log: Path,
                              queries: dict[str, str], tmp_path: Path) -> dict[str, int]:
    assert {job.status for job in states.values()} == {"succeeded"}
    successes = successes_logged(log)
    assert all(successes.get(job_id) == 1 for job_id in queries), successes
    assert_results_match_direct_blastn(service, queries, tmp_path)
    return successes


def test_workers_killed_at_random_moments_lose_and_duplicate_nothing(own_azurite, tmp_path):
    env, service = faulty_setup(own_azurite)
    job_ids, queries = submit_batch(service, 24)
    log = tmp_path / "workers.log"
    rng = random.Random(2026)
    kills = 0
    worker = start_worker(env, log)
    for _ in range(6):
        time.sleep(rng.uniform(0.3, 2.5))
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        kills += 1
        worker = start_worker(env, log)
    try:
        states = wait_until_all_end(service, job_ids, timeout=240)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    successes = check_each_succeeded_once(service, states, log, queries, tmp_path)
    assert blast_processes_for(job_ids) == []
    record_figures("kill-9", {
        "jobs": len(job_ids), "kills": kills, "succeeded": len(states),
        "lost": 0, "duplicate_successes": sum(n - 1 for n in successes.values()),
        "rerun_attempts": sum(job.attempts - 1 for job in states.values())})


def test_a_storage_outage_mid_run_loses_nothing(own_azurite, tmp_path):
    env, service = faulty_setup(own_azurite)
    job_ids, queries = submit_batch(service, 16)
    log = tmp_path / "workers.log"
    workers = [start_worker(env, log) for _ in range(2)]
    try:
        time.sleep(1.5)
        own_azurite.stop()
        outage = 4.0
        time.sleep(outage)
        own_azurite.start()
        states = wait_until_all_end(service, job_ids, timeout=240)
    finally:
        for worker in workers:
            worker.terminate()
            worker.wait(timeout=30)
    successes = check_each_succeeded_once(service, states, log, queries, tmp_path)
    record_figures("storage-outage", {
        "jobs": len(job_ids), "workers": len(workers), "outage_seconds": outage,
        "succeeded": len(states), "lost": 0,
        "duplicate_successes": sum(n - 1 for n in successes.values()),
        "rerun_attempts": sum(job.attempts - 1 for job in states.values())})


@pytest.mark.timeout(1800)
def test_many_concurrent_clients_are_all_answered_and_every_job_ends(azurite, blast_available,
                                                                    tmp_path):
    env = service_env(azurite)
    server = start_server(env, tmp_path / "serve.log", workers=2)
    query = ">vector probe\n" + "GATCTTTTCTACGGGGTCTGACGCTCAGTGGAACGAAAACTCACGTTAAGGGATTTTGGTCATG\n"
    total, clients = 1000, 32
    session = requests.Session()
    session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=clients))

    def submit(number: int) -> tuple[int, str]:
        response = session.post(f"{server.url}/jobs", timeout=60, json={
            "query": query, "database": "UniVec_Core", "max_target_seqs": 5 + number % 5})
        return response.status_code, response.json().get("id", "")

    started = time.monotonic()
    try:
        with ThreadPoolExecutor(clients) as pool:
            answers = list(pool.map(submit, range(total)))
        submit_seconds = time.monotonic() - started
        statuses = [status for status, _ in answers]
        assert not [s for s in statuses if s >= 500], sorted(set(statuses))
        accepted = [job_id for status, job_id in answers if status == 202]
        service = BlastService.from_settings(Settings.from_env(env))
        states = wait_until_all_end(service, accepted, timeout=900)
        all_seconds = time.monotonic() - started
    finally:
        server.stop()
    assert len(accepted) == total - sum(1 for s in statuses if 400 <= s < 500)
    assert {job.status for job in states.values()} == {"succeeded"}
    log = server.log.read_text()
    records = json.dumps([dict(entity) for entity in TableClient.from_connection_string(
        azurite.connection_string, env["BLAST_JOBS_TABLE"]).list_entities()])
    for secret in (azurite.key, azurite.connection_string, "sig="):
        assert secret not in log and secret not in records
    record_figures("load", {
        "jobs": total, "concurrent_clients": clients, "accepted": len(accepted),
        "refused_4xx": total - len(accepted), "server_errors": 0,
        "succeeded": len(states), "lost": 0, "submit_seconds": round(submit_seconds, 1),
        "seconds_until_all_ended": round(all_seconds, 1)})
