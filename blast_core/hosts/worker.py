"""Working through queue messages: what to do with each delivery, once, for both hosts.

`handle` processes one delivery and settles it: done (complete), to be tried again after a
delay, or dead-lettered. It is the same decision under the Functions host (`azure_functions.py`
adapts the host's way of settling) and in the worker loop of `serve` and `worker` below, which
receives itself and keeps the message hidden or locked while BLAST runs.
"""

from __future__ import annotations

import logging
import os
import select
import threading
from collections.abc import Callable, Sequence
from functools import partial

from blast_core.domain import messages
from blast_core.domain.limits import MAX_RETRY_DELAY
from blast_core.domain.messages import INTERACTIVE, LANES
from blast_core.logs import describe, job_fields
from blast_core.service.core import BlastService
from blast_core.service.errors import NotTakenOn, UnknownJob
from blast_core.service.processing import Work
from blast_core.storage.ports import Delivery, Outgoing

log = logging.getLogger("blast_core.hosts.worker")

# An idle worker polls its Storage Queue from every 0.02 s up to every second: serve wakes it
# on every submission, so polling finds only retries, requeues and other hosts' messages,
# and a faster poll takes CPU from the BLAST runs of the other lane's workers.
IDLE_WAIT = (0.02, 1.0)


def retry_delay(attempt: int) -> int:
    """Seconds before a failed attempt is followed by the next: doubling, capped."""
    return min(2 ** attempt, MAX_RETRY_DELAY)


def handle(service: BlastService, delivery: Delivery) -> Callable[[], None]:
    """`handle_many` for one delivery."""
    return handle_many(service, [delivery])[0]


def handle_many(service: BlastService, deliveries: Sequence[Delivery],
                capacity: float = 1.0) -> list[Callable[[], None]]:
    """Process deliveries received together (the service searches their batches in one BLAST
    run where it can); returns how to settle each, for the caller to do once it has stopped
    renewing the locks. A message that cannot be read, or names no job, can never succeed
    and is dead-lettered at once. A failed attempt is retried after `retry_delay` until
    BLAST_MAX_DELIVERIES attempts (the service records the last one's failure on the job),
    then dead-lettered; a message delivered past that is dead-lettered unread, so that it
    reaches the dead-letter queue where the host settles by raising. A message the service
    did not take on (`capacity`: `coalescing.plan`) goes back to the queue as it came."""
    settles: list[Callable[[], None]] = [delivery.complete for delivery in deliveries]
    admitted: list[tuple[int, Work]] = []
    most = service.settings.max_deliveries
    for index, delivery in enumerate(deliveries):
        try:
            message = messages.decode(delivery.body)
        except messages.MalformedMessage as error:
            log.error("unreadable message (%s); dead-lettering it", error)
            settles[index] = partial(delivery.dead_letter, f"unreadable: {error}")
            continue
        attempt = message.attempts + delivery.delivery_count
        if attempt > most:
            settles[index] = partial(delivery.dead_letter, f"gave up after {most} attempts")
            continue
        admitted.append((index, Work(message, attempt, last_attempt=attempt >= most)))
    outcomes = service.handle_many([work for _, work in admitted], capacity) if admitted else []
    for (index, work), outcome in zip(admitted, outcomes, strict=True):
        settles[index] = _settlement(service, deliveries[index], work, outcome)
    return settles


def _settlement(service: BlastService, delivery: Delivery, work: Work,
                outcome: Exception | None) -> Callable[[], None]:
    message, attempt = work.message, work.attempt
    fields = job_fields(message.job_id, message.batch, attempt)
    if outcome is None:
        return delivery.complete
    if isinstance(outcome, NotTakenOn):
        untried = message.retried(attempt - 1)  # this delivery made no attempt
        return partial(delivery.release, Outgoing.of(untried, untried.resend_id()))
    reason = describe(outcome)
    if isinstance(outcome, (messages.MalformedMessage, UnknownJob)):
        log.error("attempt %d: %s; dead-lettering the message", attempt, reason, extra=fields)
        return partial(delivery.dead_letter, reason)
    if work.last_attempt:
        log.error("attempt %d failed (%s); giving up", attempt, reason, extra=fields)
        return partial(delivery.dead_letter, f"gave up after {attempt} attempts: {reason}")
    delay = retry_delay(attempt)
    log.warning("attempt %d failed (%s); trying again in %d s", attempt, reason, delay,
                extra=fields)
    retry = message.retried(attempt)
    return partial(delivery.retry_later, delay, Outgoing.of(retry, retry.resend_id()))


def run_worker(service: BlastService, stop: threading.Event, wake_fd: int | None = None,
               lane: str | None = None) -> None:
    """Work through one lane's queue (None: each lane's, in a thread of its own, as the two
    triggers of a function app instance) until `stop` is set, receiving up to
    BLAST_COALESCE_MESSAGES messages at a time in the interactive lane (as its trigger does
    under the Functions host) and one at a time in the bulk lane.

    A Storage Queue must be polled: an idle worker polls less and less often, up to
    IDLE_WAIT[1]. A byte written to `wake_fd` (serve does so on every submission) ends the
    wait at once, so a job sent to an idle `serve` starts without delay."""
    if lane is None:
        others = [threading.Thread(target=run_worker, args=(service, stop, None, other),
                                   name=f"{other} lane") for other in LANES[1:]]
        for thread in others:
            thread.start()
        try:
            run_worker(service, stop, wake_fd, LANES[0])
        finally:
            stop.set()  # the first lane ends only when told to, or when serve is gone
            for thread in others:
                thread.join()
        return
    wait, queue = IDLE_WAIT[0], service.transport.lane(lane)
    at_once = service.settings.coalesce_messages if lane == INTERACTIVE else 1
    log.info("worker of the %s lane ready: up to %d message(s) at a time", lane, at_once)
    while not stop.is_set():
        try:
            deliveries = queue.receive_many(at_once)
        except Exception as error:
            log.warning("cannot receive from the queue (%s); retrying", type(error).__name__)
            stop.wait(1.0)
            continue
        if not deliveries:
            if _idle(stop, wake_fd, wait):
                wait = IDLE_WAIT[0]
            else:
                wait = min(wait * 2, IDLE_WAIT[1])
            continue
        wait = IDLE_WAIT[0]
        work_on(service, deliveries)


def _idle(stop: threading.Event, wake_fd: int | None, seconds: float) -> bool:
    """Wait up to `seconds`; True when woken by a byte on `wake_fd`."""
    if wake_fd is None:
        stop.wait(seconds)
        return False
    ready, _, _ = select.select([wake_fd], [], [], seconds)
    if ready and not os.read(wake_fd, 4096):
        raise SystemExit(0)  # the serving process is gone
    return bool(ready)


def work_on(service: BlastService, deliveries: Sequence[Delivery]) -> None:
    """Handle deliveries this worker received, keeping them hidden (Storage Queue) or locked
    (Service Bus) meanwhile, then settle each."""
    stop_renewing = threading.Event()
    renewer = threading.Thread(target=_keep_hidden, daemon=True, args=(
        deliveries, stop_renewing, service.settings.visibility_timeout / 3))
    renewer.start()
    try:
        settles = handle_many(service, deliveries)
    finally:
        stop_renewing.set()
        renewer.join()
    for settle in settles:  # one after another: a Service Bus receiver is not thread-safe
        try:
            settle()
        except Exception as error:
            log.warning("a message could not be settled (%s); it will be delivered again",
                        type(error).__name__)


def _keep_hidden(deliveries: Sequence[Delivery], stop: threading.Event, interval: float) -> None:
    while not stop.wait(interval):
        for delivery in deliveries:
            try:
                delivery.renew()
            except Exception as error:
                log.warning("could not renew a message (%s)", type(error).__name__)
