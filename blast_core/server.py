"""`serve`: the HTTP API on a local port (a WSGI app on waitress) plus worker processes.

The routes are those of `blast_core.routes`, the same the function app registers."""

from __future__ import annotations

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

from blast_core import http
from blast_core.process import die_with_parent, stop_processes
from blast_core.routes import ROUTES
from blast_core.service import BlastService

log = logging.getLogger("blast_core.server")

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
             api_key: str, max_body: int) -> http.ApiResponse:
    path = environ.get("PATH_INFO", "")
    if not path.startswith(http.PREFIX + "/"):
        return http.problem(404, f"no such endpoint: {path}; the API is under {http.PREFIX}/")
    found = http.match(ROUTES, environ["REQUEST_METHOD"], path[len(http.PREFIX) + 1:])
    if isinstance(found, http.ApiResponse):
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
            return http.problem(401, "a valid API key is required (x-functions-key header or "
                                     "code parameter)")
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if length > max_body:
        return http.problem(413, f"the request body is {length} bytes; the limit is {max_body}")
    body = environ["wsgi.input"].read(length) if length else b""
    host = environ.get("HTTP_HOST") or f"{environ['SERVER_NAME']}:{environ['SERVER_PORT']}"
    request = http.ApiRequest(method=route.method, path=path, params=params, headers=headers,
                              body=body, route_params=route_params,
                              base_url=f"{environ['wsgi.url_scheme']}://{host}")
    return http.handle(route, request, service_factory)


def start_workers(count: int) -> tuple[list[subprocess.Popen[bytes]], Callable[[], None]]:
    """Worker processes that die with this one, even when it is killed, and a function that
    wakes the idle ones (each reads the end of a pipe that this process writes to)."""
    workers, wake_ends = [], []
    for _ in range(count):
        read_end, write_end = os.pipe()
        os.set_blocking(write_end, False)
        workers.append(subprocess.Popen(
            [sys.executable, "-m", "blast_core", "worker", "--wake-fd", str(read_end)],
            pass_fds=(read_end,), preexec_fn=die_with_parent))
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


def serve(service: BlastService, host: str, port: int, workers: int) -> None:
    from waitress import serve as waitress_serve

    service.ensure_storage()
    children, service.on_queued = start_workers(workers)
    stop_cleaning = threading.Event()
    clean_up_periodically(service, stop_cleaning)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    settings = service.settings
    log.info("serving http://%s:%d%s/ with %d worker(s), databases in %s", host, port,
             http.PREFIX, workers, settings.db_dir)
    try:
        waitress_serve(wsgi_app(lambda: service, settings.api_key, 2 * settings.max_query_bytes),
                       host=host, port=port, threads=8, connection_limit=1000,
                       ident="blast-service", _quiet=True)
    finally:
        stop_cleaning.set()
        stop_processes(children)
        log.info("stopped (pid %d)", os.getpid())
