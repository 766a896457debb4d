"""A local Azurite (the Azure Storage emulator) for the demo, the tests and the benchmark.

Each instance listens on free loopback ports with a fresh random account key, so no
well-known key is ever needed and parallel runs never collide.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from blast_core.process import stop_processes

ACCOUNT = "devstoreaccount1"
SERVICES = ("blob", "queue", "table")


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
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout:g} s")


def new_account_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def azurite_command(project_root: Path) -> str:
    local = project_root / "node_modules" / ".bin" / "azurite"
    found = str(local) if local.exists() else shutil.which("azurite")
    if not found:
        raise FileNotFoundError("Azurite is not installed: `npm ci` in the project installs it")
    return found


class LocalAzurite:
    def __init__(self, project_root: Path, workdir: Path | None = None):
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="azurite-"))
        self.key = new_account_key()
        self.ports = {service: free_port() for service in SERVICES}
        self.command = [azurite_command(project_root), "--silent", "--skipApiVersionCheck",
                        "--disableTelemetry", "--location", str(self.workdir)]
        for service, port in self.ports.items():
            self.command += [f"--{service}Host", "127.0.0.1", f"--{service}Port", str(port)]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def connection_string(self) -> str:
        endpoints = "".join(f"{service.capitalize()}Endpoint=http://127.0.0.1:{port}/{ACCOUNT};"
                            for service, port in self.ports.items())
        return f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={self.key};{endpoints}"

    def start(self) -> LocalAzurite:
        env = {**os.environ, "AZURITE_ACCOUNTS": f"{ACCOUNT}:{self.key}"}
        self.process = subprocess.Popen(self.command, env=env, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        for port in self.ports.values():
            wait_for_port(port)
        return self

    def stop(self) -> None:
        if self.process is None:
            return
        stop_processes([self.process])
        self.process = None
