"""A client of the job API over HTTP, for the command line: a deployed function app or `serve`."""

from __future__ import annotations

import base64
import os
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
UPLOAD_BLOCK_BYTES = 8 << 20  # a Put Block of Blob storage takes up to 4000 MiB
UPLOAD_TRIES = 3  # per block, on a dropped connection or a storage error of its own (5xx)


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
    a result compressed on the way); `note` says what a partial one covers."""

    chunks: Iterator[bytes]
    size: int | None
    note: str = ""


class BlastClient:
    def __init__(self, url: str, api_key: str | None = None, timeout: float = 60.0):
        self.base = api_base(url)
        self.timeout = timeout
        self.session = requests.Session()
        if api_key:
            self.session.headers["x-functions-key"] = api_key

    def submit(self, payload: dict[str, Any]) -> dict[str, Any]:
        return self._request("POST", "jobs", json=payload).json()

    def upload(self, path: str, sent: Callable[[int], None] | None = None) -> str:
        """Upload a FASTA file of any size straight to Blob storage, block by block (Put
        Block, then Put Block List), telling `sent` the bytes of each block as it goes; the
        upload's id, to submit as `query_upload`. Messages never show the link: its
        signature is a secret."""
        made = self._request("POST", "uploads").json()
        size = os.path.getsize(path)
        if size > made["max_bytes"]:
            raise ApiProblem(413, f"{path} is {size:,} bytes; the service takes uploads of up "
                                  f"to {made['max_bytes']:,}")
        url, blocks = made["url"], []
        with open(path, "rb") as data:
            while block := data.read(UPLOAD_BLOCK_BYTES):
                blocks.append(base64.b64encode(f"{len(blocks):08d}".encode()).decode())
                self._put(f"{url}&comp=block&blockid={quote(blocks[-1], safe='')}", block)
                if sent:
                    sent(len(block))
        listed = "".join(f"<Latest>{block}</Latest>" for block in blocks)
        self._put(f"{url}&comp=blocklist", f'<?xml version="1.0" encoding="utf-8"?>'
                  f"<BlockList>{listed}</BlockList>".encode(),
                  {"Content-Type": "application/xml"})
        return made["upload_id"]

    def _put(self, url: str, body: bytes, headers: dict[str, str] | None = None) -> None:
        """One PUT to Blob storage, tried again on a dropped connection or a 5xx."""
        for attempt in range(1, UPLOAD_TRIES + 1):
            try:
                response = requests.put(url, data=body, headers=headers, timeout=self.timeout)
            except requests.RequestException as error:
                if attempt == UPLOAD_TRIES:
                    raise Unreachable(f"the upload to Blob storage failed: "
                                      f"{type(error).__name__}") from None
                continue
            if response.status_code < 500 or attempt == UPLOAD_TRIES:
                break
        if response.status_code >= 300:
            code = response.headers.get("x-ms-error-code", response.reason)
            raise ApiProblem(response.status_code, f"Blob storage refused the upload: "
                                                   f"{response.status_code} {code}")

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

    def partial(self, job_id: str) -> Download:
        """The tsv of a job's batches searched so far; `note` says how many and which
        queries it covers."""
        response = self._request("GET", f"jobs/{quote(job_id, safe='')}/partial.tsv",
                                 stream=True)
        headers = response.headers
        note = (f"{headers.get('Blast-Queries-Done', '?')} queries "
                f"({headers.get('Blast-Batches-Done', '?')} batches): "
                f"{headers.get('Blast-Queries-Covered') or 'none yet'}")
        return Download(self._chunks(response), None, note)

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

        compressed = "Content-Encoding" in response.headers
        length = response.headers.get("Content-Length", "")
        return Download(self._chunks(response),
                        int(length) if length.isdigit() and not compressed else None)

    @staticmethod
    def _chunks(response: requests.Response) -> Iterator[bytes]:
        try:
            yield from response.iter_content(chunk_size=1 << 16)
        except requests.RequestException as error:
            raise Unreachable(f"the result stopped arriving: {error}") from None

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
