"""`serve`: the HTTP API on a local port (a WSGI app on waitress) plus worker processes.

The routes are those of `blast_core.api.routes`, the same the function app registers."""

from __future__ import annotations

import errno
import hmac
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

from blast_core.api import dispatch
from blast_core.api.routes import ROUTES
from blast_core.blast.programs import die_with_parent, stop_processes
from blast_core.domain.messages import LANES
from blast_core.service.core import BlastService

log = logging.getLogger("blast_core.hosts.serve")

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def wsgi_app(service_factory: Callable[[], BlastService], api_key: str,
             max_body: int) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        response = _respond(environ, service_factory, api_key, max_body)
        status = f"{response.status} {HTTPStatus(response.status).phrase}"
        start_response(status, list(response.headers.items()))
        return [response.body] if isinstance(response.body, bytes) else response.body

    return app


def _respond(environ: dict[str, Any], service_factory: Callable[[], BlastService],
             api_key: str, max_body: int) -> dispatch.ApiResponse:
    path = environ.get("PATH_INFO", "")
    if not path.startswith(dispatch.PREFIX + "/"):
        return dispatch.problem(404, f"no such endpoint: {path}; the API is under {dispatch.PREFIX}/")
    found = dispatch.match(ROUTES, environ["REQUEST_METHOD"], path[len(dispatch.PREFIX) + 1:])
    if isinstance(found, dispatch.ApiResponse):
        return found
    route, route_params = found
    params = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
    headers = {key[5:].replace("_", "-").lower(): value
               for key, value in environ.items() if key.startswith("HTTP_")}
    if environ.get("CONTENT_TYPE"):
        headers["content-type"] = environ["CONTENT_TYPE"]
    if api_key and not route.anonymous:
        given = headers.get("x-functions-key") or params.get("code", "")
        if not hmac.compare_digest(given.encode(), api_key.encode()):
            return dispatch.problem(401, "a valid API key is required (x-functions-key header or "
                                    "code parameter)")
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if length > max_body:
        return dispatch.problem(413, f"the request body is {length} bytes; the limit is {max_body}")
    body = environ["wsgi.input"].read(length) if length else b""
    host = environ.get("HTTP_HOST") or f"{environ['SERVER_NAME']}:{environ['SERVER_PORT']}"
    request = dispatch.ApiRequest(method=route.method, path=path, params=params, headers=headers,
                                  body=body, route_params=route_params,
                                  base_url=f"{environ['wsgi.url_scheme']}://{host}")
    return dispatch.handle(route, request, service_factory)


def start_workers(count: int) -> tuple[list[subprocess.Popen[bytes]], Callable[[], None]]:
    """`count` worker processes per lane (as each function app instance has a trigger per
    lane), that die with this one, even when it is killed, and a function that wakes the
    idle ones (each reads the end of a pipe that this process writes to). Each has a
    process group of its own, so that a Ctrl-C on the terminal reaches serve only, which
    then stops them."""
    workers, wake_ends = [], []
    for lane in [lane for lane in LANES for _ in range(count)]:
        read_end, write_end = os.pipe()
        os.set_blocking(write_end, False)
        workers.append(subprocess.Popen(
            [sys.executable, "-m", "blast_core", "worker", "--lane", lane,
             "--wake-fd", str(read_end)],
            pass_fds=(read_end,), preexec_fn=die_with_parent, process_group=0,
            stdin=subprocess.DEVNULL))
        os.close(read_end)
        wake_ends.append(write_end)

    def wake() -> None:
        for end in wake_ends:
            try:
                os.write(end, b"!")
            except BlockingIOError:
                pass  # already plenty of wake-ups waiting

    return workers, wake


SWEEP_SECONDS = 300  # as often as the timer function sweep_stranded_jobs runs in Azure


def clean_up_periodically(service: BlastService, stop: threading.Event) -> None:
    """What the timer functions do in Azure, until `stop` is set: delete expired jobs now and
    every BLAST_CLEANUP_SECONDS, and end stranded jobs now and every SWEEP_SECONDS."""

    def every(seconds: float, work: Callable[[], object], what: str) -> None:
        while True:
            try:
                work()
            except Exception as error:
                log.warning("%s failed (%s); trying again later", what, type(error).__name__)
            if stop.wait(seconds):
                return

    for seconds, work, what in ((service.settings.cleanup_seconds, service.clean_up,
                                 "clean-up of expired jobs"),
                                (SWEEP_SECONDS, service.sweep, "sweep of stranded jobs")):
        threading.Thread(target=every, args=(seconds, work, what), daemon=True,
                         name=what).start()


class CannotServe(RuntimeError):
    """serve cannot listen where it was asked to; the message says why."""


class StopSignals:
    """SIGINT and SIGTERM as a request to stop, read by the main thread when it is ready.

    The handler only writes the signal's number to a pipe. Raising from a handler (as
    `sys.exit` does) interrupts whatever the main thread runs at that moment, a finaliser or
    the interpreter's own shut-down included, where the exception is printed as "Exception
    ignored" and lost. Made first thing, so that a signal during start-up waits its turn."""

    def __init__(self) -> None:
        self._read_end, self._write_end = os.pipe()
        os.set_blocking(self._write_end, False)
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda signum, frame: self.note(signum))

    def note(self, signum: int) -> None:
        """Also from another thread: 0 says that something ended that should not have."""
        try:
            os.write(self._write_end, bytes([signum]))
        except BlockingIOError:
            pass  # the pipe is full of earlier requests to stop

    def wait(self) -> int:
        """The number of the first signal (0: see `note`), once one has come."""
        return os.read(self._read_end, 1)[0]


class HttpServer:
    """waitress, serving in a thread of its own until `stop` is called from another."""

    def __init__(self, app: Callable[..., Iterable[bytes]], host: str, port: int):
        from waitress.server import create_server
        from waitress.trigger import trigger

        self._sockets: dict[int, Any] = {}  # waitress's socket map, ours to empty
        try:
            self._server = create_server(app, map=self._sockets, host=host, port=port,
                                         threads=8, connection_limit=1000, ident="blast-service")
        except OSError as error:
            raise CannotServe(f"cannot listen on {host}:{port}: {error.strerror or error}"
                              + (" (another serve?)" if error.errno == errno.EADDRINUSE
                                 else "")) from None
        self._trigger = trigger(self._sockets)  # runs a function in waitress's own thread
        self._thread: threading.Thread | None = None

    def start(self, on_end: Callable[[], None]) -> None:
        def run() -> None:
            try:
                self._server.run()
            finally:
                on_end()

        self._thread = threading.Thread(target=run, name="http", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Close the listening socket and every connection from inside waitress's loop (the
        only thread that may touch them), which then ends; give requests running in its
        threads a few seconds more."""
        from waitress import wasyncore

        self._trigger.pull_trigger(lambda: wasyncore.close_all(self._sockets, ignore_all=True))
        if self._thread is not None:
            self._thread.join(timeout)
        self._server.task_dispatcher.shutdown()


def serve(service: BlastService, host: str, port: int, workers: int, stop: StopSignals) -> int:
    """Serve until SIGINT or SIGTERM, then stop the HTTP server, the clean-ups and the
    workers, in that order. Returns the signal's number; 0 if the HTTP server ended by itself."""
    settings = service.settings
    service.ensure_storage()
    http_server = HttpServer(wsgi_app(lambda: service, settings.api_key,
                                      2 * settings.max_query_bytes), host, port)
    children, service.on_queued = start_workers(workers)
    stop_cleaning = threading.Event()
    clean_up_periodically(service, stop_cleaning)
    http_server.start(on_end=lambda: stop.note(0))
    log.info("serving http://%s:%d%s/ with %d worker(s), databases in %s", host, port,
             dispatch.PREFIX, workers, settings.db_dir)
    try:
        signum = stop.wait()
    finally:
        http_server.stop()
        stop_cleaning.set()
        stop_processes(children)
    if signum:
        log.info("stopped by %s (pid %d)", signal.Signals(signum).name, os.getpid())
    else:
        log.error("the HTTP server ended by itself, so serve stopped too (pid %d)", os.getpid())
    return signum
