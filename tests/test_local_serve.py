"""`serve` as a user runs it on their machine: with no storage settings it starts its own Azurite,
keeps jobs and result links across restarts, stops everything it started on Ctrl-C, SIGTERM
and even SIGKILL, and says in one line why storage that refuses it cannot be used. Real
`serve` processes over HTTP, real Azurite, real blastn."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from conftest import (
    ROOT,
    RRNA_DATA,
    SMALL_DB,
    Server,
    direct_blastn,
    fetch_result,
    processes_running,
    sample_queries,
    service_env,
    wait_for_job,
    wait_until,
)

from blast_core.storage.azurite import LocalAzurite, free_port, new_account_key

LONG_DB = "SSURef_93.fasta"  # 300 Mbases: a few queries with task blastn take minutes


def user_env(**settings: str) -> dict[str, str]:
    """The environment of a user who set these settings and BLAST_DB_DIR, and no other,
    whatever the test session's environment holds."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("BLAST_")}
    return {**env, "BLAST_DB_DIR": str(RRNA_DATA), **settings}


@pytest.fixture
def start_serve() -> Iterator[Callable[..., Server]]:
    """A function that starts `python -m blast_core serve` in a process group of its own, as
    on a terminal, so that a Ctrl-C can be sent to the group, and returns once it answers.
    Whatever the test does, none is left running after it."""
    started: list[Server] = []

    def start(env: dict[str, str], log: Path, workers: int = 1) -> Server:
        port = free_port()
        with open(log, "ab") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "blast_core", "serve", "--port", str(port), "--workers",
                 str(workers)], cwd=ROOT, env=env, stdout=out, stderr=out,
                start_new_session=True)
        server = Server(process, f"http://127.0.0.1:{port}/api", log)
        started.append(server)

        def answers() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"serve exited with {process.returncode}:\n"
                                     f"{log.read_text()}")
            try:
                return requests.get(f"{server.url}/health", timeout=2).status_code == 200
            except requests.ConnectionError:
                return False

        wait_until(answers, 60, "serve to answer")
        return server

    yield start
    for server in started:
        if server.process.poll() is None:
            server.stop()


def stop(server: Server, signum: int = signal.SIGTERM, timeout: float = 20) -> int:
    server.process.send_signal(signum)
    return server.process.wait(timeout=timeout)


def descendants(pid: int) -> set[int]:
    """The processes started by `pid`, by their children too."""
    parents = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as stat:
                parents[int(entry)] = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            pass  # ended meanwhile
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        found |= frontier
    return found


def running(pids: set[int]) -> set[int]:
    """Those of `pids` that still run (a zombie waiting to be reaped has ended)."""
    alive = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] != "Z":
                    alive.add(pid)
        except OSError:
            pass
    return alive


def command_lines(pids: set[int]) -> list[str]:
    lines = []
    for pid in pids:
        try:
            lines.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            pass
    return lines


def submit(url: str, query: str, database: str = SMALL_DB, **options: object) -> str:
    answer = requests.post(f"{url}/jobs", json={"query": query, "database": database, **options},
                           timeout=30)
    assert answer.status_code == 202, answer.text
    return answer.json()["id"]


def result_link(url: str, job_id: str) -> str:
    answer = fetch_result(f"{url}/jobs/{job_id}/results", params={"format": "tsv",
                                                                  "redirect": "true"},
                          allow_redirects=False)
    assert answer.status_code == 302, answer.text
    return answer.headers["Location"]


def test_serve_without_storage_settings_keeps_every_job_and_link_across_restarts(
        blast_available, start_serve, tmp_path):
    folder = tmp_path / "own-azurite"
    env = user_env(BLAST_AZURITE_DIR=str(folder))  # no storage settings
    log = tmp_path / "serve.log"

    first = start_serve(env, log)
    query = sample_queries(SMALL_DB, 2, seed=71)
    done_id = submit(first.url, query, evalue=1e-30, max_target_seqs=10)
    assert wait_for_job(first.url, done_id)["status"] == "succeeded"
    expected = direct_blastn(query, SMALL_DB, tmp_path, "-evalue", "1e-30", "-max_target_seqs",
                             "10")
    assert fetch_result(f"{first.url}/jobs/{done_id}/results?format=tsv").text == expected
    link = result_link(first.url, done_id)
    assert requests.get(link, timeout=30).text == expected
    # One serve per folder: a second one says so in one line and leaves the first alone.
    second = subprocess.run([sys.executable, "-m", "blast_core", "serve", "--port",
                             str(free_port())], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=60)
    assert second.returncode == 1 and second.stderr.count("\n") == 1, second.stderr
    assert second.stderr.startswith(f"error: {folder} is in use by another serve "
                                    f"(pid {first.process.pid})")
    assert stop(first) == 0
    assert not processes_running(str(folder)), "serve's Azurite outlived it"
    account = folder / "account.json"
    assert account.stat().st_mode & 0o077 == 0, "the account key is readable by others"
    assert json.loads(account.read_text())["key"] not in log.read_text()

    # No workers: a job submitted now stays queued when serve stops.
    idle = start_serve(env, log, workers=0)
    kept = requests.get(f"{idle.url}/jobs/{done_id}", timeout=10).json()
    assert (kept["status"], kept["queries"]) == ("succeeded", 2)
    assert fetch_result(f"{idle.url}/jobs/{done_id}/results?format=tsv").text == expected
    assert requests.get(link, timeout=30).text == expected, "a result link died with a restart"
    queued_query = sample_queries(SMALL_DB, 1, seed=72)
    queued_id = submit(idle.url, queued_query, max_target_seqs=10)
    assert stop(idle) == 0

    third = start_serve(env, log)
    ran = wait_for_job(third.url, queued_id)
    assert ran["status"] == "succeeded", ran
    assert fetch_result(f"{third.url}/jobs/{queued_id}/results?format=tsv").text == \
        direct_blastn(queued_query, SMALL_DB, tmp_path, "-max_target_seqs", "10")
    listed = requests.get(f"{third.url}/jobs", timeout=10).json()["jobs"]
    assert [job["id"] for job in listed] == [queued_id, done_id]
    assert stop(third) == 0


def test_serve_killed_outright_leaves_nothing_running_and_its_jobs_kept(blast_available,
                                                                        start_serve, tmp_path):
    folder = tmp_path / "own-azurite"
    env = user_env(BLAST_AZURITE_DIR=str(folder))  # no storage settings
    server = start_serve(env, tmp_path / "serve.log")
    job_id = submit(server.url, sample_queries(SMALL_DB, 1, seed=73))
    assert wait_for_job(server.url, job_id)["status"] == "succeeded"
    started = descendants(server.process.pid)
    assert any("azurite" in line for line in command_lines(started))
    assert any("blast_core worker" in line for line in command_lines(started))

    server.process.kill()
    server.process.wait()
    # The kernel kills the workers and asks Azurite to save and stop (parent-death signals).
    wait_until(lambda: not running(started), 15, "serve's workers and Azurite to end")

    again = start_serve(env, tmp_path / "serve.log")  # the folder is free again
    assert requests.get(f"{again.url}/jobs/{job_id}", timeout=10).json()["status"] == \
        "succeeded"
    assert stop(again) == 0


@pytest.mark.parametrize("how, expected_status", [
    ("Ctrl-C", 130),  # SIGINT to the whole process group, as a terminal sends it
    ("SIGTERM", 0),  # to serve alone, as `kill` and service managers send it
])
def test_serve_stops_cleanly_with_everything_it_started(blast_available, start_serve,
                                                        tmp_path, how, expected_status):
    server = start_serve(user_env(BLAST_AZURITE_DIR=str(tmp_path / "own-azurite")),
                         tmp_path / "serve.log")
    job_id = submit(server.url, sample_queries(LONG_DB, 3, seed=74), LONG_DB, task="blastn")
    wait_until(lambda: processes_running(job_id), 60, "blastn of the job to start")
    started = descendants(server.process.pid)
    assert any("blastn" in line for line in command_lines(started))

    asked = time.monotonic()
    if how == "Ctrl-C":
        os.killpg(server.process.pid, signal.SIGINT)
    else:
        server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=20) == expected_status
    assert time.monotonic() - asked < 10
    assert not running(started), command_lines(running(started))
    assert not processes_running(job_id), "a blastn outlived serve"
    log = server.log.read_text()
    assert "Exception ignored" not in log and "Traceback" not in log, log
    assert f"stopped by {'SIGINT' if how == 'Ctrl-C' else 'SIGTERM'}" in log


@pytest.mark.parametrize("signals, expected_status", [
    ((signal.SIGINT,), 130),
    ((signal.SIGTERM,), 0),
    # A Ctrl-C on the terminal of a worker that serve then stops, as it used to happen: the
    # second signal, in the middle of the first one's shut-down, must not be printed.
    ((signal.SIGINT, signal.SIGTERM), 130),
])
def test_a_worker_on_its_own_stops_at_once_and_quietly(azurite, blast_available, tmp_path,
                                                       signals, expected_status):
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        worker = subprocess.Popen([sys.executable, "-m", "blast_core", "worker"], cwd=ROOT,
                                  env=user_env(**service_env(azurite)), stdout=out,
                                  stderr=out)
    try:
        wait_until(lambda: "listening" in log.read_text(), 30, "the worker to listen")
        for signum in signals:
            worker.send_signal(signum)
            time.sleep(0.05)
        assert worker.wait(timeout=10) == expected_status
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert "Exception ignored" not in log.read_text() and "Traceback" not in log.read_text()


def test_a_worker_without_storage_settings_says_what_to_set(tmp_path):
    alone = subprocess.run([sys.executable, "-m", "blast_core", "worker"], cwd=ROOT,
                           env=user_env(BLAST_AZURITE_DIR=str(tmp_path / "unused")),
                           capture_output=True,
                           text=True, timeout=60)
    assert alone.returncode == 2 and alone.stderr.count("\n") == 1, alone.stderr
    assert alone.stderr.startswith("error: BLAST_STORAGE is not set: `worker` works on the "
                                   "storage it names")
    assert not (tmp_path / "unused").exists()


def azurite_connection(ports: dict[str, int], key: str) -> str:
    return (f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={key};"
            + "".join(f"{service.capitalize()}Endpoint=http://127.0.0.1:{port}/devstoreaccount1;"
                      for service, port in ports.items()))


@pytest.fixture
def azurite_checking_api_versions(tmp_path):
    """Azurite as `npx azurite` starts it without the flag the storage SDK needs."""
    server = LocalAzurite(ROOT, tmp_path / "strict-azurite")
    server.command.remove("--skipApiVersionCheck")
    server.start()
    yield server
    server.stop()


def refused_start(command: str, connection: str) -> str:
    """stderr of `command` started on storage that refuses it; checks that it is one line
    and fast."""
    env = user_env(BLAST_STORAGE=connection)
    began = time.monotonic()
    args = ["serve", "--port", str(free_port())] if command == "serve" else [command]
    refused = subprocess.run([sys.executable, "-m", "blast_core", *args], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1, refused.stderr
    assert refused.stderr.count("\n") == 1 and refused.stderr.startswith("error: "), \
        refused.stderr
    assert time.monotonic() - began < 20, "storage was retried rather than refused"
    return refused.stderr


def test_an_azurite_without_skip_api_version_check_is_one_line_saying_so(
        azurite_checking_api_versions):
    strict = azurite_checking_api_versions
    line = refused_start("serve", strict.connection_string)
    assert line.startswith(f"error: cannot use the storage: the blob service at "
                           f"http://127.0.0.1:{strict.ports['blob']}/devstoreaccount1 refuses "
                           "this storage SDK's API version (20")
    assert "restart it with --skipApiVersionCheck" in line
    assert strict.key not in line


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_storage_that_does_not_answer_is_one_line_saying_so(command):
    ports = {service: free_port() for service in ("blob", "queue", "table")}
    key = new_account_key()
    line = refused_start(command, azurite_connection(ports, key))
    assert line.startswith(f"error: cannot use the storage: the blob service at "
                           f"http://127.0.0.1:{ports['blob']}/devstoreaccount1 does not answer "
                           "(Connection refused); check the endpoints in BLAST_STORAGE")
    assert key not in line


def test_a_wrong_account_key_is_one_line_saying_so(azurite):
    wrong = new_account_key()
    line = refused_start("serve", azurite_connection(azurite.ports, wrong))
    assert line.startswith(f"error: cannot use the storage: the blob service at "
                           f"http://127.0.0.1:{azurite.ports['blob']}/devstoreaccount1 refuses "
                           "the credentials (AuthorizationFailure); the account key (or SAS) in "
                           "BLAST_STORAGE is not one that this account accepts")
    assert wrong not in line and azurite.key not in line


def test_a_port_in_use_is_one_line_saying_so(azurite, blast_available):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        refused = subprocess.run([sys.executable, "-m", "blast_core", "serve", "--port",
                                  str(port), "--workers", "1"], cwd=ROOT,
                                 env=user_env(**service_env(azurite)),
                                 capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1
    assert refused.stderr == f"error: cannot listen on 127.0.0.1:{port}: Address already in " \
                             "use (another serve?)\n"
