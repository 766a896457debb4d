"""Azurite, the Azure Storage emulator, as a child process: the storage that `serve` starts
for itself when no storage is configured, and throwaway ones for the demo, tests and benchmark.

Azurite runs with `--skipApiVersionCheck` (the storage SDK speaks newer API versions than
Azurite knows, and Azurite refuses those without it) and `--disableTelemetry` (it would send
usage data out), on loopback ports, with a random account key: never the well-known one.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import errno
import fcntl
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobServiceClient, CorsRule

from blast_core.blast.programs import stop_processes

log = logging.getLogger("blast_core.storage.azurite")

ACCOUNT = "devstoreaccount1"
SERVICES = ("blob", "queue", "table")
# In the folder of serve's own Azurite, beside Azurite's data:
ACCOUNT_FILE = "account.json"  # the account key and ports, kept for the next start
LOCK_FILE = "serve.lock"  # locked while a serve, or the Azurite it started, uses the folder
LOG_FILE = "azurite.log"  # Azurite's own output

PRELOAD = Path(__file__).with_name("azurite_preload.js")  # one stop signal is enough
_PR_SET_PDEATHSIG = 1


class LocalStorageError(RuntimeError):
    """Azurite cannot start; the message says why and what to do, and holds no key."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_is_free(port: int) -> bool:
    """Whether a server could listen on `port`; with SO_REUSEADDR, as Azurite (Node) listens,
    so that connections of a stopped Azurite still in TIME_WAIT do not count."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
        except OSError:
            return False
        return True


def azurite_command(project_root: Path) -> str:
    local = project_root / "node_modules" / ".bin" / "azurite"
    found = str(local) if local.exists() else shutil.which("azurite")
    if not found:
        raise FileNotFoundError("Azurite is not installed: `npm ci` in the project installs it")
    return found


def new_account_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def _terminate_with(parent: int) -> Callable[[], None]:
    """For the child before exec: the kernel sends it SIGTERM when `parent` dies, even by
    SIGKILL, and Azurite saves its data and exits on SIGTERM (PRELOAD makes it ignore the
    repeats that the kernel may send). If `parent` is gone already, it never starts."""

    def terminate_with_parent() -> None:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return terminate_with_parent


class LocalAzurite:
    """One Azurite process keeping its data in `workdir` (its output in `workdir/azurite.log`).

    It runs in a session of its own, so that a Ctrl-C on the terminal reaches only its owner,
    which stops it after whatever still uses it; and the kernel stops it when its owner dies,
    even by SIGKILL. That parent-death signal follows the thread that started it: start it
    from the main thread. `lock_fd`, an open lock on `workdir`, is held by Azurite too, so the
    folder stays locked as long as either process lives, and closed by `stop`."""

    def __init__(self, project_root: Path, workdir: Path | None = None, key: str | None = None,
                 ports: Mapping[str, int] | None = None, lock_fd: int | None = None):
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="azurite-"))
        self.key = key or new_account_key()
        self.ports = dict(ports) if ports else {service: free_port() for service in SERVICES}
        self.lock_fd = lock_fd
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

    @property
    def log_path(self) -> Path:
        return self.workdir / LOG_FILE

    def start(self, timeout: float = 30.0) -> LocalAzurite:
        self.workdir.mkdir(parents=True, exist_ok=True)
        node_options = f'{os.environ.get("NODE_OPTIONS", "")} --require "{PRELOAD}"'.strip()
        env = {**os.environ, "AZURITE_ACCOUNTS": f"{ACCOUNT}:{self.key}",
               "NODE_OPTIONS": node_options}
        with open(self.log_path, "ab") as output:
            self.process = subprocess.Popen(
                self.command, env=env, stdin=subprocess.DEVNULL, stdout=output,
                stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=_terminate_with(os.getpid()),
                pass_fds=() if self.lock_fd is None else (self.lock_fd,))
        deadline = time.monotonic() + timeout
        for port in self.ports.values():
            while not _listening(port):
                if self.process.poll() is not None:
                    code, self.process = self.process.returncode, None
                    raise LocalStorageError(f"Azurite exited at start-up (status {code}); its "
                                            f"output is in {self.log_path}")
                if time.monotonic() > deadline:
                    self.stop()
                    raise LocalStorageError(f"Azurite did not listen on 127.0.0.1:{port} within "
                                            f"{timeout:g} s; its output is in {self.log_path}")
                time.sleep(0.05)
        self._allow_browser_uploads()
        return self

    def _allow_browser_uploads(self) -> None:
        """Let the web page PUT uploads from another origin (`serve`'s), as the Bicep's CORS
        rule does in Azure; the SAS in each URL is what authorises a PUT. An Azurite that
        refuses the request is left as it is: its users' own first call says why (`check.py`)."""
        service = BlobServiceClient.from_connection_string(self.connection_string)
        with contextlib.suppress(HttpResponseError):
            service.set_service_properties(cors=[CorsRule(
                ["*"], ["PUT"], allowed_headers=["*"],
                exposed_headers=["x-ms-request-id", "x-ms-error-code"], max_age_in_seconds=3600)])

    def stop(self) -> None:
        if self.process is not None:
            stop_processes([self.process])
            self.process = None
        if self.lock_fd is not None:
            os.close(self.lock_fd)
            self.lock_fd = None


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def start_own_azurite(project_root: Path, folder: Path) -> LocalAzurite:
    """The Azurite of a `serve` that has no storage configured, keeping in `folder` its data
    and, in ACCOUNT_FILE (readable by the user only), its account key and ports: a restarted
    serve finds its jobs and results, and the result links (SAS) it gave out still work. The
    ports are those of the first start unless one has been taken since. Raises
    LocalStorageError when the folder is in use or Azurite cannot start."""
    try:
        azurite_command(project_root)
    except FileNotFoundError:
        raise LocalStorageError(
            "serve starts its own Azurite when no storage is configured (BLAST_STORAGE), and "
            "Azurite is not installed: `make setup` (or `npm ci`) installs it") from None
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock_fd = _lock(folder)
    except OSError as error:
        raise LocalStorageError(f"cannot use {folder} for serve's own Azurite ({error.strerror}); "
                                "set BLAST_AZURITE_DIR to another folder") from None
    azurite = None
    try:
        key, ports = _account(folder)
        azurite = LocalAzurite(project_root, folder, key, ports, lock_fd)
        return azurite.start()
    except BaseException:
        if azurite is None:
            os.close(lock_fd)
        else:
            azurite.stop()  # closes the lock too
        raise


def _lock(folder: Path) -> int:
    """An exclusive lock on `folder`, recording this process's id; LocalStorageError if held."""
    lock_fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        holder = os.pread(lock_fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(lock_fd)
        if error.errno not in (errno.EWOULDBLOCK, errno.EACCES):
            raise
        raise LocalStorageError(
            f"{folder} is in use by another serve (pid {holder}), or by the Azurite it started, "
            "which stops within seconds of it: stop that serve, or set BLAST_AZURITE_DIR to "
            "another folder") from None
    os.ftruncate(lock_fd, 0)
    os.pwrite(lock_fd, f"{os.getpid()}\n".encode(), 0)
    return lock_fd


def _account(folder: Path) -> tuple[str, dict[str, int]]:
    """The account key and ports saved in `folder`, made on the first start; new ports if a
    saved one is taken."""
    path = folder / ACCOUNT_FILE
    try:
        saved = json.loads(path.read_text())
        key, ports = saved["key"], {service: int(saved["ports"][service]) for service in SERVICES}
    except FileNotFoundError:
        key, ports = new_account_key(), {}
    except (ValueError, KeyError, TypeError):
        raise LocalStorageError(f"{path} is damaged: remove it (the jobs stay; result links "
                                "given out before stop working)") from None
    if ports and not all(port_is_free(port) for port in ports.values()):
        log.warning("a port of serve's own Azurite (%s) is taken: it listens on new ports, and "
                    "result links given out before no longer work",
                    ", ".join(map(str, ports.values())))
        ports = {}
    if not ports:
        ports = {service: free_port() for service in SERVICES}
        written = path.with_suffix(".new")
        with open(os.open(written, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
            json.dump({"key": key, "ports": ports}, out)
        written.replace(path)
    return key, ports
