"""One BLAST run over batches received together: each marked running (ETag-conditional),
their queries searched as one multi-query run, the run's archive split back per batch
(`blast/archive.py`), and each batch's archive stored before it is recorded done."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING

from blast_core import telemetry
from blast_core.blast import archive, search
from blast_core.domain import coalescing, jobs, tabular
from blast_core.domain.jobs import BatchTimings, Job
from blast_core.logs import log
from blast_core.service import concurrently
from blast_core.service.errors import BatchStopped, NoTimeLeft, UnknownJob
from blast_core.service.received_batch import (
    ReceivedBatch,
    attempt_failed,
    cancelled,
    cancelled_while_running,
    end_batch,
)
from blast_core.storage.ports import SUBJECT_BLOB, RecordMissing, archive_blob, batch_table_blob

if TYPE_CHECKING:
    from blast_core.service.core import BlastService
    from blast_core.service.processing import Outcome


def search_group(service: BlastService, group: list[ReceivedBatch],
                 invocation_started: float) -> dict[int, Outcome]:
    """Mark the group's batches running, search them in one BLAST run, record each outcome."""
    outcomes: dict[int, Outcome] = {}
    running = []
    for batch, started in zip(group, concurrently.each(partial(_start, service), group), strict=True):
        if started is True:
            batch.log.info("job %s batch %d running, attempt %d%s", batch.job_id, batch.number,
                           batch.work.attempt, f", one of {len(group)} in one BLAST run"
                           if len(group) > 1 else "")
            running.append(batch)
        elif started is False:
            batch.log.info("job %s batch %d already finished; delivery %d ignored",
                           batch.job_id, batch.number, batch.work.attempt)
        else:
            outcomes[batch.index] = started
    if running:
        outcomes.update(_search_running(service, running, invocation_started))
    return outcomes


def _start(service: BlastService, batch: ReceivedBatch) -> bool | Exception:
    """Mark a batch running (ETag-conditional): True, or False when it had finished
    meanwhile, or the error that kept it from starting."""
    try:
        started = service.records.update(batch.job_id, _starting(batch), batch.stored)
    except RecordMissing:
        return UnknownJob(f"no record for job {batch.job_id}")
    except Exception as error:
        return error
    if started is None:
        return False
    batch.stored = started
    return True


def _starting(batch: ReceivedBatch) -> Callable[[Job], Job | None]:
    def start(job: Job) -> Job | None:
        return job.batch_started(batch.number) if job.batch_unfinished(batch.number) else None
    return start


def _search_running(service: BlastService, running: list[ReceivedBatch],
                    invocation_started: float) -> dict[int, Outcome]:
    with tempfile.TemporaryDirectory(prefix=f"blast-{running[0].job_id}-") as workdir:
        try:
            searched = _run(service, running, workdir, invocation_started)
        except search.SearchRejected as error:
            if len(running) > 1:  # one batch's fault must not fail the others
                log.warning("BLAST rejected a run of %d batches (%s); searching each alone",
                            len(running), error)
                outcomes: dict[int, Outcome] = {}
                for batch in running:
                    outcomes.update(_search_running(service, [batch], invocation_started))
                return outcomes
            rejected, number = str(error), running[0].number
            end_batch(service, running[0], lambda job: job.batch_failed(number, rejected))
            return {running[0].index: None}
        except BatchStopped as stopped:
            for batch, spent in zip(running, stopped.timings, strict=True):
                cancelled_while_running(service, batch, spent)
            return {batch.index: None for batch in running}
        except Exception as error:
            return {batch.index: attempt_failed(service, batch, error) for batch in running}
        done = [(batch, *found) for batch, found in zip(running, searched, strict=True)]
        kept = concurrently.each(lambda searched_batch: _keep(service, *searched_batch), done)
        return {batch.index: outcome for batch, outcome in zip(running, kept, strict=True)}


def _run(service: BlastService, running: list[ReceivedBatch], workdir: str,
         invocation_started: float) -> list[tuple[str, int, BatchTimings]]:
    """Search the batches in one BLAST run and split its archive per batch: for each, its
    archive's path, hit count and timings. BLAST may run for what the invocation has left
    before the function timeout (less the time to store results), and at most
    BLAST_TIME_LIMIT. The run's BLAST CPU time is shared out by query letters."""
    job = running[0].stored.job
    traced = {"job_id": job.id, "batch": running[0].number, "program": job.program,
              "database": job.database}
    telemetry.annotate(**traced)
    clock = time.monotonic()
    with telemetry.span("staging", **traced):
        databases, subject = _target(service, job, workdir)
    staging = time.monotonic() - clock
    search_seconds = service.settings.limits.search_seconds(time.monotonic() - invocation_started)
    if search_seconds is None:
        raise NoTimeLeft(f"staging and download took {staging:.0f} s or more, leaving too "
                         "little of this invocation for BLAST")
    query_path = os.path.join(workdir, "query.fasta")
    with open(query_path, "w") as query:
        query.writelines(batch.query for batch in running)
    queries = sum(batch.queries for batch in running)
    stop = search.StopCheck(lambda: all(cancelled(service, b.job_id) for b in running),
                            service.settings.cancel_check_seconds)
    letters = [batch.letters for batch in running]

    def timings(blast_seconds: float, cpu_seconds: float) -> list[BatchTimings]:
        now = time.time()
        return [BatchTimings(now - blast_seconds - staging - jobs.parse_time(
            batch.stored.job.submitted_at).timestamp(), staging, blast_seconds,
            batch.fetch_seconds, cpu) for batch, cpu in zip(
                running, coalescing.apportion(cpu_seconds, letters), strict=True)]

    with telemetry.span("blast", queries=queries, batches=len(running), **traced):
        try:
            found = search.run_search(job, service.tools, query_path, databases, workdir,
                                      queries, stop, search_seconds, subject)
        except search.SearchCancelled as stopped:
            raise BatchStopped(timings(stopped.blast_seconds, stopped.cpu_seconds)) from None
        telemetry.annotate(hits=found.hits, cpu_seconds=found.cpu_seconds)
    if len(running) == 1:
        paths, hits = [found.archive], [found.hits]
    else:
        with open(found.archive) as combined:
            parts = archive.split_archive(combined.read(), [b.queries for b in running])
        paths, hits = [], []
        for batch, part in zip(running, parts, strict=True):
            paths.append(os.path.join(workdir, f"{batch.job_id}-{batch.number}.asn"))
            with open(paths[-1], "w") as out:
                out.write(part)
            hits.append(search.count_archive_hits(part))
    return list(zip(paths, hits, timings(found.blast_seconds, found.cpu_seconds), strict=True))


def _target(service: BlastService, job: Job, workdir: str) -> tuple[list[str], str | None]:
    """What the run searches: the job's databases, staged on this instance, or its subject
    sequences, downloaded (the batches of one run share a search key, so one job's)."""
    if not job.searches_subject:
        return [service.catalog.local_path(name) for name in job.databases], None
    subject = os.path.join(workdir, SUBJECT_BLOB)
    service.blobs.download(job.id, SUBJECT_BLOB, subject)
    return [], subject


def _keep(service: BlastService, batch: ReceivedBatch, path: str, hits: int,
          timings: BatchTimings) -> Outcome:
    """Store a searched batch's archive, then record the batch done (results before status)."""
    number = batch.number
    try:
        clock = time.monotonic()
        with telemetry.span("upload", job_id=batch.job_id, batch=number):
            service.blobs.put_file(batch.job_id, archive_blob(number), path,
                                   search.ARCHIVE.content_type)
        timings = replace(timings, transfer=timings.transfer + time.monotonic() - clock)
        if batch.stored.job.batches > 1:
            timings = _keep_table(service, batch, path, timings)
        batch.log.info("job %s batch %d searched: %d queries, %d hits, BLAST %.2f s (%.2f CPU s)",
                       batch.job_id, number, batch.queries, hits, timings.blast,
                       timings.blast_cpu)
        end_batch(service, batch,
                   lambda job: job.batch_finished(number, batch.queries, hits, timings))
    except Exception as error:
        return attempt_failed(service, batch, error)
    return None


def _keep_table(service: BlastService, batch: ReceivedBatch, archive_path: str,
                timings: BatchTimings) -> BatchTimings:
    """Store the batch's hits as the default tsv, for the results so far of a job of several
    batches (ElasticBLAST writes a result file per batch) and its merged tsv."""
    clock = time.monotonic()
    table = f"{archive_path}.tsv"
    with telemetry.span("format", job_id=batch.job_id, batch=batch.number, format=tabular.TSV):
        search.format_archive(service.tools, archive_path, search.output_format(tabular.TSV),
                              service.settings.db_dir, table)
        service.blobs.put_file(batch.job_id, batch_table_blob(batch.number), table,
                               search.output_format(tabular.TSV).content_type)
    return replace(timings, formatting=timings.formatting + time.monotonic() - clock)
