"""The OpenAPI document's component schemas: what the API answers (a job, its run summary,
the stats, a problem document); the request's schema is `job_request`'s own."""

from __future__ import annotations

from typing import Any

from blast_core.domain import jobs

_NULLABLE_STRING = {"type": ["string", "null"]}
_JOB_ID = {"type": "string", "pattern": jobs.JOB_ID_PATTERN}
_COUNT = {"type": "integer", "minimum": 0}
_NULLABLE_COUNT = {"type": ["integer", "null"], "minimum": 0}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


SCHEMAS: dict[str, Any] = {
    "Job": {
        "type": "object",
        "required": ["id", "status", "database", "program", "task", "evalue", "max_target_seqs",
                     "queries", "query_letters", "submitted_at", "started_at", "finished_at",
                     "attempts", "hits", "error", "batches", "batches_done", "batches_failed",
                     "queries_done", "timings", "summary", "results", "databases", "expires_at"],
        "properties": {
            "id": _JOB_ID,
            "status": {"type": "string", "enum": list(jobs.STATUSES),
                       "description": "queued (validating before, while a worker checks "
                                      "and splits an uploaded query), running, then "
                                      "succeeded, failed or cancelled (DELETE /jobs/{job_id})."},
            "partial_results": {**_NULLABLE_STRING,
                                "description": "For a job of several batches: the URL of its "
                                               "results so far (GET .../partial.tsv)."},
            "upload_bytes": {"type": "integer",
                             "description": "The size of its uploaded query (query_upload); "
                                            "0: none."},
            "upload_checked": {"type": "integer",
                               "description": "Bytes of the upload checked and split so far "
                                              "(while validating)."},
            "database": {"type": "string",
                         "description": "The database searched, or several separated by "
                                        "spaces, as BLAST's -db takes them."},
            "databases": {"type": "array", "items": {"type": "string"},
                          "description": "The databases searched, together as one."},
            "expires_at": {**_NULLABLE_STRING,
                           "description": "When the job and its results are deleted "
                                          "(BLAST_RETENTION_DAYS after submission); null: "
                                          "kept forever."},
            "program": {"type": "string"},
            "task": {"type": "string"}, "evalue": {"type": "number"},
            "max_target_seqs": {"type": "integer"}, "queries": {"type": "integer"},
            "query_letters": {"type": "integer"}, "submitted_at": {"type": "string"},
            "started_at": _NULLABLE_STRING, "finished_at": _NULLABLE_STRING,
            "attempts": {"type": "integer"}, "hits": {"type": ["integer", "null"]},
            "error": _NULLABLE_STRING,
            "word_size": {"type": ["integer", "null"]}, "filter": _NULLABLE_STRING,
            "batches": {"type": "integer", "description": "Batches the queries were split into."},
            "batches_done": {"type": "integer"}, "batches_failed": {"type": "integer"},
            "queries_done": {"type": "integer", "description": "Queries of finished batches."},
            "timings": {
                "type": "object", "required": ["total", *jobs.TIMED_PHASES],
                "description": "Seconds, summed over batches: waiting in the queue, staging the "
                               "database, BLAST itself, moving queries and archives to and "
                               "from Blob storage, formatting results; total: submission to "
                               "end (null until then).",
                "properties": {"total": {"type": ["number", "null"]},
                               **{name: {"type": "number"} for name in jobs.TIMED_PHASES}}},
            "subjects": {"type": "integer",
                         "description": "Subject sequences searched instead of a database "
                                        "(`database` is then \"\"), or 0."},
            "subject_letters": {"type": "integer"},
            "formats": {"type": "object",
                        "additionalProperties": {"type": "string", "enum": [
                            jobs.FORMAT_QUEUED, jobs.FORMAT_READY, jobs.FORMAT_FAILED,
                            jobs.FORMAT_REFUSED]},
                        "description": "The results asked for so far and where each stands (a "
                                       "worker makes each when it is first asked for): formats "
                                       "by name, column sets as `tsv:<columns>`, hit sequences "
                                       "as `fasta-<selection>`, which are `refused` when their "
                                       "ids are not the job's hits."},
            "results": {"type": "object", "additionalProperties": {"type": "string"},
                        "description": "A URL per result format, once the job has succeeded."},
            "summary": _ref("RunSummary"),
        },
    },
    "RunSummary": {
        "type": "object",
        "description": "What the job's search took: query letters, database letters (from the "
                       "catalog; null if it is not listed), CPU seconds of BLAST (user + system, "
                       "summed over batches), query letters per CPU second (null until the job "
                       "has succeeded), deliveries over all batches, and the estimated cost: "
                       "CPU seconds times BLAST_PRICE_PER_CORE_SECOND.",
        "required": ["query_letters", "database_letters", "cpu_seconds",
                     "letters_per_cpu_second", "attempts", "price_per_core_second",
                     "estimated_cost"],
        "properties": {
            "query_letters": {"type": "integer"},
            "database_letters": {"type": ["integer", "null"]},
            "cpu_seconds": {"type": "number"},
            "letters_per_cpu_second": {"type": ["number", "null"]},
            "attempts": {"type": "integer"},
            "price_per_core_second": {"type": "number"},
            "estimated_cost": {"type": "number"},
        },
    },
    "JobList": {"type": "object", "required": ["jobs"],
                "properties": {"jobs": {"type": "array", "items": _ref("Job")}}},
    "Database": {
        "type": "object", "required": ["name", "title", "molecule", "sequences", "letters"],
        "properties": {"name": {"type": "string"}, "title": {"type": "string"},
                       "molecule": {"type": "string", "enum": ["nucleotide", "protein"]},
                       "sequences": {"type": "integer"}, "letters": {"type": "integer"}},
    },
    "DatabaseList": {
        "type": "object", "required": ["databases", "max_per_search"],
        "description": "The databases; a job's `database` may name up to `max_per_search` of "
                       "them of one molecule type, searched together.",
        "properties": {"databases": {"type": "array", "items": _ref("Database")},
                       "max_per_search": {"type": "integer", "minimum": 1}}},
    "Upload": {
        "type": "object",
        "required": ["upload_id", "url", "method", "headers", "expires_at", "max_bytes", "then"],
        "properties": {
            "upload_id": _JOB_ID,
            "url": {"type": "string", "description": "A write-only link (SAS) to one block "
                                                     "blob: PUT the FASTA there, whole or in "
                                                     "blocks (Put Block, Put Block List)."},
            "method": {"type": "string", "enum": ["PUT"]},
            "headers": {"type": "object", "additionalProperties": {"type": "string"},
                        "description": "Headers of a PUT of the whole file (Put Blob)."},
            "expires_at": {"type": "string", "description": "When the link stops working."},
            "max_bytes": {"type": "integer", "description": "The largest upload a job takes."},
            "then": {"type": "object", "description": "What to add to the job request.",
                     "properties": {"query_upload": _JOB_ID}},
        },
    },
    "Health": {"type": "object", "required": ["status", "problems"],
               "description": "Always 200 while the app runs: `degraded` with the `problems` "
                              "found (wrong settings, databases that cannot be listed).",
               "properties": {"status": {"type": "string", "enum": ["ok", "degraded"]},
                              "problems": {"type": "array", "items": {"type": "string"}},
                              "queue": {"type": "string"},
                              "databases": {"type": ["integer", "null"]}}},
    "ResultPending": {
        "type": "object", "required": ["status", "job_id", "format", "retry_after"],
        "description": "A worker is making the result in this format (the first request for "
                       "a format asks for it); ask again after `Retry-After` seconds.",
        "properties": {"status": {"type": "string", "enum": ["making"]},
                       "job_id": _JOB_ID, "format": {"type": "string"},
                       "retry_after": {"type": "integer"},
                       "last_error": {**_NULLABLE_STRING,
                                      "description": "Why the last attempt to make it failed."}}},
    "Stats": {
        "type": "object",
        "required": ["generated_at", "queue", "jobs", "end_to_end", "throughput"],
        "properties": {
            "generated_at": {"type": "string"},
            "queue": {
                "type": "object",
                "description": "The job queue, read through the transport at most every 10 s "
                               "(`age_seconds`): messages waiting (`depth`; Storage Queue: "
                               "approximate, counting messages being worked on) and in the "
                               "dead-letter or poison queue. Null, with `error`, when they "
                               "cannot be read.",
                "required": ["transport", "name", "depth", "dead_letters", "error",
                             "age_seconds"],
                "properties": {"transport": {"type": "string"}, "name": {"type": "string"},
                               "depth": _NULLABLE_COUNT, "dead_letters": _NULLABLE_COUNT,
                               "error": _NULLABLE_STRING, "age_seconds": {"type": "number"}}},
            "jobs": {
                "type": "object", "required": ["last_hour", "last_day", "complete"],
                "description": "Jobs submitted in the last hour and day, by status; "
                               "`complete` is false when the day held more jobs than were read.",
                "properties": {"last_hour": _ref("StatusCounts"),
                               "last_day": _ref("StatusCounts"),
                               "complete": {"type": "boolean"}}},
            "end_to_end": {
                "type": "object", "required": ["jobs", "median_seconds", "p95_seconds"],
                "description": "Submission to end of the finished jobs among the newest 100.",
                "properties": {"jobs": _COUNT, "median_seconds": {"type": ["number", "null"]},
                               "p95_seconds": {"type": ["number", "null"]}}},
            "throughput": {
                "type": "object",
                "required": ["jobs", "query_letters", "cpu_seconds", "letters_per_cpu_second"],
                "description": "BLAST's work over the succeeded jobs among the newest 100: "
                               "query letters per CPU second of BLAST.",
                "properties": {"jobs": _COUNT, "query_letters": _COUNT,
                               "cpu_seconds": {"type": "number"},
                               "letters_per_cpu_second": {"type": ["number", "null"]}}},
        },
    },
    "StatusCounts": {
        "type": "object", "required": [*jobs.STATUSES, "total"],
        "properties": {name: _COUNT for name in (*jobs.STATUSES, "total")}},
    "Problem": {
        "type": "object", "required": ["type", "title", "status", "detail"],
        "description": "RFC 9457 problem details; `errors` names each bad field, `job_status` "
                       "is the job's status (409) and `expired_at` when it expired (410).",
        "properties": {
            "type": {"type": "string"}, "title": {"type": "string"},
            "status": {"type": "integer"}, "detail": {"type": "string"},
            "job_status": {"type": "string", "enum": list(jobs.STATUSES)},
            "expired_at": {"type": "string"},
            "errors": {"type": "array", "items": {
                "type": "object", "required": ["field", "reason"],
                "properties": {"field": {"type": "string"}, "reason": {"type": "string"}}}},
        },
    },
}

