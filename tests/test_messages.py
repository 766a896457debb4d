"""Queue messages: what a worker can read, how retries and resends are numbered and named."""

import json

import pytest

from blast_core.domain import jobs, messages
from blast_core.domain.messages import Message


def test_messages_carry_a_valid_job_id_and_batch_or_format():
    job_id = jobs.new_job_id()
    assert messages.decode(messages.batch_message(job_id, 3).encode().encode()) == \
        Message(job_id, batch=3)
    assert messages.decode(f'{{"job_id": "{job_id}"}}') == Message(job_id, batch=0)
    assert messages.decode(messages.format_message(job_id, "json").encode()) == \
        Message(job_id, format="json")
    for body in (b"not json", b"[]", b'{"job_id": "../x"}', b"\xff\xfe", b"{}",
                 f'{{"job_id": "{job_id}", "batch": -1}}'.encode(),
                 f'{{"job_id": "{job_id}", "batch": "1"}}'.encode(),
                 f'{{"job_id": "{job_id}", "attempts": -2}}'.encode(),
                 f'{{"job_id": "{job_id}", "attempts": true}}'.encode(),
                 f'{{"job_id": "{job_id}", "format": "../json"}}'.encode(),
                 f'{{"job_id": "{job_id}", "format": "json", "batch": 1}}'.encode()):
        with pytest.raises(messages.MalformedMessage):
            messages.decode(body)


def test_the_first_send_has_a_stable_id_and_every_resend_a_fresh_one():
    """Duplicate detection drops a second send of an id within its window: a repeated submit
    must be dropped, a requeue or a scheduled retry must not."""
    job_id = jobs.new_job_id()
    message = messages.batch_message(job_id, 3)
    assert message.first_id == f"{job_id}-3"
    assert messages.format_message(job_id, "xml").first_id == f"{job_id}-format-xml"
    resends = {message.resend_id() for _ in range(100)}
    assert len(resends) == 100 and all(r.startswith(f"{job_id}-3-") for r in resends)


def test_a_retry_carries_the_attempts_made_so_far():
    message = messages.batch_message(jobs.new_job_id(), 1, {"traceparent": "t"})
    retried = messages.decode(message.retried(3).encode())
    assert (retried.attempts, retried.batch, retried.trace) == (3, 1, {"traceparent": "t"})
    assert "attempts" not in json.loads(message.encode())
