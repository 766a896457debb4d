"""The queue messages, encoded and decoded here only: one per batch of a job to search, and one
per result format to make. Pure logic, no I/O.

A message may be delivered more than once, and a worker that must retry later sends a copy
scheduled for later (Service Bus cannot delay an abandoned message), so a message carries the
deliveries of its earlier copies in `attempts`: the attempt a delivery makes is `attempts` plus
the transport's own delivery count.

A small job's query travels inside its message (`query`, at most INLINE_QUERY_BYTES of FASTA),
which spares a Blob upload at submit and a download in the worker.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from blast_core.domain.limits import BATCH_TRIGGER_SHARE, INLINE_QUERY_BYTES

# The two lanes, each a queue with a trigger of its own, so that a quick search never waits
# behind bulk work: a job of at most BLAST_INTERACTIVE_LETTERS query letters is interactive.
INTERACTIVE, BULK = "interactive", "bulk"
LANES = (INTERACTIVE, BULK)


def lane_for(query_letters: int, interactive_letters: int, batch_letters: int) -> str:
    """Interactive for a job of at most BLAST_INTERACTIVE_LETTERS, and small enough for the
    lane's batch trigger, which must finish within the queue's lock (`limits.py`)."""
    small = min(interactive_letters, BATCH_TRIGGER_SHARE * batch_letters)
    return INTERACTIVE if query_letters <= small else BULK


_JOB_ID = re.compile(r"^[0-9a-f]{19}$")
# A format's name, a tabular result's key naming its columns (`tabular.result_key`), or hit
# sequences' naming their selection (`hit_selection.HitSelection.digest`).
_FORMAT = re.compile(r"^[a-z0-9]{1,12}(?::[a-z,]{1,1000}|-[0-9a-f]{16})?$")
_TRACE_ENTRIES = 8  # traceparent and tracestate, with room to spare
_TRACE_VALUE_CHARS = 512  # W3C tracestate: at most 32 entries, but a sender's are short


class MalformedMessage(ValueError):
    """A queue message this service cannot read: it can never succeed."""


@dataclass(frozen=True)
class Message:
    """Work for a worker: search batch `batch` of job `job_id` (its FASTA in `query`, or in
    Blob storage when None), make its result in `format`, or (`split`) check its uploaded
    query and split it into batches; `trace` is the W3C trace context of the submit the work
    continues; `lane` the queue it travels in."""

    job_id: str
    batch: int | None = None
    format: str | None = None
    attempts: int = 0
    trace: Mapping[str, str] = field(default_factory=dict)
    query: str | None = None
    lane: str = INTERACTIVE
    split: bool = False

    @property
    def searches(self) -> bool:
        """It asks for a batch to be searched."""
        return self.format is None and not self.split

    @property
    def first_id(self) -> str:
        """The message id of the first send. Service Bus duplicate detection drops a second
        send of it within its window: a submit whose send was retried queues the batch once."""
        if self.split:
            return f"{self.job_id}-split"
        if self.format is None:
            return f"{self.job_id}-{self.batch}"
        name, _, columns = self.format.partition(":")
        if columns:  # a Service Bus message id has at most 128 characters
            name += "-" + hashlib.sha256(columns.encode()).hexdigest()[:16]
        return f"{self.job_id}-format-{name}"

    def resend_id(self) -> str:
        """A fresh id for a deliberate resend (a retry scheduled for later, a requeue): under
        the first id, duplicate detection would accept the send and drop the message."""
        return f"{self.first_id}-{secrets.token_hex(4)}"

    def retried(self, attempt: int) -> Message:
        """The copy to send when attempt number `attempt` failed and another may follow."""
        return replace(self, attempts=attempt)

    def encode(self) -> str:
        data: dict[str, Any] = {"job_id": self.job_id}
        if self.split:
            data["split"] = True
        elif self.format is None:
            data["batch"] = self.batch
        else:
            data["format"] = self.format
        if self.lane != INTERACTIVE:
            data["lane"] = self.lane
        if self.query is not None:
            data["query"] = self.query
        if self.attempts:
            data["attempts"] = self.attempts
        if self.trace:
            data["trace"] = dict(self.trace)
        return json.dumps(data)


def batch_message(job_id: str, batch: int, trace: Mapping[str, str] | None = None,
                  query: str | None = None, lane: str = INTERACTIVE) -> Message:
    return Message(job_id, batch=batch, trace=dict(trace or {}), query=query, lane=lane)


def format_message(job_id: str, format_name: str, trace: Mapping[str, str] | None = None,
                   lane: str = INTERACTIVE) -> Message:
    return Message(job_id, format=format_name, trace=dict(trace or {}), lane=lane)


def split_message(job_id: str, trace: Mapping[str, str] | None = None) -> Message:
    """Check and split a job's uploaded query: bulk work, in the lane whose trigger takes one
    message at a time and keeps its lock renewed."""
    return Message(job_id, split=True, trace=dict(trace or {}), lane=BULK)


def decode(body: bytes | str) -> Message:
    """The message a queue body carries; MalformedMessage when it is not one of ours."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise MalformedMessage("message body is not JSON") from None
    if not isinstance(data, dict):
        raise MalformedMessage("message body is not a JSON object")
    job_id = data.get("job_id")
    if not isinstance(job_id, str) or not _JOB_ID.match(job_id):
        raise MalformedMessage("message has no valid job_id")
    attempts = data.get("attempts", 0)
    if not _natural(attempts):
        raise MalformedMessage("message has no valid attempts count")
    trace = _trace(data.get("trace"))
    lane = data.get("lane", INTERACTIVE)
    if lane not in LANES:
        raise MalformedMessage("message has no valid lane")
    if "split" in data:
        if data["split"] is not True or "batch" in data or "format" in data:
            raise MalformedMessage("message has no valid split")
        return Message(job_id, split=True, attempts=attempts, trace=trace, lane=lane)
    if "format" in data:
        name = data["format"]
        if not isinstance(name, str) or not _FORMAT.match(name) or "batch" in data:
            raise MalformedMessage("message has no valid format")
        return Message(job_id, format=name, attempts=attempts, trace=trace, lane=lane)
    batch = data.get("batch", 0)
    if not _natural(batch):
        raise MalformedMessage("message has no valid batch number")
    query = data.get("query")
    if query is not None and (not isinstance(query, str)
                              or len(query.encode("utf-8", "replace")) > INLINE_QUERY_BYTES):
        raise MalformedMessage("message has no valid query")
    return Message(job_id, batch=batch, attempts=attempts, trace=trace, query=query, lane=lane)


def _natural(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _trace(carrier: object) -> dict[str, str]:
    """The trace context carrier; empty unless it is a small dict of short strings (tracing
    never refuses a message)."""
    if (not isinstance(carrier, dict) or len(carrier) > _TRACE_ENTRIES or not all(
            isinstance(key, str) and isinstance(value, str) and len(key) <= 64
            and len(value) <= _TRACE_VALUE_CHARS for key, value in carrier.items())):
        return {}
    return carrier
