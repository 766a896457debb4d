"""NCBI's BLAST Common URL API (`Blast.cgi`): the part its clients speak, over this service's jobs.

`CMD=Put` submits a job and answers its id as the RID; `CMD=Get&FORMAT_OBJECT=SearchInfo` tells
the job's status; `CMD=Get` returns the result in `FORMAT_TYPE` once ready, and the WAITING
block until then; `CMD=Delete` cancels a search that has not ended (its RID is then UNKNOWN,
as NCBI's are after a Delete). Answers are NCBI's `QBlastInfo` blocks. A refused request gets an NCBI-style
error (`<div class="error msInf">`) naming each bad parameter, with a 4xx status, and stores
nothing. Parameters outside PUT_PARAMETERS / GET_PARAMETERS are refused rather than ignored, so
that no search runs with options other than the ones asked for.
"""

from __future__ import annotations

import contextlib
import html
import re
from collections.abc import Iterator, Mapping
from urllib.parse import parse_qsl

from blast_core.api.dispatch import ApiRequest, ApiResponse, Route
from blast_core.domain import client_input, jobs, tabular
from blast_core.domain.client_input import InvalidRequest
from blast_core.domain.jobs import Job
from blast_core.service.core import BlastService
from blast_core.service.errors import JobExpired, JobFinished, JobNotFound, ResultPending
from blast_core.service.results import ResultLink

HTML = "text/html; charset=utf-8"

# Put: URL API parameter -> job field. MEGABLAST picks blastn's task; FILTER maps to `filter`.
# SUBJECTS is NCBI's web form's (BLAST_SPEC=blast2seq), not its URL API's: the sequences to
# align the queries with instead of a DATABASE.
_JOB_FIELDS = {"QUERY": "query", "DATABASE": "database", "SUBJECTS": "subject",
               "PROGRAM": "program", "EXPECT": "evalue", "HITLIST_SIZE": "max_target_seqs",
               "WORD_SIZE": "word_size", "FILTER": "filter", "MEGABLAST": "task"}
_PARAMETER_NAMES = {field: name for name, field in _JOB_FIELDS.items()}
# Accepted and without effect: who is asking (tool, email), the function key (code), and
# ENTREZ_QUERY only when empty or "(none)", as Biopython sends it.
PUT_PARAMETERS = frozenset({"CMD", *_JOB_FIELDS, "ENTREZ_QUERY", "TOOL", "EMAIL", "CODE"})
# Accepted and without effect: DESCRIPTIONS, ALIGNMENTS and NCBI_GI shape NCBI's HTML report;
# every hit the search kept (HITLIST_SIZE) is in each result here. COLUMNS is this service's
# own: the columns of a tabular result (`domain/tabular.py`), which NCBI's API cannot choose.
GET_PARAMETERS = frozenset({"CMD", "RID", "FORMAT_OBJECT", "FORMAT_TYPE", "ALIGNMENT_VIEW",
                            "COLUMNS", "DESCRIPTIONS", "ALIGNMENTS", "NCBI_GI", "TOOL", "EMAIL",
                            "CODE"})
DELETE_PARAMETERS = frozenset({"CMD", "RID", "TOOL", "EMAIL", "CODE"})

_ON = frozenset({"on", "yes", "true", "t", "1"})
_OFF = frozenset({"off", "no", "false", "f", "0", ""})
# FILTER: F disables, T or L enables the low-complexity filter (DUST for blastn, SEG
# otherwise); an "m" prefix (mask at lookup only) is BLAST+'s own default masking for blastn.
_FILTERS = {"F": "no", "T": "yes", "L": "yes", "MT": "yes", "ML": "yes"}
# FORMAT_TYPE -> output format. NCBI's XML2 and JSON2 are zip archives of one file per query;
# here they are the single-file forms (XML2_S, JSON2_S), which are also accepted.
_FORMAT_TYPES = {"XML": "xml", "XML2": "xml2", "XML2_S": "xml2", "JSON2": "json",
                 "JSON2_S": "json", "TEXT": "text", "TABULAR": "tsv"}
_STATUSES = {jobs.VALIDATING: "WAITING", jobs.QUEUED: "WAITING", jobs.RUNNING: "WAITING",
             jobs.SUCCEEDED: "READY", jobs.FAILED: "FAILED", jobs.CANCELLED: "UNKNOWN"}
_ACCESSION = re.compile(r"^[A-Za-z]{0,6}_?\d+(\.\d+)?$")
_LETTER_PAIRS_PER_SECOND = 1e11  # megablast, warm cache, as measured here: for RTOE only


class Refusal(Exception):
    """A request this API refuses: its HTTP status, the message naming each bad parameter,
    and the status to put in a QBlastInfo block when the RID is at fault."""

    def __init__(self, status: int, message: str, search_status: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.search_status = search_status


def blast_cgi(service: BlastService, request: ApiRequest) -> ApiResponse:
    """GET or POST /api/blast.cgi (and /api/blast): CMD=Put, Get or Delete."""
    try:
        params = _parameters(request, service.settings.max_request_bytes)
        command = params.get("CMD", "").strip().lower()
        if command == "put":
            return _put(service, params)
        if command == "get":
            return _get(service, params)
        if command == "delete":
            return _delete(service, params)
        raise Refusal(400, "CMD is required: Put, Get or Delete" if not command else
                      f"CMD: {_shown(params['CMD'])} is not supported; use Put, Get or Delete")
    except Refusal as refusal:
        return _error_page(refusal)


def _parameters(request: ApiRequest, max_bytes: int) -> dict[str, str]:
    """The query string and a form body together, names upper-cased (NCBI's are); the body's
    size is checked before it is read (under the Functions host it arrives whole)."""
    params = {name.upper(): value for name, value in request.params.items()}
    if len(request.body) > max_bytes:
        raise Refusal(413, f"the request body is {len(request.body)} bytes; the limit is "
                           f"{max_bytes}")
    if request.body.strip():
        content_type = request.header("content-type").split(";")[0].strip().lower()
        if content_type not in ("", "application/x-www-form-urlencoded"):
            raise Refusal(415, f"a {content_type} body is not read here; send the parameters "
                               "as application/x-www-form-urlencoded or in the query string")
        try:
            text = request.body.decode()
        except UnicodeDecodeError:
            raise Refusal(400, "the request body is not UTF-8 text") from None
        params.update((name.upper(), value)
                      for name, value in parse_qsl(text, keep_blank_values=True))
    return params


def _check_names(params: Mapping[str, str], allowed: frozenset[str], command: str) -> None:
    unknown = sorted(set(params) - allowed)
    if unknown:
        supported = ", ".join(sorted(allowed - {"CODE"}))
        hint = " (FORMAT_TYPE goes with CMD=Get here)" if "FORMAT_TYPE" in unknown else ""
        raise Refusal(400, f"not supported with CMD={command}: {', '.join(unknown)}{hint}; the "
                           f"supported parameters are {supported}")


# Put


def _put(service: BlastService, params: dict[str, str]) -> ApiResponse:
    _check_names(params, PUT_PARAMETERS, "Put")
    payload, errors = _payload(params)
    try:
        if not errors:
            return _submitted(service, service.submit(payload))
        service.validate(payload)  # the request's own faults, beside this API's
    except InvalidRequest as error:
        named = {name for name, _ in errors}
        errors += [(name, e.reason) for e in error.errors
                   if (name := _PARAMETER_NAMES.get(e.field, e.field.upper())) not in named]
    raise Refusal(400, "the search request is invalid: " +
                  "; ".join(f"{name}: {reason}" for name, reason in errors))


def _submitted(service: BlastService, job: Job) -> ApiResponse:
    """The RID and RTOE block; RTOE is a rough guess from the query and database sizes."""
    letter_pairs = job.query_letters * (service.searched_letters(job) or 0)
    rtoe = 1 + int(letter_pairs / _LETTER_PAIRS_PER_SECOND)
    return ApiResponse(200, _info_block(f"RID = {job.id}", f"RTOE = {rtoe}").encode(),
                       {"Content-Type": HTML})


def _payload(params: dict[str, str]) -> tuple[dict[str, object], list[tuple[str, str]]]:
    """The job request that a Put describes, and what in it cannot be one."""
    errors: list[tuple[str, str]] = []
    payload: dict[str, object] = {}
    query = params.get("QUERY", "").strip()
    if _ACCESSION.match(query):
        errors.append(("QUERY", f"{query!r} looks like an accession or GI; they are not looked "
                                "up here: send the sequence itself (FASTA or bare letters)"))
    elif query:
        payload["query"] = params["QUERY"]
    names = params.get("DATABASE", "").split()
    if names:  # NCBI's DATABASE names several databases separated by spaces
        payload["database"] = names[0] if len(names) == 1 else names
    if params.get("SUBJECTS", "").strip():
        payload["subject"] = params["SUBJECTS"]
    program = params.get("PROGRAM", "").strip().lower()
    if program:
        payload["program"] = program
    else:
        errors.append(("PROGRAM", "is required"))
    megablast = params.get("MEGABLAST", "").strip().lower()
    if megablast not in _ON | _OFF:
        errors.append(("MEGABLAST", f"must be on or off, not {_shown(params['MEGABLAST'])}"))
    elif program == "blastn":
        payload["task"] = "megablast" if megablast in _ON else "blastn"
    elif megablast in _ON:
        errors.append(("MEGABLAST", "applies to PROGRAM=blastn only"))
    for name, field in (("EXPECT", "evalue"), ("HITLIST_SIZE", "max_target_seqs"),
                        ("WORD_SIZE", "word_size")):
        if name in params:
            payload[field] = client_input.number_from_text(params[name])
    if "FILTER" in params:
        value = params["FILTER"].strip()
        if value.upper() in _FILTERS:
            payload["filter"] = _FILTERS[value.upper()]
        else:
            errors.append(("FILTER", f"must be F (off), T or L (on), or mT or mL, not {_shown(value)}"))
    if params.get("ENTREZ_QUERY", "").strip() not in ("", "(none)"):
        errors.append(("ENTREZ_QUERY", "Entrez filters are not supported here; leave it out"))
    return payload, errors


# Get


def _get(service: BlastService, params: dict[str, str]) -> ApiResponse:
    _check_names(params, GET_PARAMETERS, "Get")
    rid = _rid(params)
    if _wants_search_info(params.get("FORMAT_OBJECT", "")):
        job = _job(service, rid)
        status = _STATUSES[job.status]
        blocks = _info_block(f"Status={status}")
        if status == "READY":
            blocks += _info_block(f"ThereAreHits={'yes' if job.hits else 'no'}")
        return ApiResponse(200, blocks.encode(), {"Content-Type": HTML})
    key = _result_key(params)
    job = _job(service, rid)
    if job.status == jobs.FAILED:
        raise Refusal(409, f"search {rid} failed: {job.error}", search_status="FAILED")
    if job.status == jobs.CANCELLED:
        raise Refusal(409, f"search {rid} was deleted before it ended", search_status="UNKNOWN")
    if job.status != jobs.SUCCEEDED:
        return _waiting()
    try:
        result = service.result(rid, key)
    except ResultPending:  # a worker is making this format: clients poll on, as for a search
        return _waiting()
    except InvalidRequest as error:  # more sets of columns than one job may have made
        raise Refusal(400, f"COLUMNS: {error.errors[0].reason}") from None
    if isinstance(result, ResultLink):
        return ApiResponse(302, b"", {"Location": result.url})
    return ApiResponse(200, result.chunks, {"Content-Type": result.content_type})


def _waiting() -> ApiResponse:
    return ApiResponse(200, _info_block("Status=WAITING").encode(), {"Content-Type": HTML})


def _rid(params: Mapping[str, str]) -> str:
    rid = params.get("RID", "").strip()
    if not jobs.is_job_id(rid):
        raise Refusal(400, "RID is required" if not rid else
                      f"RID: {_shown(rid)} is not a RID of this service", search_status="UNKNOWN")
    return rid


def _job(service: BlastService, rid: str) -> Job:
    with _known_search(rid):
        return service.get(rid)


@contextlib.contextmanager
def _known_search(rid: str) -> Iterator[None]:
    """An unknown or expired RID refused as NCBI does: its status is UNKNOWN."""
    try:
        yield
    except JobNotFound:
        raise Refusal(404, f"no search with RID {rid}", search_status="UNKNOWN") from None
    except JobExpired as expired:
        raise Refusal(410, f"search {rid} expired at {jobs.format_time(expired.expired_at)} "
                           "and was deleted", search_status="UNKNOWN") from None


# Delete


def _delete(service: BlastService, params: dict[str, str]) -> ApiResponse:
    """Cancel the search; one that has ended is refused with its status."""
    _check_names(params, DELETE_PARAMETERS, "Delete")
    rid = _rid(params)
    try:
        with _known_search(rid):
            service.cancel(rid)
    except JobFinished as finished:
        raise Refusal(409, f"search {rid} has ended ({finished.job.status}); only a search "
                           "still waiting can be deleted",
                      search_status=_STATUSES[finished.job.status]) from None
    return ApiResponse(200, _info_block(f"RID = {rid}", "Status=UNKNOWN").encode(),
                       {"Content-Type": HTML})


def _wants_search_info(value: str) -> bool:
    """FORMAT_OBJECT: SearchInfo asks for the status, Alignment (the default) for the result."""
    kind = value.strip().lower()
    if kind not in ("", "alignment", "searchinfo"):
        raise Refusal(400, f"FORMAT_OBJECT: {_shown(value)} is not supported; use SearchInfo or "
                           "Alignment")
    return kind == "searchinfo"


def _result_key(params: Mapping[str, str]) -> str:
    """The result that FORMAT_TYPE, ALIGNMENT_VIEW and COLUMNS ask for (default: Text)."""
    format_name = _result_format(params)
    if "COLUMNS" not in params:
        return format_name
    if format_name != tabular.TSV:
        raise Refusal(400, "COLUMNS goes with ALIGNMENT_VIEW=Tabular")
    try:
        return tabular.result_key(tabular.parse_columns(params["COLUMNS"]))
    except InvalidRequest as error:
        raise Refusal(400, f"COLUMNS: {error.errors[0].reason}") from None


def _result_format(params: Mapping[str, str]) -> str:
    """The output format that FORMAT_TYPE and ALIGNMENT_VIEW ask for (default: Text)."""
    format_type = params.get("FORMAT_TYPE", "").strip().upper() or "TEXT"
    view = params.get("ALIGNMENT_VIEW", "").strip().upper() or "PAIRWISE"
    if view not in ("PAIRWISE", "TABULAR"):
        raise Refusal(400, f"ALIGNMENT_VIEW: {_shown(params['ALIGNMENT_VIEW'])} is not supported; "
                           "use Pairwise or Tabular")
    if view == "TABULAR":
        if format_type not in ("TEXT", "TABULAR"):
            raise Refusal(400, "ALIGNMENT_VIEW: Tabular goes with FORMAT_TYPE=Text")
        return "tsv"
    if format_type not in _FORMAT_TYPES:
        raise Refusal(400, f"FORMAT_TYPE: {_shown(params['FORMAT_TYPE'])} is not supported; use XML, "
                           "XML2, JSON2, Text, or Text with ALIGNMENT_VIEW=Tabular"
                           + (" (HTML reports are not made here)" if format_type == "HTML" else ""))
    return _FORMAT_TYPES[format_type]


def _shown(value: str) -> str:
    """A parameter's value in a message: its start, if it is long."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# Answers


def _info_block(*lines: str) -> str:
    """NCBI's QBlastInfo comment block, four spaces before each line as NCBI writes them."""
    return "<!--QBlastInfoBegin\n" + "".join(f"    {line}\n" for line in lines) + \
        "QBlastInfoEnd\n-->\n"


def _error_page(refusal: Refusal) -> ApiResponse:
    """An NCBI-style error: the message in `<div class="error msInf">`, with the status block
    when the RID is at fault, so that clients reading either find it."""
    body = _info_block(f"Status={refusal.search_status}") if refusal.search_status else ""
    body += f'<div class="error msInf">Error: {html.escape(refusal.message)}</div>\n'
    return ApiResponse(refusal.status, body.encode(), {"Content-Type": HTML})


NCBI_ROUTES: tuple[Route, ...] = (
    Route("ncbi_blast_cgi_get", "GET", "blast.cgi", blast_cgi),
    Route("ncbi_blast_cgi_post", "POST", "blast.cgi", blast_cgi),
    Route("ncbi_blast_get", "GET", "blast", blast_cgi),
    Route("ncbi_blast_post", "POST", "blast", blast_cgi),
)
