"""How a job is shown to clients: the one place that shapes it (the API, the CLI's JSON and
the page read this shape)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from blast_core.api.dispatch import PREFIX
from blast_core.blast import search
from blast_core.domain import jobs
from blast_core.domain.jobs import Job
from blast_core.service.uploads import Upload

# How a client sends an upload's content in one request (Blob storage's Put Blob, up to 5,000
# MiB); a larger one goes as Put Block requests (`&comp=block&blockid=...`, up to 50,000
# blocks of 4,000 MiB) and a Put Block List (`&comp=blocklist`), without this header.
UPLOAD_HEADERS = {"x-ms-blob-type": "BlockBlob"}


# The headers of the results so far (GET .../partial.tsv): batches and queries done, of all,
# and the query numbers covered, as ranges (at most MAX_RANGES_SHOWN, then "...").
PARTIAL_BATCHES, PARTIAL_QUERIES, PARTIAL_COVERED = (
    "Blast-Batches-Done", "Blast-Queries-Done", "Blast-Queries-Covered")
MAX_RANGES_SHOWN = 100


def ranges_text(ranges: list[tuple[int, int]]) -> str:
    """`1-3333,6667-9999`: ranges of numbers, a range of one number as that number."""
    shown = [str(first) if first == last else f"{first}-{last}"
             for first, last in ranges[:MAX_RANGES_SHOWN]]
    return ",".join(shown + (["..."] if len(ranges) > MAX_RANGES_SHOWN else []))


def job_url(base_url: str, job_id: str) -> str:
    return f"{base_url}{PREFIX}/jobs/{job_id}"


def job_view(job: Job, base_url: str = "", database_letters: int | None = None,
             price_per_core_second: float = 0.0, retention_days: float = 0.0) -> dict[str, Any]:
    """The record with the databases searched, batch progress instead of the raw states,
    the formats asked for, where the time went (summed over batches; `total` is submission to
    end), the run summary, when the job expires (null: never), and a URL per result format
    once it has succeeded, and for a job of several batches the URL of its results so far."""
    data = job.to_dict()
    for internal in ("batch_states", "cpu_seconds_blast", "traceparent", "upload_etag"):
        data.pop(internal)
    data["databases"] = job.databases
    expiry = jobs.expires_at(job.id, retention_days)
    data["expires_at"] = jobs.format_time(expiry) if expiry else None
    data["formats"] = {name: state["state"] for name, state in
                       (json.loads(job.formats) if job.formats else {}).items()}
    data["summary"] = run_summary(job, database_letters, price_per_core_second)
    data.update(batches_done=job.batches_done, batches_failed=job.batches_failed)
    timings = {name: round(data.pop(f"seconds_{name}"), 3) for name in jobs.TIMED_PHASES}
    timings["total"] = (round((jobs.parse_time(job.finished_at)
                               - jobs.parse_time(job.submitted_at)).total_seconds(), 3)
                        if job.finished_at else None)
    data["timings"] = timings
    data["results"] = ({name: f"{job_url(base_url, job.id)}/results?format={quote(name)}"
                        for name in search.OUTPUT_FORMATS}
                       if job.status == jobs.SUCCEEDED else {})
    data["partial_results"] = (f"{job_url(base_url, job.id)}/partial.tsv"
                               if job.batches > 1 and job.status != jobs.CANCELLED else None)
    return data


def run_summary(job: Job, database_letters: int | None,
                price_per_core_second: float) -> dict[str, Any]:
    """As ElasticBLAST's run-summary: the work (query and database letters), the CPU time
    BLAST used on it (user + system, summed over batches), the throughput (query letters per
    CPU second, once the job has succeeded), the deliveries it took, and what that CPU time
    costs at `price_per_core_second`."""
    cpu = job.cpu_seconds_blast
    return {
        "query_letters": job.query_letters,
        "database_letters": database_letters,
        "cpu_seconds": round(cpu, 3),
        "letters_per_cpu_second": (round(job.query_letters / cpu, 1)
                                   if job.status == jobs.SUCCEEDED and cpu > 0 else None),
        "attempts": job.attempts,
        "price_per_core_second": price_per_core_second,
        "estimated_cost": round(cpu * price_per_core_second, 6),
    }


def upload_view(upload: Upload) -> dict[str, Any]:
    """An upload link and how to use it."""
    return {"upload_id": upload.id, "url": upload.url, "method": "PUT",
            "headers": UPLOAD_HEADERS, "expires_at": jobs.format_time(upload.expires_at),
            "max_bytes": upload.max_bytes,
            "then": {"query_upload": upload.id}}
