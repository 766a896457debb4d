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
from collections.abc import Callable

from blast_core.domain import messages
from blast_core.domain.limits import MAX_RETRY_DELAY
from blast_core.logs import describe, job_fields
from blast_core.service.core import BlastService
from blast_core.service.errors import UnknownJob
from blast_core.storage.ports import Delivery, Outgoing

log = logging.getLogger("blast_core.hosts.worker")

IDLE_WAIT = (0.02, 0.25)


def retry_delay(attempt: int) -> int:
    """Seconds before a failed attempt is followed by the next: doubling, capped."""
    return min(2 ** attempt, MAX_RETRY_DELAY)


def handle(service: BlastService, delivery: Delivery) -> Callable[[], None]:
    """Process one delivery; returns how to settle it, for the caller to do once it has
    stopped renewing the lock. A message that cannot be read, or names no job, can never
    succeed and is dead-lettered at once. A failed attempt is retried after `retry_delay`
    until BLAST_MAX_DELIVERIES attempts (the service records the last one's failure on the
    job), then dead-lettered; a message delivered past that is dead-lettered unread, so
    that it reaches the dead-letter queue where the host settles by raising."""
    try:
        message = messages.decode(delivery.body)
    except messages.MalformedMessage as error:
        log.error("unreadable message (%s); dead-lettering it", error)
        unreadable = f"unreadable: {error}"
        return lambda: delivery.dead_letter(unreadable)
    attempt = message.attempts + delivery.delivery_count
    fields = job_fields(message.job_id, message.batch, attempt)
    most = service.settings.max_deliveries
    if attempt > most:
        return lambda: delivery.dead_letter(f"gave up after {most} attempts")
    try:
        service.handle(message, attempt, last_attempt=attempt >= most)
    except (messages.MalformedMessage, UnknownJob) as error:
        log.error("attempt %d: %s; dead-lettering the message", attempt, error, extra=fields)
        hopeless = describe(error)
        return lambda: delivery.dead_letter(hopeless)
    except Exception as error:
        reason = describe(error)
        if attempt >= most:
            log.error("attempt %d failed (%s); giving up", attempt, reason, extra=fields)
            return lambda: delivery.dead_letter(f"gave up after {attempt} attempts: {reason}")
        delay = retry_delay(attempt)
        log.warning("attempt %d failed (%s); trying again in %d s", attempt, reason, delay,
                    extra=fields)
        retry = message.retried(attempt)
        copy = Outgoing(retry.encode(), retry.resend_id(), dict(retry.trace))
        return lambda: delivery.retry_later(delay, copy)
    return delivery.complete


def run_worker(service: BlastService, stop: threading.Event, wake_fd: int | None = None) -> None:
    """Work through the queue until `stop` is set; one message at a time.

    A Storage Queue must be polled: an idle worker polls less and less often, up to
    IDLE_WAIT[1]. A byte written to `wake_fd` (serve does so on every submission) ends the
    wait at once, so a job sent to an idle `serve` starts without delay."""
    wait = IDLE_WAIT[0]
    while not stop.is_set():
        try:
            delivery = service.transport.receive()
        except Exception as error:
            log.warning("cannot receive from the queue (%s); retrying", type(error).__name__)
            stop.wait(1.0)
            continue
        if delivery is None:
            if _idle(stop, wake_fd, wait):
                wait = IDLE_WAIT[0]
            else:
                wait = min(wait * 2, IDLE_WAIT[1])
            continue
        wait = IDLE_WAIT[0]
        work_on(service, delivery)


def _idle(stop: threading.Event, wake_fd: int | None, seconds: float) -> bool:
    """Wait up to `seconds`; True when woken by a byte on `wake_fd`."""
    if wake_fd is None:
        stop.wait(seconds)
        return False
    ready, _, _ = select.select([wake_fd], [], [], seconds)
    if ready and not os.read(wake_fd, 4096):
        raise SystemExit(0)  # the serving process is gone
    return bool(ready)


def work_on(service: BlastService, delivery: Delivery) -> None:
    """Handle a delivery this worker received, keeping it hidden (Storage Queue) or locked
    (Service Bus) meanwhile, then settle it."""
    stop_renewing = threading.Event()
    renewer = threading.Thread(target=_keep_hidden, daemon=True, args=(
        delivery, stop_renewing, service.settings.visibility_timeout / 3))
    renewer.start()
    try:
        settle = handle(service, delivery)
    finally:
        stop_renewing.set()
        renewer.join()
    try:
        settle()
    except Exception as error:
        log.warning("the message could not be settled (%s); it will be delivered again",
                    type(error).__name__)


def _keep_hidden(delivery: Delivery, stop: threading.Event, interval: float) -> None:
    while not stop.wait(interval):
        try:
            delivery.renew()
        except Exception as error:
            log.warning("could not renew the message (%s)", type(error).__name__)
