"""Shared fixtures: a real Azurite on free ports, settings pointing at it, real BLAST data."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from blast_core.blast.programs import stop_processes
from blast_core.blast.samples import database_sequences, sample_fasta
from blast_core.domain.jobs import FINAL_STATUSES
from blast_core.domain.tabular import DEFAULT_COLUMNS
from blast_core.service import bootstrap
from blast_core.storage.azurite import LocalAzurite, free_port

ROOT = Path(__file__).resolve().parent.parent
RRNA_DATA = Path("/usr/share/ncbi/data")
SMALL_DB = "Combined16SrRNA_2-12-2008"  # 5,681 sequences, 8 Mbases


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalAzurite]:
    try:
        server = LocalAzurite(ROOT, tmp_path_factory.mktemp("azurite")).start()
    except FileNotFoundError as error:
        pytest.exit(f"{error}; run `make test`", returncode=3)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def blast_available() -> None:
    if not shutil.which("blastn") or not (RRNA_DATA / f"{SMALL_DB}.nsq").exists():
        pytest.exit("BLAST+ and ncbi-rrna-data are needed: run `make test`", returncode=3)


def service_env(azurite: LocalAzurite, db_dir: Path | str = RRNA_DATA, **overrides: str) -> dict[str, str]:
    """Settings for one isolated service: its own container, table and queue in Azurite."""
    unique = uuid.uuid4().hex[:10]
    env = {
        "BLAST_STORAGE": azurite.connection_string,
        "BLAST_QUEUE_TRANSPORT": "storage",
        "BLAST_QUEUE_NAME": f"jobs-{unique}",
        "BLAST_BULK_QUEUE_NAME": f"bulk-{unique}",
        "BLAST_RESULTS_CONTAINER": f"results-{unique}",
        "BLAST_JOBS_TABLE": f"jobs{unique}",
        "BLAST_DB_DIR": str(db_dir),
        "BLAST_VISIBILITY_TIMEOUT": "30",
    }
    env.update(overrides)
    return env


@pytest.fixture
def settings_env(azurite: LocalAzurite, blast_available: None) -> dict[str, str]:
    return service_env(azurite)


@pytest.fixture
def service(settings_env: dict[str, str]):
    from blast_core.settings import Settings

    built = bootstrap.build(Settings.from_env(settings_env))
    built.ensure_storage()
    yield built
    built.transport.close()


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def stop(self) -> None:
        stop_processes([self.process], timeout=15)


def start_server(env: dict[str, str], log: Path, workers: int = 1,
                 extra: list[str] | None = None) -> Server:
    """`python -m blast_core serve` as a user runs it, on a free port."""
    port = free_port()
    command = [sys.executable, "-m", "blast_core", "serve", "--port", str(port),
               "--workers", str(workers), *(extra or [])]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env},
                                   stdout=out, stderr=subprocess.STDOUT)
    server = Server(process, f"http://127.0.0.1:{port}/api", log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"serve exited:\n{log.read_text()}")
        try:
            if requests.get(f"{server.url}/health", timeout=2).status_code == 200:
                return server
        except requests.ConnectionError:
            time.sleep(0.1)
    server.stop()
    raise TimeoutError(f"serve did not answer within 30 s:\n{log.read_text()}")


def wait_for_job(url: str, job_id: str, timeout: float = 120.0,
                 headers: dict[str, str] | None = None) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = requests.get(f"{url}/jobs/{job_id}", headers=headers, timeout=10).json()
        if job["status"] in FINAL_STATUSES:
            return job
        time.sleep(0.2)
    raise TimeoutError(f"job {job_id} did not finish within {timeout} s")


def fetch_result(url: str, timeout: float = 120.0, **options) -> requests.Response:
    """GET a result URL as a client does: while a worker makes the format (202), ask again
    after Retry-After."""
    deadline = time.monotonic() + timeout
    while True:
        response = requests.get(url, timeout=60, **options)
        if response.status_code != 202:
            return response
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} was still being made after {timeout} s")
        time.sleep(float(response.headers.get("Retry-After", "1")) / 4)


def result_text(service, job_id: str, format_name: str = "tsv") -> str:
    """A result through a service in this process: the first ask queues the making of the
    format, which is done here as a worker would do it, then the result is read."""
    from blast_core.domain import messages
    from blast_core.service.errors import ResultPending

    try:
        return b"".join(service.result(job_id, format_name).chunks).decode()
    except ResultPending:
        service.handle(messages.format_message(job_id, format_name), 1)
    return b"".join(service.result(job_id, format_name).chunks).decode()


def queued_message(service, job_id: str, batch: int = 0):
    """A batch's message as submission queued it (a small job's carries its query), peeked
    from its lane's Storage Queue."""
    from blast_core.domain import messages

    for lane in messages.LANES:
        for peeked in service.transport.lane(lane).queue.peek_messages(max_messages=32):
            message = messages.decode(peeked.content)
            if (message.job_id, message.batch) == (job_id, batch):
                return message
    raise AssertionError(f"no message queued for job {job_id} batch {batch}")


@functools.cache
def sequences_of(database: str) -> list[str]:
    return database_sequences(str(RRNA_DATA / database))


def sample_queries(database: str, count: int, seed: int = 7) -> str:
    """FASTA of `count` real sequences of a database, mutated with a fixed seed."""
    return sample_fasta(sequences_of(database), count, seed=seed, label=f"of {database}")


def direct_blastn(query_fasta: str, database: str, tmp_path: Path, *options: str,
                  columns: tuple[str, ...] = DEFAULT_COLUMNS) -> str:
    """The tabular result of running blastn directly, for comparison with the service;
    `database`: one name, or several separated by spaces (searched together)."""
    query = tmp_path / f"direct-{uuid.uuid4().hex[:6]}.fasta"
    query.write_text(query_fasta)
    return subprocess.run(
        ["blastn", "-query", str(query),
         "-db", " ".join(str(RRNA_DATA / name) for name in database.split()),
         "-outfmt", f"6 {' '.join(columns)}", *options],
        capture_output=True, text=True, check=True).stdout


def processes_running(marker: str) -> list[int]:
    """The processes whose command line contains `marker` (a job id, a file path)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                if marker in cmdline.read().decode(errors="replace"):
                    found.append(int(pid))
        except OSError:
            pass  # ended meanwhile
    return found


def wait_until(condition, timeout: float, what: str, interval: float = 0.2):
    """What `condition()` returns once it is true; TimeoutError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(interval)
    raise TimeoutError(f"{what}: not within {timeout} s")
