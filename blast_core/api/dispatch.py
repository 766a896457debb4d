"""HTTP as plain data: requests, responses, problem documents, routes and their dispatch.

Neither Azure Functions nor the local server leaks in here; `hosts/azure_functions.py` and
`hosts/serve.py` adapt their own types to these."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from blast_core.blast.programs import ToolError
from blast_core.domain.client_input import FieldError, InvalidRequest
from blast_core.domain.jobs import CANCELLED, FAILED, format_time
from blast_core.service.core import BlastService
from blast_core.service.errors import JobExpired, JobFinished, JobNotFound, ResultNotReady, ResultPending
from blast_core.service.results import RESULT_RETRY_AFTER
from blast_core.settings import SettingsError

log = logging.getLogger("blast_core.api.dispatch")

PREFIX = "/api"
PROBLEM_JSON = "application/problem+json"


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
            headers: dict[str, str] | None = None, **extensions: str) -> ApiResponse:
    """An RFC 9457 problem document; `extensions` are members of its own (`expired_at`)."""
    body: dict[str, Any] = {"type": "about:blank", "title": HTTPStatus(status).phrase,
                            "status": status, "detail": detail, **extensions}
    if errors:
        body["errors"] = [{"field": e.field, "reason": e.reason} for e in errors]
    return ApiResponse(status, json.dumps(body, indent=1).encode(),
                       {"Content-Type": PROBLEM_JSON, **(headers or {})})


# Routes

Handler = Callable[[BlastService, ApiRequest], ApiResponse]


@dataclass(frozen=True)
class Route:
    """`probe`: the route answers even when the settings are wrong, its handler then given
    no service (health says what is wrong)."""

    name: str
    method: str
    template: str
    handler: Handler
    anonymous: bool = False
    probe: bool = False

    @property
    def pattern(self) -> re.Pattern[str]:
        """The template as a regex: `{name}` matches one path segment, the rest literally."""
        parts = re.split(r"\{(\w+)\}", self.template)
        regex = "".join(re.escape(part) if index % 2 == 0 else f"(?P<{part}>[^/]+)"
                        for index, part in enumerate(parts))
        return re.compile(f"^{regex}$")


def handle(route: Route, request: ApiRequest,
           service_factory: Callable[[], BlastService]) -> ApiResponse:
    """Run a route's handler and turn every failure into a problem response."""
    try:
        try:
            service = service_factory()
        except SettingsError as error:
            if route.probe:
                return route.handler(None, request)
            log.error("route %s: the settings are wrong: %s", route.name, error)
            return problem(503, f"the service's settings are wrong: {error}; an operator must "
                                "fix the app settings (GET /api/health lists them)",
                           headers={"Retry-After": "60"})
        return route.handler(service, request)
    except ApiError as error:
        return problem(error.status, error.detail, error.errors, error.headers)
    except InvalidRequest as error:
        return problem(error.status, f"{error.summary}: {error}", error.errors)
    except JobNotFound as error:
        return problem(404, f"no job with id {error}")
    except JobExpired as error:
        expired_at = format_time(error.expired_at)
        return problem(410, f"job {error.job_id} expired at {expired_at}: past the retention "
                            "period, a job is deleted with its results", expired_at=expired_at)
    except JobFinished as error:
        return problem(409, f"job {error.job.id} is {error.job.status}; only queued and "
                            "running jobs can be cancelled",
                       job_status=error.job.status)
    except ResultPending as error:
        body = {"status": "making", "job_id": error.job.id, "format": error.format_name,
                "retry_after": RESULT_RETRY_AFTER, "last_error": error.last_error}
        return json_response(202, body, {"Retry-After": str(RESULT_RETRY_AFTER)})
    except ResultNotReady as error:
        if error.job.status in (CANCELLED, FAILED):
            return problem(409, f"job {error.job.id} is {error.job.status}; it has no results",
                           job_status=error.job.status)
        return problem(409, f"job {error.job.id} is {error.job.status}; results exist once it "
                            "has succeeded", headers={"Retry-After": "5"},
                       job_status=error.job.status)
    except ToolError as error:
        log.error("route %s: %s", route.name, error)
        return problem(503, f"{error.program} failed; the databases may be unavailable right "
                            "now (the service log has the details)", headers={"Retry-After": "30"})
    except Exception:
        log.exception("route %s failed", route.name)
        return problem(500, "internal error; the service log has the details")


def match(routes: tuple[Route, ...], method: str,
          path: str) -> tuple[Route, dict[str, str]] | ApiResponse:
    """The route for a path under /api (given without the prefix), or a 404/405 problem."""
    allowed = []
    for route in routes:
        found = route.pattern.match(path.strip("/"))
        if found:
            if route.method == method:
                return route, found.groupdict()
            allowed.append(route.method)
    if allowed:
        return problem(405, f"{method} is not allowed here", headers={"Allow": ", ".join(allowed)})
    return problem(404, f"no such endpoint: {PREFIX}/{path.strip('/')}")
