"""The HTTP API, written once: `function_app.py` registers each route as a function and
`serve` dispatches to the same routes. Requests and responses here are plain data, so that
neither Azure Functions nor the local server leaks into the handlers."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

from blast_core import jobs, runner
from blast_core.jobs import FieldError, InvalidRequest, Job
from blast_core.process import ToolError
from blast_core.service import BlastService, JobNotFound, ResultNotReady

log = logging.getLogger("blast_core.http")

PREFIX = "/api"
PROBLEM_JSON = "application/problem+json"
MAX_RECENT = 1000


@dataclass
class ApiRequest:
    method: str
    path: str
    params: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    route_params: Mapping[str, str] = field(default_factory=dict)
    base_url: str = ""

    def header(self, name: str) -> str:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), "")


@dataclass
class ApiResponse:
    status: int
    body: bytes | Iterable[bytes] = b""
    headers: dict[str, str] = field(default_factory=dict)


class ApiError(Exception):
    def __init__(self, status: int, detail: str, errors: list[FieldError] | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors or []
        self.headers = headers or {}


def json_response(status: int, data: Any, headers: dict[str, str] | None = None) -> ApiResponse:
    return ApiResponse(status, json.dumps(data, indent=1).encode(),
                       {"Content-Type": "application/json", **(headers or {})})


def problem(status: int, detail: str, errors: list[FieldError] | None = None,
            headers: dict[str, str] | None = None) -> ApiResponse:
    """An RFC 9457 problem document."""
    body: dict[str, Any] = {"type": "about:blank", "title": HTTPStatus(status).phrase,
                            "status": status, "detail": detail}
    if errors:
        body["errors"] = [{"field": e.field, "reason": e.reason} for e in errors]
    return ApiResponse(status, json.dumps(body, indent=1).encode(),
                       {"Content-Type": PROBLEM_JSON, **(headers or {})})


# Handlers

def health(service: BlastService, request: ApiRequest) -> ApiResponse:
    return json_response(200, {"status": "ok", "queue": service.settings.queue_transport,
                               "databases": len(service.databases())})


def submit_job(service: BlastService, request: ApiRequest) -> ApiResponse:
    job = service.submit(_submission(request))
    url = job_url(request.base_url, job.id)
    return json_response(202, job_view(job, request.base_url), {"Location": url})


def _submission(request: ApiRequest) -> object:
    """The job request: a JSON object, or FASTA text with the options in the query string."""
    if not request.body.strip():
        raise ApiError(400, "the request body is empty", [FieldError("body", "is empty")])
    try:
        text = request.body.decode()
    except UnicodeDecodeError:
        raise ApiError(400, "the request body is not UTF-8 text",
                       [FieldError("body", "is not UTF-8 text")]) from None
    content_type = request.header("content-type").split(";")[0].strip().lower()
    if content_type == "application/json" or (not content_type and text.lstrip()[:1] in "{["):
        try:
            return json.loads(text)
        except ValueError as error:
            raise ApiError(400, f"the request body is not valid JSON: {error}",
                           [FieldError("body", f"is not valid JSON: {error}")]) from None
    if content_type and not content_type.startswith("text/"):
        raise ApiError(415, f"unsupported content type {content_type!r}; send "
                            "application/json or text/plain FASTA",
                       [FieldError("body", "must be application/json or text/plain")])
    payload: dict[str, object] = {k: _number_or_text(v) if k in jobs.NUMERIC_FIELDS else v
                                  for k, v in request.params.items() if k != "code"}
    payload["query"] = text
    return payload


def _number_or_text(value: str) -> object:
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def get_job(service: BlastService, request: ApiRequest) -> ApiResponse:
    job = service.get(_job_id(request))
    return json_response(200, job_view(job, request.base_url))


def list_jobs(service: BlastService, request: ApiRequest) -> ApiResponse:
    raw = request.params.get("limit", "20")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_RECENT:
        raise ApiError(400, "limit must be a whole number from 1 to 1000",
                       [FieldError("limit", f"must be a whole number from 1 to {MAX_RECENT}")])
    recent = service.recent(int(raw))
    return json_response(200, {"jobs": [job_view(j, request.base_url) for j in recent]})


def get_result(service: BlastService, request: ApiRequest) -> ApiResponse:
    format_name = request.params.get("format", "tsv")
    if format_name not in runner.OUTPUT_FORMATS:
        choices = ", ".join(runner.OUTPUT_FORMATS)
        raise ApiError(400, f"format must be one of {choices}",
                       [FieldError("format", f"must be one of {choices}")])
    job_id = _job_id(request)
    if request.params.get("redirect", "").lower() in ("1", "true", "yes"):
        return ApiResponse(302, b"", {"Location": service.result_link(job_id, format_name)})
    result = service.result(job_id, format_name)
    return ApiResponse(200, result.chunks, {
        "Content-Type": result.content_type,
        "Content-Disposition": f'inline; filename="{result.filename}"'})


def list_databases(service: BlastService, request: ApiRequest) -> ApiResponse:
    return json_response(200, {"databases": [d.to_dict() for d in service.databases()]})


def _job_id(request: ApiRequest) -> str:
    job_id = request.route_params.get("job_id", "")
    if not jobs.is_job_id(job_id):
        raise ApiError(400, f"{job_id!r} is not a job id",
                       [FieldError("job_id", "is not a job id (19 lowercase hex digits)")])
    return job_id


def job_url(base_url: str, job_id: str) -> str:
    return f"{base_url}{PREFIX}/jobs/{job_id}"


def job_view(job: Job, base_url: str) -> dict[str, Any]:
    view = job.to_dict()
    view["results"] = ({name: f"{job_url(base_url, job.id)}/results?format={quote(name)}"
                        for name in runner.OUTPUT_FORMATS}
                       if job.status == jobs.SUCCEEDED else {})
    return view


# The route table

Handler = Callable[[BlastService, ApiRequest], ApiResponse]


@dataclass(frozen=True)
class Route:
    name: str
    method: str
    template: str
    handler: Handler
    anonymous: bool = False

    @property
    def pattern(self) -> re.Pattern[str]:
        return re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.template) + "$")


ROUTES: tuple[Route, ...] = (
    Route("health", "GET", "health", health, anonymous=True),
    Route("submit_job", "POST", "jobs", submit_job),
    Route("list_jobs", "GET", "jobs", list_jobs),
    Route("get_job", "GET", "jobs/{job_id}", get_job),
    Route("get_result", "GET", "jobs/{job_id}/results", get_result),
    Route("list_databases", "GET", "databases", list_databases),
)


def handle(route: Route, request: ApiRequest,
           service_factory: Callable[[], BlastService]) -> ApiResponse:
    """Run a route's handler and turn every failure into a problem response."""
    try:
        return route.handler(service_factory(), request)
    except ApiError as error:
        return problem(error.status, error.detail, error.errors, error.headers)
    except InvalidRequest as error:
        return problem(400, f"the job request is invalid: {error}", error.errors)
    except JobNotFound as error:
        return problem(404, f"no job with id {error}")
    except ResultNotReady as error:
        return problem(409, f"job {error.job.id} is {error.job.status}; results exist once it "
                            "has succeeded", headers={"Retry-After": "5"})
    except ToolError as error:
        log.error("route %s: %s", route.name, error)
        return problem(503, "the BLAST databases cannot be listed right now")
    except Exception:
        log.exception("route %s failed", route.name)
        return problem(500, "internal error; the service log has the details")


def match(method: str, path: str) -> tuple[Route, dict[str, str]] | ApiResponse:
    """The route for a path under /api (given without the prefix), or a 404/405 problem."""
    allowed = []
    for route in ROUTES:
        found = route.pattern.match(path.strip("/"))
        if found:
            if route.method == method:
                return route, found.groupdict()
            allowed.append(route.method)
    if allowed:
        return problem(405, f"{method} is not allowed here", headers={"Allow": ", ".join(allowed)})
    return problem(404, f"no such endpoint: {PREFIX}/{path.strip('/')}")
