"""A client of the job API over HTTP, for the command line: a deployed function app or `serve`."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests

DEFAULT_URL = "http://127.0.0.1:7071"
# As in api/dispatch.py, which is not imported here: it needs the service's packages, which a
# client-only install does not have.
PREFIX = "/api"
PROBLEM_JSON = "application/problem+json"
RESULT_WAIT_SECONDS = 1800.0  # longest wait for a worker to make a result format


class ApiProblem(Exception):
    """The service refused or failed a request; `errors` lists (field, reason) when it said."""

    def __init__(self, status: int, detail: str, errors: list[tuple[str, str]] | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors or []


class Unreachable(Exception):
    """No answer from the service at all."""


def api_base(url: str) -> str:
    """The API root for a service URL given with or without its /api suffix."""
    base = url.strip().rstrip("/")
    return base if base.endswith(PREFIX) else base + PREFIX


@dataclass(frozen=True)
class Download:
    """A result arriving: its bytes, and how many there are when the service says (not for
    a result compressed on the way)."""

    chunks: Iterator[bytes]
    size: int | None


class BlastClient:
    def __init__(self, url: str, api_key: str | None = None, timeout: float = 60.0):
        self.base = api_base(url)
        self.timeout = timeout
        self.session = requests.Session()
        if api_key:
            self.session.headers["x-functions-key"] = api_key

    def submit(self, payload: dict[str, Any]) -> dict[str, Any]:
        return self._request("POST", "jobs", json=payload).json()

    def job(self, job_id: str) -> dict[str, Any]:
        return self._request("GET", f"jobs/{quote(job_id, safe='')}").json()

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._request("DELETE", f"jobs/{quote(job_id, safe='')}").json()

    def recent(self, limit: int) -> list[dict[str, Any]]:
        return self._request("GET", "jobs", params={"limit": limit}).json()["jobs"]

    def stats(self) -> dict[str, Any]:
        return self._request("GET", "stats").json()

    def databases(self) -> list[dict[str, Any]]:
        return self._request("GET", "databases").json()["databases"]

    def result(self, job_id: str, format_name: str, wait: float = RESULT_WAIT_SECONDS,
               waiting: Callable[[float], None] | None = None,
               columns: str | None = None) -> Download:
        """The result's bytes as they arrive, for results too large to hold in memory (with
        `columns`, a tsv result's columns), gzip-compressed on the way when the service does
        so. While a worker makes the format (202), ask again as `Retry-After` says, for up to
        `wait` seconds, telling `waiting` how long it has waited so far."""
        params = {"format": format_name, **({"columns": columns} if columns else {})}
        return self._download(f"jobs/{quote(job_id, safe='')}/results", params,
                              f"the {format_name} result of job {job_id}", wait, waiting)

    def hit_sequences(self, job_id: str, selection: dict[str, str],
                      wait: float = RESULT_WAIT_SECONDS,
                      waiting: Callable[[float], None] | None = None) -> Download:
        """The FASTA of a job's hits that `selection` asks for (`query` or `subjects`,
        `region`, `flank`), as `result` downloads a result."""
        return self._download(f"jobs/{quote(job_id, safe='')}/hits.fasta", selection,
                              f"the hit sequences of job {job_id}", wait, waiting)

    def _download(self, path: str, params: dict[str, str], what: str, wait: float,
                  waiting: Callable[[float], None] | None) -> Download:
        started = time.monotonic()
        while True:
            response = self._request("GET", path, params=params, stream=True)
            if response.status_code != 202:
                break
            waited = time.monotonic() - started
            if waited > wait:
                raise Unreachable(f"{what} was still being made after {wait:g} s; ask again "
                                  "later")
            if waiting:
                waiting(waited)
            time.sleep(min(float(response.headers.get("Retry-After") or 2), 30))

        def chunks() -> Iterator[bytes]:
            try:
                yield from response.iter_content(chunk_size=1 << 16)
            except requests.RequestException as error:
                raise Unreachable(f"the result stopped arriving: {error}") from None

        compressed = "Content-Encoding" in response.headers
        length = response.headers.get("Content-Length", "")
        return Download(chunks(), int(length) if length.isdigit() and not compressed else None)

    def _request(self, method: str, path: str, **options: Any) -> requests.Response:
        url = f"{self.base}/{path}"
        try:
            response = self.session.request(method, url, timeout=self.timeout, **options)
        except requests.ConnectionError:
            raise Unreachable(f"no answer from {url}: cannot connect") from None
        except requests.Timeout:
            raise Unreachable(f"no answer from {url} within {self.timeout:g} s") from None
        except requests.RequestException as error:
            raise Unreachable(f"no answer from {url}: {type(error).__name__}") from None
        if response.status_code >= 400:
            raise _problem(response)
        return response


def _problem(response: requests.Response) -> ApiProblem:
    """The service's problem document, or what can be said without one (a proxy's page)."""
    if response.headers.get("Content-Type", "").startswith(PROBLEM_JSON):
        try:
            body = response.json()
            return ApiProblem(response.status_code, str(body.get("detail", response.reason)),
                              [(str(e.get("field")), str(e.get("reason")))
                               for e in body.get("errors", [])])
        except (ValueError, AttributeError):
            pass
    text = " ".join(response.text.split())[:300]
    return ApiProblem(response.status_code, f"{response.reason}" + (f": {text}" if text else ""))
