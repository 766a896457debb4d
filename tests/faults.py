"""What the fault tests share: how a run is judged (lost, done twice, stranded), the figures
each writes to test-artifacts/reliability-<transport>-<name>.json for docs/reliability.md, and
the check that no BLAST process outlives its worker."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from json import dumps, loads
from pathlib import Path

from conftest import ROOT

from blast_core.domain import jobs, messages
from blast_core.service import bootstrap

ARTIFACTS = ROOT / "test-artifacts"


def record_figures(transport: str, name: str, figures: dict) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"reliability-{transport}-{name}.json").write_text(dumps(figures, indent=1))
    print(f"\n{transport} {name}: {dumps(figures)}")


def statuses_once_settled(status_of: Callable[[str], str], job_ids: list[str],
                          timeout: float) -> dict[str, str]:
    """Every job's status once all have ended, or when `timeout` has passed: the open ones
    are then stranded."""
    deadline = time.monotonic() + timeout
    while True:
        statuses = {job_id: status_of(job_id) for job_id in job_ids}
        if all(s in jobs.FINAL_STATUSES for s in statuses.values()) or time.monotonic() > deadline:
            return statuses
        time.sleep(0.5)


def successes_logged(log: Path) -> dict[str, int]:
    """How often each job's success was logged, across every worker that ran."""
    counts: dict[str, int] = {}
    for job_id in re.findall(r"job ([0-9a-f]{19}) succeeded", log.read_text()):
        counts[job_id] = counts.get(job_id, 0) + 1
    return counts


def outcome(statuses: dict[str, str], successes: dict[str, int],
            expected: str = jobs.SUCCEEDED) -> dict[str, int]:
    """Lost: ended otherwise than expected; done twice: success logged more than once;
    stranded: neither succeeded nor failed nor cancelled at the end."""
    return {"jobs": len(statuses),
            "lost": sum(1 for s in statuses.values() if s in jobs.FINAL_STATUSES and s != expected),
            "done_twice": sum(1 for job_id in statuses if successes.get(job_id, 0) > 1),
            "stranded": sum(1 for s in statuses.values() if s not in jobs.FINAL_STATUSES)}


def blast_processes_for(job_ids: list[str]) -> list[str]:
    """Command lines of live BLAST+ processes working for any of these jobs."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "blast" in cmdline and any(job_id in cmdline for job_id in job_ids):
            found.append(cmdline.replace("\0", " "))
    return found


# The two ways the app runs, behind one face, so that each fault scenario runs through both:
# `serve` on the Storage Queue (its HTTP API, and worker processes the test can kill), and the
# deployed app, function_app.py under the emulated Functions host on the emulated Service Bus.


class ServePath:
    """serve with no workers of its own answers HTTP; `worker` processes, the same command
    serve starts for its --workers, take the queue."""

    transport = "storage"

    def __init__(self, env: dict[str, str], tmp_path: Path, workers: int, paused: bool = False):
        from conftest import start_server

        from blast_core.settings import Settings

        self.env = env
        self.log = tmp_path / "workers.log"
        self.server = start_server(env, tmp_path / "serve.log", workers=0)
        self.operator = bootstrap.build(Settings.from_env(env))
        self.worker_count = workers
        self.workers = [] if paused else [self._start_worker() for _ in range(workers)]

    def resume(self) -> None:
        """Start the workers of a path started paused."""
        self.workers = [self._start_worker() for _ in range(self.worker_count)]

    def _start_worker(self):
        import subprocess
        import sys

        with open(self.log, "ab") as out:
            return subprocess.Popen([sys.executable, "-m", "blast_core", "worker"], cwd=ROOT,
                                    env={**os.environ, **self.env}, stdout=out,
                                    stderr=subprocess.STDOUT)

    def http(self, method: str, path: str, **options):
        import requests

        return requests.request(method, f"{self.server.url}/{path}", timeout=60, **options)

    def kill_worker(self) -> None:
        """kill -9 of a worker process; a new one takes its place, as serve's would be."""
        import signal

        victim = self.workers.pop(0)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        self.workers.append(self._start_worker())

    def send_raw(self, body: str) -> None:
        self.operator.transport.lane(messages.INTERACTIVE).queue.send_message(body)

    def dead_letter_count(self) -> int:
        return self.operator.transport.counts().dead_letters

    def close(self) -> None:
        from blast_core.blast.programs import stop_processes

        stop_processes(self.workers)
        self.server.stop()
        self.operator.transport.close()


class HostPath:
    """The deployed app: HTTP through the host's HTTP functions, the queue through its
    Service Bus trigger; a worker kill is the language worker's, which the host restarts."""

    transport = "servicebus"

    def __init__(self, deployed):
        self.deployed = deployed
        self.host = deployed.host
        self.operator = deployed.operator
        self.log = deployed.log

    def http(self, method: str, path: str, json: object = None, params: dict | None = None):
        body = b"" if json is None else dumps(json).encode()
        return _HttpAnswer(self.host.http(method, path, body, {"Content-Type": "application/json"},
                                          params))

    def kill_worker(self) -> None:
        self.host.kill_worker()

    def resume(self) -> None:
        self.host.resume()

    def send_raw(self, body: str) -> None:
        from deployed import QUEUE

        self.deployed.namespace.send(QUEUE, {"message_id": None, "body": body.encode()})

    def dead_letter_count(self) -> int:
        from deployed import QUEUE

        return self.deployed.namespace.properties(QUEUE)["dead_letter_message_count"]


class _HttpAnswer:
    """The emulated host's answer with the face of a `requests` response."""

    def __init__(self, result):
        self.status_code = result.status
        self.headers = result.headers
        self.content = result.body
        self.text = result.body.decode(errors="replace")

    def json(self):
        return loads(self.content)
