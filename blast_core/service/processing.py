"""Working on queue messages: search batches of jobs, several of them in one BLAST run where
they share a search (`domain/coalescing.py`), or have a result format made; record each batch's
outcome once on its own job (`received_batch.py`, `batch_search.py`), and tell the host,
message by message, whether another attempt should follow."""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, NamedTuple

from blast_core import telemetry
from blast_core.domain import coalescing, tuning
from blast_core.domain.messages import Message
from blast_core.service import concurrently, lookup, results, upload_split
from blast_core.service.batch_search import search_group
from blast_core.service.errors import NotTakenOn
from blast_core.service.received_batch import ReceivedBatch, receive

if TYPE_CHECKING:
    from blast_core.service.core import BlastService


class Work(NamedTuple):
    """One delivery to handle: `attempt` counts the message's deliveries, earlier copies
    included, and `last_attempt` says no other follows (the host decides it, `hosts/worker.py`)."""

    message: Message
    attempt: int
    last_attempt: bool = False


Outcome = Exception | None


def handle(service: BlastService, message: Message, attempt: int, last_attempt: bool) -> None:
    """`handle_many` for one delivery, raising its outcome."""
    outcome = handle_many(service, [Work(message, attempt, last_attempt)])[0]
    if outcome is not None:
        raise outcome


def handle_many(service: BlastService, work: Sequence[Work],
                capacity: float = 1.0) -> list[Outcome]:
    """Handle deliveries received together, searching at most `capacity` batches' worth of
    work (`coalescing.plan`); the outcome of each, in order.

    None when the message is done with: the work succeeded or failed for good, or was already
    done (a redelivery). UnknownJob or MalformedMessage when it can never succeed; NotTakenOn
    when it was left for another worker; any other exception when another attempt should
    follow (the last attempt first records the failure, so no job stays open). Reading each
    batch's record and query is traced as `receive batch`, searches as `process batch` (a
    coalesced run in its first batch's trace), formats as `format`, continuing the traces the
    messages carry."""
    invocation_started = time.monotonic()
    outcomes: list[Outcome] = [None] * len(work)
    received: list[ReceivedBatch] = []
    searches = [(index, item) for index, item in enumerate(work) if item.message.searches]
    for (index, _), got in zip(searches, concurrently.each(partial(_receive, service), searches),
                               strict=True):
        if isinstance(got, Exception):
            outcomes[index] = got
        elif got is not None:
            received.append(got)
    runs, left = coalescing.plan([_candidate(service, batch) for batch in received], capacity)
    for position in left:
        outcomes[received[position].index] = NotTakenOn(
            "more work was received at once than one invocation takes on")
    for run in runs:
        group = [received[position] for position in run]
        first = group[0]
        with telemetry.span("process batch", parent=first.work.message.trace,
                            job_id=first.job_id, batch=first.number, attempt=first.work.attempt,
                            coalesced=len(group)):
            for index, outcome in search_group(service, group, invocation_started).items():
                outcomes[index] = outcome
    for index, (message, attempt, last_attempt) in enumerate(work):
        if message.split:
            with telemetry.span("split upload", parent=message.trace, job_id=message.job_id,
                                attempt=attempt):
                try:
                    upload_split.split(service, message.job_id, last_attempt)
                except Exception as error:
                    outcomes[index] = error
        elif message.format is not None:
            with telemetry.span("format", parent=message.trace, job_id=message.job_id,
                                format=message.format, attempt=attempt):
                try:
                    results.make(service, message.job_id, message.format, attempt, last_attempt)
                except Exception as error:
                    outcomes[index] = error
    return outcomes


def _receive(service: BlastService, indexed: tuple[int, Work]) -> ReceivedBatch | Exception | None:
    index, item = indexed
    try:
        with telemetry.span("receive batch", parent=item.message.trace,
                            job_id=item.message.job_id, batch=item.message.batch or 0,
                            attempt=item.attempt):
            return receive(service, index, item)
    except Exception as error:
        return error


def _candidate(service: BlastService, batch: ReceivedBatch) -> coalescing.Candidate:
    job = batch.stored.job
    searched_letters = lookup.searched_letters(service, job) or 0
    return coalescing.Candidate(coalescing.SearchKey.of(job), batch.letters, tuning.batch_letters(
        job.program, job.task, searched_letters, service.settings.threads,
        service.settings.batch_letters))
