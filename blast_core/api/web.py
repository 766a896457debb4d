"""The web page: a single page served through the route table (so by the function app and by
`serve` alike), and the limits its form checks, read from the definitions the API validates with.

The page's files are plain HTML, CSS and JavaScript in `blast_core/api/web/`; nothing is built or
fetched at run time. The page routes need no key; the page sends the key on its API calls.
"""

from __future__ import annotations

import functools
from dataclasses import asdict
from pathlib import Path

from blast_core.api.dispatch import PREFIX, ApiError, ApiRequest, ApiResponse, Route, json_response
from blast_core.blast import search
from blast_core.domain import fasta, job_request, jobs, tabular
from blast_core.domain.limits import UPLOAD_ABOVE_BYTES
from blast_core.service.core import BlastService

WEB_DIR = Path(__file__).with_name("web")
ASSETS: dict[str, str] = {
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
PAGE_HEADERS: dict[str, str] = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
# The job request's fields the form shows as its own controls; it builds one for each other field.
FORM_FIELDS = ("query", "query_upload", "database", "subject", "program", "task")
OPTION_KEYWORDS = ("type", "enum", "minimum", "exclusiveMinimum", "maximum", "default", "description")


@functools.cache
def _read(name: str) -> bytes:
    return (WEB_DIR / name).read_bytes()


def page(service: BlastService, request: ApiRequest) -> ApiResponse:
    """GET ui: the page, with the API's path prefix filled in; it may connect to its own
    origin, and to Blob storage's, where it uploads a large query."""
    body = _read("index.html").replace(b"{{api}}", PREFIX.encode())
    policy = PAGE_HEADERS["Content-Security-Policy"].replace(
        "connect-src 'self'", f"connect-src 'self' {service.blobs.origin()}")
    return ApiResponse(200, body, {"Content-Type": "text/html; charset=utf-8", **PAGE_HEADERS,
                                   "Content-Security-Policy": policy})


def asset(service: BlastService, request: ApiRequest) -> ApiResponse:
    """GET ui/static/{asset}: one of the page's own files, by an exact name only."""
    name = request.route_params.get("asset", "")
    if name not in ASSETS:
        raise ApiError(404, f"no such file: {name!r}")
    return ApiResponse(200, _read(name), {"Content-Type": ASSETS[name], **PAGE_HEADERS})


def config(service: BlastService, request: ApiRequest) -> ApiResponse:
    """GET ui/config: programs, tasks, the other request fields with their ranges or choices,
    query limits, result formats and job statuses, as the API has them, so that the page
    checks the same before it submits and knows when a job has ended."""
    fields = job_request.JOB_REQUEST_SCHEMA["properties"]
    return json_response(200, {
        "programs": {
            name: {"tasks": list(tasks), "default_task": default_task,
                   "query_molecule": query_molecule, "database_molecule": db_molecule}
            for name, (tasks, default_task, query_molecule, db_molecule)
            in job_request.PROGRAMS.items()},
        "default_program": fields["program"]["default"],
        "options": {name: {k: v for k, v in field.items() if k in OPTION_KEYWORDS}
                    for name, field in fields.items() if name not in FORM_FIELDS},
        "query": asdict(service.query_limits),
        "subject": asdict(service.subject_limits),
        "upload": {"above_bytes": min(UPLOAD_ABOVE_BYTES, service.query_limits.max_bytes),
                   "max_bytes": service.settings.max_upload_bytes},
        "alphabets": {"nucleotide": "".join(sorted(fasta.NUCLEOTIDE_LETTERS)),
                      "protein": "".join(sorted(fasta.PROTEIN_LETTERS))},
        "formats": {name: fmt.extension for name, fmt in search.OUTPUT_FORMATS.items()},
        "columns": [{"name": name, "meaning": tabular.COLUMNS[name],
                     "default": name in tabular.DEFAULT_COLUMNS}
                    for name in dict.fromkeys([*tabular.DEFAULT_COLUMNS, *tabular.COLUMNS])],
        "statuses": {"all": list(jobs.STATUSES), "final": sorted(jobs.FINAL_STATUSES)},
    })


WEB_ROUTES: tuple[Route, ...] = (
    Route("web", "GET", "ui", page, anonymous=True),
    Route("web_asset", "GET", "ui/static/{asset}", asset, anonymous=True),
    Route("web_config", "GET", "ui/config", config),
)
