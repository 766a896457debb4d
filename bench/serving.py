"""`serve` started for a benchmark, on storage the caller chose, and ready to answer."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import requests

from blast_core.storage.azurite import free_port

ROOT = Path(__file__).resolve().parent.parent
READY_SECONDS = 60


def start_serve(env: Mapping[str, str], workdir: Path,
                workers: int = 1) -> tuple[subprocess.Popen, str]:
    """`serve --workers N` under `env`, its output in workdir/serve.log; the process and the
    API's URL once /health answers (TimeoutError after READY_SECONDS)."""
    port = free_port()
    with open(workdir / "serve.log", "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "blast_core", "serve", "--port",
                                    str(port), "--workers", str(workers)], cwd=ROOT,
                                   env=dict(env), stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/health", timeout=2).ok:
                return process, url
        except requests.ConnectionError:
            time.sleep(0.1)
    process.kill()
    raise TimeoutError(f"serve did not answer within {READY_SECONDS} s")
