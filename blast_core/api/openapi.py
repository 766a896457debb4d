"""The OpenAPI 3.1 document of the job API, built from the definitions that validate requests
(`job_request.request_schema`, the job id pattern, the output formats) and, each time it is served,
the database catalog."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from blast_core.api.openapi_schemas import SCHEMAS
from blast_core.blast import search
from blast_core.domain import hit_selection, job_request, jobs, tabular
from blast_core.domain.database import DatabaseInfo

MAX_RECENT = 1000
MAX_RESULT_WAIT = 60  # seconds: well inside the 230 s an HTTP function may take


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _problem(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/problem+json": {"schema": _ref("Problem")}}}


def _json(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


_JOB_ID = {"type": "string", "pattern": jobs.JOB_ID_PATTERN}
_KEY_REFUSED = _problem("No valid function key (Azure) or API key (`serve --api-key`).")
_UNAVAILABLE = _problem("A BLAST+ program (blastdbcmd, blast_formatter) failed, so the "
                        "databases may be unavailable right now; or the app's settings are "
                        "wrong (GET /health names them). `Retry-After` says when to try again.")
_EXPIRED = _problem("The job is older than the retention period (BLAST_RETENTION_DAYS, read "
                    "from the job id's time): it and its results are deleted; `expired_at` "
                    "says when it expired.")

_RESULT_SCHEMAS = {"json": {"type": "object", "required": ["BlastOutput2"],
                            "description": "BLAST JSON (-outfmt 15): one report per query.",
                            "properties": {"BlastOutput2": {"type": "array"}}}}
_JOB_ID_PARAMETER = {"name": "job_id", "in": "path", "required": True, "schema": _JOB_ID}


_WAIT_PARAMETER = {
    "name": "wait", "in": "query", "required": False,
    "description": "Seconds to wait for a worker making the result before answering 202 (for "
                   "a client that cannot ask again, such as a download link).",
    "schema": {"type": "integer", "minimum": 0, "maximum": MAX_RESULT_WAIT, "default": 0}}
_RANGE_PARAMETER = {
    "name": "Range", "in": "header", "required": False,
    "description": "One byte range of the stored result (`bytes=0-999`, `bytes=1000-`, "
                   "`bytes=-500`): answered 206 with that part, never compressed. Any other "
                   "value, several ranges among them, is ignored (the whole result, 200).",
    "schema": {"type": "string"}}


def _text_options(database_names: list[str]) -> list[dict[str, Any]]:
    """The query-string options of a text/plain submission; `database` names databases of
    the catalog, one or several separated by white space (as str.split() reads them)."""
    one = "(?:" + "|".join(name.replace(".", r"\.") for name in database_names) + ")"
    names = ({"pattern": rf"^\s*{one}(?:\s+{one})*\s*$"} if database_names else {"not": {}})
    return [
        {"name": "database", "in": "query", "required": False,
         "description": "With a text/plain FASTA body: the job's `database`; several names "
                        "separated by spaces are searched together.",
         "schema": {"type": "string", **names}},
        *({"name": name, "in": "query", "required": False,
           "description": f"With a text/plain FASTA body: the job's `{name}`.",
           "schema": {k: v for k, v in job_request.JOB_REQUEST_SCHEMA["properties"][name].items()
                      if k != "description"}}
          for name in ("program", "task", "evalue", "max_target_seqs", "word_size", "filter"))]


def _submit_operation(database_names: list[str]) -> dict[str, Any]:
    return {
        "operationId": "submit_job", "summary": "Submit a BLAST job",
        "description": "A JSON job request, or a text/plain FASTA body with the job's other "
                       "fields in the query string (beside a JSON body, the query string "
                       "holds no option).",
        "parameters": _text_options(database_names),
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": _ref("JobRequest")},
            "text/plain": {"schema": {"type": "string", "minLength": 1, "format": "fasta",
                                      "description": "FASTA text"}}}},
        "responses": {
            "202": {**_json("Queued; `Location` names the job.", "Job"),
                    "headers": {"Location": {"schema": {"type": "string"}}}},
            "400": _problem("The request is invalid; `errors` says which field and why."),
            "401": _KEY_REFUSED,
            "404": _problem("Nothing was uploaded as the `query_upload` named."),
            "409": _problem("The `query_upload` is a job's query already."),
            "410": _problem("The `query_upload` is past its time."),
            "413": _problem("The body is larger than the request size limit (twice "
                            "BLAST_MAX_QUERY_BYTES)."),
            "415": _problem("The body is neither JSON nor text."),
            "503": _UNAVAILABLE,
        },
    }


# The paths; POST /jobs is added per request, with the catalog's database names.
PATHS: dict[str, Any] = {
    "/jobs": {
        "get": {
            "operationId": "list_jobs", "summary": "The most recent jobs, newest first",
            "parameters": [{"name": "limit", "in": "query", "required": False,
                            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_RECENT,
                                       "default": 20}}],
            "responses": {"200": _json("Recent jobs.", "JobList"),
                          "400": _problem("`limit` is not a whole number from 1 to 1000."),
                          "401": _KEY_REFUSED},
        },
    },
    "/jobs/{job_id}": {
        "get": {
            "operationId": "get_job", "summary": "One job", "parameters": [_JOB_ID_PARAMETER],
            "responses": {"200": _json("The job.", "Job"),
                          "400": _problem("Not a job id."),
                          "401": _KEY_REFUSED,
                          "404": _problem("No such job."),
                          "410": _EXPIRED},
        },
        "delete": {
            "operationId": "cancel_job", "summary": "Cancel a queued or running job",
            "description": "The job turns `cancelled` at once: no pending batch of it runs, and "
                           "a running BLAST is stopped within BLAST_CANCEL_CHECK_SECONDS. Its "
                           "query and partial results are deleted.",
            "parameters": [_JOB_ID_PARAMETER],
            "responses": {"200": _json("The cancelled job.", "Job"),
                          "400": _problem("Not a job id."),
                          "401": _KEY_REFUSED,
                          "404": _problem("No such job."),
                          "409": _problem("The job has already ended; `job_status` says how."),
                          "410": _EXPIRED},
        },
    },
    "/jobs/{job_id}/results": {
        "get": {
            "operationId": "get_result", "summary": "A finished job's result",
            "parameters": [
                _JOB_ID_PARAMETER,
                {"name": "format", "in": "query", "required": False,
                 "schema": {"type": "string", "enum": list(search.OUTPUT_FORMATS),
                            "default": "tsv"}},
                {"name": "columns", "in": "query", "required": False,
                 "description": "With `format=tsv`: the columns of the table, in order, "
                                "separated by commas or spaces; each one of BLAST+'s `-outfmt "
                                "6` specifiers (their meanings: `x-columns`). Default: "
                                f"{' '.join(tabular.DEFAULT_COLUMNS)}. Each set of columns "
                                "is made once and kept; a job may have "
                                f"{tabular.MAX_COLUMN_SETS} sets other than the default.",
                 "schema": {"type": "string", "pattern": tabular.COLUMNS_PATTERN},
                 "x-columns": tabular.COLUMNS,
                 "example": "qseqid sseqid pident length evalue bitscore qcovs stitle"},
                _WAIT_PARAMETER,
                _RANGE_PARAMETER,
                {"name": "redirect", "in": "query", "required": False,
                 "description": "`true` (also `1` or `yes`, in any case): answer 302 to a "
                                "read-only, expiring Blob storage link; any other value: the "
                                "result itself.",
                 "schema": {"type": "string"}},
            ],
            "responses": {
                "206": {"description": "The byte range asked for (`Content-Range`).",
                        "headers": {"Content-Range": {"schema": {"type": "string"}}}},
                "416": _problem("A `Range` with no byte in the result; `Content-Range` is "
                                "`bytes */SIZE`."),
                "200": {"description": "The result in the asked format; gzip-compressed as it "
                                       "streams (`Content-Encoding: gzip`) when "
                                       "`Accept-Encoding` accepts gzip.", "content": {
                    fmt.content_type.split(";")[0]: {"schema": _RESULT_SCHEMAS.get(
                        fmt.name, {"type": "string"})}
                    for fmt in search.OUTPUT_FORMATS.values()}},
                "202": {**_json("A worker is making it; ask again after `Retry-After`.",
                                "ResultPending"),
                        "headers": {"Retry-After": {"schema": {"type": "string"}}}},
                "302": {"description": "A read-only link to the result in Blob storage: asked "
                                       "for with `redirect`, or the result is larger than "
                                       "BLAST_MAX_INLINE_RESULT_BYTES.",
                        "headers": {"Location": {"schema": {"type": "string"}}}},
                "400": _problem("Not a job id, an unknown format, a column that is not one "
                                "of `columns`' or is named twice, more column sets than a job "
                                "may have, or a bad `wait`."),
                "401": _KEY_REFUSED,
                "404": _problem("No such job."),
                "409": _problem("The job has not succeeded (yet); `job_status` is its status."),
                "410": _EXPIRED,
                "503": _UNAVAILABLE,
            },
        },
    },
    "/jobs/{job_id}/hits.fasta": {
        "get": {
            "operationId": "get_hit_sequences", "summary": "The sequences of a job's hits",
            "description": "From the job's databases (`blastdbcmd`), or its own subject "
                           "sequences: every subject hit by one query, or the subjects named; "
                           "whole, or the region of each alignment on the subject's plus "
                           "strand with `flank` letters either side. Made by a worker, as a "
                           "result is.",
            "parameters": [
                _JOB_ID_PARAMETER,
                {"name": "query", "in": "query", "required": False,
                 "description": "A query's id, as the first column of the tsv result writes "
                                "it: all its hits. Give `query` or `subjects`.",
                 "schema": {"type": "string", "pattern": r"^[!-~]{1,200}$"}},
                {"name": "subjects", "in": "query", "required": False,
                 "description": "Subject ids, as the second column of the tsv result writes "
                                f"them, separated by commas or spaces; at most "
                                f"{hit_selection.MAX_SUBJECTS}.",
                 "schema": {"type": "string", "pattern": r"^[ ,]*[!-+\--~]{1,200}"
                                                          r"(?:[ ,]+[!-+\--~]{1,200})*[ ,]*$"}},
                {"name": "region", "in": "query", "required": False,
                 "schema": {"type": "string", "enum": [hit_selection.WHOLE,
                                                       hit_selection.ALIGNED],
                            "default": hit_selection.WHOLE}},
                {"name": "flank", "in": "query", "required": False,
                 "description": "With `region=aligned`: letters either side of each region.",
                 "schema": {"type": "integer", "minimum": 0,
                            "maximum": hit_selection.MAX_FLANK, "default": 0}},
                _WAIT_PARAMETER,
                _RANGE_PARAMETER,
            ],
            "responses": {
                "200": {"description": "FASTA, as blastdbcmd writes it (a region's header "
                                       "starts `:FROM-TO `).",
                        "content": {"text/x-fasta": {"schema": {"type": "string"}}}},
                "202": {**_json("A worker is making it; ask again after `Retry-After`.",
                                "ResultPending"),
                        "headers": {"Retry-After": {"schema": {"type": "string"}}}},
                "206": {"description": "The byte range asked for (`Content-Range`)."},
                "302": {"description": "A read-only link, for a FASTA larger than "
                                       "BLAST_MAX_INLINE_RESULT_BYTES.",
                        "headers": {"Location": {"schema": {"type": "string"}}}},
                "400": _problem("Not a job id; neither or both of `query` and `subjects`; "
                                "a bad id, `region`, `flank` or `wait`; more selections than "
                                "a job may have."),
                "401": _KEY_REFUSED,
                "404": _problem("No such job, or an id that is not among the job's hits "
                                "(`errors` names it)."),
                "409": _problem("The job has not succeeded (yet); `job_status` is its status."),
                "410": _EXPIRED,
                "416": _problem("A `Range` with no byte in the FASTA."),
                "503": _UNAVAILABLE,
            },
        },
    },
    "/jobs/{job_id}/partial.tsv": {
        "get": {
            "operationId": "get_partial_results", "summary": "A job's results so far",
            "description": "For a job of several batches, while it runs or after it failed: "
                           "the default tsv of the batches searched so far, in query order. "
                           "`Blast-Batches-Done` and `Blast-Queries-Done` say how many of all "
                           "(`done/all`), `Blast-Queries-Covered` which query numbers (ranges "
                           "such as `1-3333,6667-9999`).",
            "parameters": [_JOB_ID_PARAMETER],
            "responses": {
                "200": {"description": "The hits so far (gzip-compressed when accepted).",
                        "content": {"text/tab-separated-values": {"schema": {"type": "string"}}},
                        "headers": {name: {"schema": {"type": "string"}} for name in (
                            "Blast-Batches-Done", "Blast-Queries-Done",
                            "Blast-Queries-Covered")}},
                "400": _problem("Not a job id."),
                "401": _KEY_REFUSED,
                "404": _problem("No such job."),
                "409": _problem("A job of one batch: its results come whole."),
                "410": _EXPIRED,
            },
        },
    },
    "/uploads": {
        "post": {"operationId": "new_upload", "summary": "Upload a query set of any size",
                 "description": "A write-only link to one blob in Blob storage, valid for "
                                "BLAST_UPLOAD_LINK_MINUTES: PUT the FASTA there, then submit "
                                "a job with `query_upload` set to `upload_id`.",
                 "responses": {"201": _json("Where to PUT the query.", "Upload"),
                               "401": _KEY_REFUSED}},
    },
    "/databases": {
        "get": {"operationId": "list_databases", "summary": "The searchable databases",
                "responses": {"200": _json("Databases.", "DatabaseList"), "401": _KEY_REFUSED,
                              "503": _UNAVAILABLE}},
    },
    "/stats": {
        "get": {"operationId": "get_stats", "summary": "Queue health and recent jobs",
                "responses": {"200": _json("Queue depth, dead letters, jobs by status, "
                                           "end-to-end times and BLAST throughput.", "Stats"),
                              "401": _KEY_REFUSED}},
    },
    "/health": {
        "get": {"operationId": "health", "summary": "Liveness", "security": [],
                "responses": {"200": _json("Up, or degraded and saying why.", "Health")}},
    },
}


def document(server_url: str, databases: Sequence[DatabaseInfo]) -> dict[str, Any]:
    """The OpenAPI document, with `server_url` (…/api) as its server and the `databases` of
    the catalog as the names a job may search."""
    names = [d.name for d in databases if job_request.is_database_name(d.name)]
    paths = {**PATHS, "/jobs": {"post": _submit_operation(names), **PATHS["/jobs"]}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "BLAST search service", "version": "1.0.0",
                 "description": "Submit BLAST jobs, follow them, fetch their results."},
        "servers": [{"url": server_url}],
        "paths": _unavailable_when_misconfigured(paths),
        "components": {
            "schemas": {"JobRequest": job_request.request_schema(databases), **SCHEMAS},
            "securitySchemes": {
                "functionKey": {"type": "apiKey", "in": "header", "name": "x-functions-key"},
                "functionKeyQuery": {"type": "apiKey", "in": "query", "name": "code"}},
        },
        "security": [{"functionKey": []}, {"functionKeyQuery": []}],
    }


def _unavailable_when_misconfigured(paths: dict[str, Any]) -> dict[str, Any]:
    """Every operation but health answers 503 while the app's settings are wrong."""
    return {path: {method: operation if operation["operationId"] == "health" else
                   {**operation, "responses": {"503": _UNAVAILABLE, **operation["responses"]}}
                   for method, operation in item.items()}
            for path, item in paths.items()}
