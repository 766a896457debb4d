"""Shared fixtures: a real Azurite on free ports, settings pointing at it, real BLAST data."""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
RRNA_DATA = Path("/usr/share/ncbi/data")
SMALL_DB = "Combined16SrRNA_2-12-2008"  # 5,681 sequences, 8 Mbases
TINY_DB = "16SCore"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


@dataclass
class Azurite:
    """A running Azurite; its account key is random, so no well-known key is needed."""

    process: subprocess.Popen[bytes]
    ports: dict[str, int]
    account: str
    key: str
    workdir: Path
    command: list[str]
    env: dict[str, str]

    @property
    def connection_string(self) -> str:
        endpoints = ";".join(f"{name.capitalize()}Endpoint=http://127.0.0.1:{port}/{self.account}"
                             for name, port in self.ports.items())
        return (f"DefaultEndpointsProtocol=http;AccountName={self.account};"
                f"AccountKey={self.key};{endpoints};")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def start(self) -> None:
        self.process = subprocess.Popen(self.command, env=self.env, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        for port in self.ports.values():
            wait_for_port(port)


def azurite_binary() -> str:
    local = ROOT / "node_modules" / ".bin" / "azurite"
    if local.exists():
        return str(local)
    found = shutil.which("azurite")
    if not found:
        pytest.exit("Azurite is not installed: run `make test` (npm install) first", returncode=3)
    return found


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    workdir = tmp_path_factory.mktemp("azurite")
    ports = {"blob": free_port(), "queue": free_port(), "table": free_port()}
    account, key = "devstoreaccount1", base64.b64encode(secrets.token_bytes(32)).decode()
    command = [azurite_binary(), "--silent", "--skipApiVersionCheck", "--disableTelemetry", "--location", str(workdir),
               "--blobHost", "127.0.0.1", "--queueHost", "127.0.0.1", "--tableHost", "127.0.0.1",
               "--blobPort", str(ports["blob"]), "--queuePort", str(ports["queue"]),
               "--tablePort", str(ports["table"])]
    env = {**os.environ, "AZURITE_ACCOUNTS": f"{account}:{key}"}
    server = Azurite(None, ports, account, key, workdir, command, env)  # type: ignore[arg-type]
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def blast_available() -> None:
    if not shutil.which("blastn") or not (RRNA_DATA / f"{SMALL_DB}.nsq").exists():
        pytest.exit("BLAST+ and ncbi-rrna-data are needed: run `make test`", returncode=3)


def service_env(azurite: Azurite, db_dir: Path | str = RRNA_DATA, **overrides: str) -> dict[str, str]:
    """Settings for one isolated service: its own container, table and queue in Azurite."""
    unique = uuid.uuid4().hex[:10]
    env = {
        "BLAST_STORAGE": azurite.connection_string,
        "BLAST_QUEUE_TRANSPORT": "storage",
        "BLAST_QUEUE_NAME": f"jobs-{unique}",
        "BLAST_RESULTS_CONTAINER": f"results-{unique}",
        "BLAST_JOBS_TABLE": f"jobs{unique}",
        "BLAST_DB_DIR": str(db_dir),
        "BLAST_VISIBILITY_TIMEOUT": "30",
    }
    env.update(overrides)
    return env


@pytest.fixture
def settings_env(azurite: Azurite, blast_available: None) -> dict[str, str]:
    return service_env(azurite)


@pytest.fixture
def service(settings_env: dict[str, str]):
    from blast_core.service import BlastService
    from blast_core.settings import Settings

    built = BlastService.from_settings(Settings.from_env(settings_env))
    built.ensure_storage()
    yield built
    built.transport.close()


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


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
        if job["status"] in ("succeeded", "failed"):
            return job
        time.sleep(0.2)
    raise TimeoutError(f"job {job_id} did not finish within {timeout} s")


def sample_queries(database: str, count: int, seed: int = 7, mutation_rate: float = 0.03,
                   start: int = 0) -> str:
    """FASTA of `count` real sequences from a database, mutated with a fixed seed."""
    import random

    entries = subprocess.run(
        ["blastdbcmd", "-db", str(RRNA_DATA / database), "-entry", "all", "-outfmt", "%s"],
        capture_output=True, text=True, check=True).stdout.split()
    rng = random.Random(seed)
    picked = rng.sample(range(len(entries)), count) if start == 0 else range(start, start + count)
    lines = []
    for number, index in enumerate(picked, start=1):
        residues = list(entries[index][:1500])
        for position in range(len(residues)):
            if rng.random() < mutation_rate:
                residues[position] = rng.choice("ACGT")
        lines += [f">q{number} sample {index} of {database}", "".join(residues)]
    return "\n".join(lines) + "\n"


def direct_blastn(query_fasta: str, database: str, tmp_path: Path, *options: str) -> str:
    """The tabular result of running blastn directly, for comparison with the service."""
    from blast_core.runner import TABULAR_COLUMNS

    query = tmp_path / f"direct-{uuid.uuid4().hex[:6]}.fasta"
    query.write_text(query_fasta)
    return subprocess.run(
        ["blastn", "-query", str(query), "-db", str(RRNA_DATA / database),
         "-outfmt", f"6 {TABULAR_COLUMNS}", *options],
        capture_output=True, text=True, check=True).stdout
