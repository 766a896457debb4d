"""The job API's handlers and the route table: written once, registered as functions by
`function_app.py` and dispatched by `serve`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from blast_core.api import compression, openapi, views
from blast_core.api.dispatch import PREFIX, ApiError, ApiRequest, ApiResponse, Route, json_response
from blast_core.api.ncbi import NCBI_ROUTES
from blast_core.api.web import WEB_ROUTES
from blast_core.blast import search
from blast_core.blast.programs import ToolError
from blast_core.domain import byte_ranges, client_input, hit_selection, job_request, jobs, tabular
from blast_core.domain.client_input import FieldError, InvalidRequest
from blast_core.domain.jobs import Job
from blast_core.service.core import BlastService
from blast_core.service.results import ResultBody, ResultLink
from blast_core.settings import Settings, SettingsError


def health(service: BlastService | None, request: ApiRequest) -> ApiResponse:
    """Always 200 while the app runs (the platform's health check restarts instances that
    fail it, which would not fix a setting): `status` is `ok`, or `degraded` with the
    `problems` found, such as wrong settings or databases that cannot be listed."""
    if service is None:
        try:
            Settings.from_env()
            problems = ["the service could not start; the log says why"]
        except SettingsError as error:
            problems = error.problems
        return json_response(200, {"status": "degraded", "problems": problems})
    try:
        databases: int | None = len(service.databases())
        problems = []
    except ToolError as error:
        databases, problems = None, [f"the databases cannot be listed: {error}"]
    return json_response(200, {"status": "degraded" if problems else "ok",
                               "problems": problems, "queue": service.settings.queue_transport,
                               "databases": databases})


def submit_job(service: BlastService, request: ApiRequest) -> ApiResponse:
    job = service.submit(_submission(request, service.settings.max_request_bytes))
    url = views.job_url(request.base_url, job.id)
    return json_response(202, job_view(job, request, service), {"Location": url})


def _submission(request: ApiRequest, max_bytes: int) -> object:
    """The job request: a JSON object, or FASTA text with the options in the query string.

    The body's size is checked before anything reads it: `serve` refuses a long one by its
    Content-Length, but under the Functions host the body arrives whole, whatever its size."""
    if len(request.body) > max_bytes:
        raise ApiError(413, f"the request body is {len(request.body)} bytes; the limit is "
                            f"{max_bytes}",
                       [FieldError("body", f"is {len(request.body)} bytes; the limit is "
                                           f"{max_bytes}")])
    if not request.body.strip():
        raise ApiError(400, "the request body is empty", [FieldError("body", "is empty")])
    try:
        text = request.body.decode()
    except UnicodeDecodeError:
        raise ApiError(400, "the request body is not UTF-8 text",
                       [FieldError("body", "is not UTF-8 text")]) from None
    options = {name: value for name, value in request.params.items() if name != "code"}
    content_type = request.header("content-type").split(";")[0].strip().lower()
    if content_type == "application/json" or (not content_type and text.lstrip()[:1] in "{["):
        if options:  # ignoring them would run a search other than the one asked for
            raise InvalidRequest([FieldError(name, "goes in the JSON body, not the query "
                                                   "string") for name in sorted(options)])
        return client_input.read_json(text)
    if content_type and not content_type.startswith("text/"):
        raise ApiError(415, f"unsupported content type {content_type!r}; send "
                            "application/json or text/plain FASTA",
                       [FieldError("body", "must be application/json or text/plain")])
    if "query" in options:  # the body is the query; this one would be dropped unread
        raise InvalidRequest([FieldError("query", "is the body of a text/plain submission, "
                                                  "not a query-string option")])
    payload: dict[str, object] = {
        name: client_input.number_from_text(value) if name in job_request.NUMERIC_FIELDS else value
        for name, value in options.items()}
    names = str(payload.get("database", "")).split()
    if names:  # ?database=A%20B: several, as NCBI's DATABASE names them
        payload["database"] = names[0] if len(names) == 1 else names
    payload["query"] = text
    return payload


def new_upload(service: BlastService, request: ApiRequest) -> ApiResponse:
    """Where to PUT a query set of any size: then submit a job with its `query_upload`."""
    return json_response(201, views.upload_view(service.new_upload()))


def get_job(service: BlastService, request: ApiRequest) -> ApiResponse:
    job = service.get(_job_id(request))
    return json_response(200, job_view(job, request, service))


def cancel_job(service: BlastService, request: ApiRequest) -> ApiResponse:
    job = service.cancel(_job_id(request))
    return json_response(200, job_view(job, request, service))


def list_jobs(service: BlastService, request: ApiRequest) -> ApiResponse:
    limit = client_input.number_from_text(request.params.get("limit", "20"))
    if not client_input.is_whole_number(limit) or not 1 <= limit <= openapi.MAX_RECENT:
        reason = f"must be a whole number from 1 to {openapi.MAX_RECENT}"
        raise ApiError(400, f"limit {reason}", [FieldError("limit", reason)])
    recent = service.recent(int(limit))
    return json_response(200, {"jobs": [job_view(j, request, service)
                                        for j in recent]})


def get_result(service: BlastService, request: ApiRequest) -> ApiResponse:
    job_id = _job_id(request)

    def asked() -> ResultBody | ResultLink:
        key = result_key(request.params.get("format", tabular.TSV), request.params.get("columns"))
        if request.params.get("redirect", "").lower() in ("1", "true", "yes"):
            return ResultLink(service.result_link(job_id, key))
        return service.result(job_id, key, _wait(request),
                              byte_ranges.parse(request.header("range")))

    return _send_result(asked, request)


def get_hit_sequences(service: BlastService, request: ApiRequest) -> ApiResponse:
    """The FASTA of a job's hits: all those of a query, or the subjects named."""
    job_id = _job_id(request)
    return _send_result(lambda: service.hit_sequences(
        job_id, hit_selection.parse_selection(request.params), _wait(request),
        byte_ranges.parse(request.header("range"))), request)


def get_partial_results(service: BlastService, request: ApiRequest) -> ApiResponse:
    """The hits of the batches searched so far, as tsv, with the queries they cover."""
    partial = service.partial_table(_job_id(request))
    job = partial.job
    headers = {"Content-Type": search.output_format(tabular.TSV).content_type,
               "Content-Disposition": f'inline; filename="{job.id}.partial.tsv"',
               "Vary": "Accept-Encoding",
               views.PARTIAL_BATCHES: f"{partial.batches_done}/{job.batches}",
               views.PARTIAL_QUERIES: f"{partial.queries_done}/{job.queries}",
               views.PARTIAL_COVERED: views.ranges_text(partial.covered)}
    if compression.accepts_gzip(request.header("accept-encoding")):
        return ApiResponse(200, compression.gzipped(partial.chunks, compression.level_for(
            headers["Content-Type"])), {**headers, "Content-Encoding": "gzip"})
    return ApiResponse(200, partial.chunks, headers)


def _send_result(asked: Callable[[], ResultBody | ResultLink],
                 request: ApiRequest) -> ApiResponse:
    """A result, a link to it (asked for, or the result is too large to pass through this
    function), or why the request is refused: what it names (columns, ids, a set beyond a
    job's bound) or its range."""
    try:
        result = asked()
    except hit_selection.UnknownHits as error:
        raise ApiError(404, str(error), error.errors) from None
    except InvalidRequest as error:
        raise ApiError(400, str(error), error.errors) from None
    except byte_ranges.RangeNotSatisfiable as error:
        raise ApiError(416, f"Range: {error}", [FieldError("Range", str(error))],
                       {"Content-Range": f"bytes */{error.size}"}) from None
    if isinstance(result, ResultLink):
        return ApiResponse(302, b"", {"Location": result.url})
    return _result_response(result, request.header("accept-encoding"))


def _result_response(result: ResultBody, accept_encoding: str) -> ApiResponse:
    """The part asked for (206), or the whole, gzip-compressed as it streams when the client
    accepts it (a range is of the stored bytes, so it is never compressed)."""
    headers = {"Content-Type": result.content_type, "Accept-Ranges": "bytes",
               "Content-Disposition": f'inline; filename="{result.filename}"',
               "Vary": "Accept-Encoding"}
    if result.span is not None:
        return ApiResponse(206, result.chunks, {**headers, "Content-Range":
                                                result.span.content_range(),
                                                "Content-Length": str(result.span.length)})
    if compression.accepts_gzip(accept_encoding):
        return ApiResponse(200, compression.gzipped(
            result.chunks, compression.level_for(result.content_type)),
            {**headers, "Content-Encoding": "gzip"})
    length = {} if result.size is None else {"Content-Length": str(result.size)}
    return ApiResponse(200, result.chunks, {**headers, **length})


def result_key(format_name: str, columns: str | None) -> str:
    """The result a request asks for: a format, and for `tsv` the columns it names (a text
    of names separated by commas or spaces), validated here before anything is asked of a
    worker."""
    if format_name not in search.OUTPUT_FORMATS:
        choices = ", ".join(search.OUTPUT_FORMATS)
        raise ApiError(400, f"format must be one of {choices}",
                       [FieldError("format", f"must be one of {choices}")])
    if columns is None:
        return format_name
    if format_name != tabular.TSV:
        reason = f"only the tsv format has columns, not {format_name}"
        raise ApiError(400, f"columns: {reason}", [FieldError("columns", reason)])
    return tabular.result_key(tabular.parse_columns(columns))


def _wait(request: ApiRequest) -> float:
    wait = client_input.number_from_text(request.params.get("wait", "0"))
    if not client_input.is_whole_number(wait) or not 0 <= wait <= openapi.MAX_RESULT_WAIT:
        reason = f"must be a whole number of seconds from 0 to {openapi.MAX_RESULT_WAIT:g}"
        raise ApiError(400, f"wait {reason}", [FieldError("wait", reason)])
    return float(wait)


def openapi_document(service: BlastService, request: ApiRequest) -> ApiResponse:
    return json_response(200, openapi.document(f"{request.base_url}{PREFIX}",
                                               service.databases()))


def list_databases(service: BlastService, request: ApiRequest) -> ApiResponse:
    return json_response(200, {"databases": [d.to_dict() for d in service.databases()],
                               "max_per_search": job_request.MAX_DATABASES})


def get_stats(service: BlastService, request: ApiRequest) -> ApiResponse:
    return json_response(200, service.stats())


def _job_id(request: ApiRequest) -> str:
    job_id = request.route_params.get("job_id", "")
    if not jobs.is_job_id(job_id):
        raise ApiError(400, f"{job_id!r} is not a job id",
                       [FieldError("job_id", "is not a job id (19 lowercase hex digits)")])
    return job_id


def job_view(job: Job, request: ApiRequest, service: BlastService) -> dict[str, Any]:
    settings = service.settings
    return views.job_view(job, request.base_url, service.searched_letters(job),
                          settings.price_per_core_second, settings.retention_days)


ROUTES: tuple[Route, ...] = (
    Route("health", "GET", "health", health, anonymous=True, probe=True),
    Route("submit_job", "POST", "jobs", submit_job),
    Route("new_upload", "POST", "uploads", new_upload),
    Route("list_jobs", "GET", "jobs", list_jobs),
    Route("get_job", "GET", "jobs/{job_id}", get_job),
    Route("cancel_job", "DELETE", "jobs/{job_id}", cancel_job),
    Route("get_result", "GET", "jobs/{job_id}/results", get_result),
    Route("get_hit_sequences", "GET", "jobs/{job_id}/hits.fasta", get_hit_sequences),
    Route("get_partial_results", "GET", "jobs/{job_id}/partial.tsv", get_partial_results),
    Route("list_databases", "GET", "databases", list_databases),
    Route("get_stats", "GET", "stats", get_stats),
    Route("openapi", "GET", "openapi.json", openapi_document, anonymous=True),
    *WEB_ROUTES,
    *NCBI_ROUTES,
)
