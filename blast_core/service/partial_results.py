"""The results so far of a job of several batches, while it runs (and after it failed): the
tables of hits its searched batches stored (`batch_search._keep_table`), in query order, with
the queries they cover. Nothing is formatted here: the tables are read from Blob storage as
they stream, so an HTTP function can answer it, whatever the job's size."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from blast_core.domain import jobs
from blast_core.domain.client_input import FieldError, RequestConflict
from blast_core.domain.jobs import Job
from blast_core.service import lookup, results
from blast_core.storage.ports import batch_table_blob

if TYPE_CHECKING:
    from blast_core.service.core import BlastService


@dataclass(frozen=True)
class PartialTable:
    """The tsv lines of the batches searched so far (`chunks`), and which queries they cover:
    `covered` holds ranges of query numbers, from 1, both ends included."""

    job: Job
    chunks: Iterator[bytes]
    batches_done: int
    queries_done: int
    covered: list[tuple[int, int]]


def partial_table(service: BlastService, job_id: str) -> PartialTable:
    """RequestConflict for a job of one batch (its results come whole) or one submitted
    before batches kept their tables."""
    job = lookup.get(service, job_id)
    counts = results.batch_queries(service, job) if job.batches > 1 else None
    if counts is None:
        why = ("a job of one batch has its results whole once it succeeds" if job.batches <= 1
               else "it was submitted before batches kept results of their own")
        raise RequestConflict([FieldError("job_id", f"job {job_id} has no results so far: {why}")])
    done = [n for n in range(job.batches) if job.batch_state(n) == jobs.BATCH_DONE]
    return PartialTable(job, _tables(service, job_id, done), len(done),
                        sum(counts[n] for n in done), covered(counts, done))


def covered(counts: list[int], done: list[int]) -> list[tuple[int, int]]:
    """The query numbers batches `done` hold (batch n holds `counts[n]` queries), as ranges,
    adjacent ones joined."""
    starts = list(itertools.accumulate([1, *counts]))
    ranges: list[tuple[int, int]] = []
    for number in done:
        first, last = starts[number], starts[number + 1] - 1
        if ranges and ranges[-1][1] + 1 == first:
            ranges[-1] = (ranges[-1][0], last)
        elif counts[number]:
            ranges.append((first, last))
    return ranges


def _tables(service: BlastService, job_id: str, done: list[int]) -> Iterator[bytes]:
    """The batches' tables one after the other, each streamed; one deleted meanwhile (the job
    cancelled or expired) is left out."""
    for number in done:
        yield from service.blobs.stream(job_id, batch_table_blob(number)) or ()
