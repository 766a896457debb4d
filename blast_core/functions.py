"""Adapters between Azure Functions' types and the core: used only by `function_app.py`."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

import azure.functions as func

from blast_core import http
from blast_core.service import default_service


def api_request(req: func.HttpRequest) -> http.ApiRequest:
    url = urlsplit(req.url)
    path = url.path.split(http.PREFIX + "/", 1)[-1]
    return http.ApiRequest(
        method=req.method.upper(), path=path, params=dict(req.params),
        headers=dict(req.headers), body=req.get_body() or b"",
        route_params=dict(req.route_params), base_url=f"{url.scheme}://{url.netloc}")


def http_response(response: http.ApiResponse) -> func.HttpResponse:
    body = response.body if isinstance(response.body, bytes) else b"".join(response.body)
    content_type = response.headers.get("Content-Type", "")
    return func.HttpResponse(body, status_code=response.status, headers=response.headers,
                             mimetype=content_type.split(";")[0] or None)


def http_function(route: http.Route) -> Callable[[func.HttpRequest], func.HttpResponse]:
    """A Functions handler for one route of the API."""

    def handler(req: func.HttpRequest) -> func.HttpResponse:
        return http_response(http.handle(route, api_request(req), default_service))

    handler.__name__ = route.name
    return handler


CLEANUP_SCHEDULE = "0 17 * * * *"  # NCRONTAB: hourly, at 17 minutes past


def clean_up_expired() -> None:
    """The timer's work: delete the jobs past BLAST_RETENTION_DAYS, their blobs first."""
    default_service().clean_up(limit=100_000)


def process_delivery(body: bytes, delivery_count: int) -> None:
    """The queue trigger's work; an exception makes the host redeliver the message."""
    default_service().process(body, delivery_count)
