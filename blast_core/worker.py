"""The queue worker of `python -m blast_core worker` and `serve` (in Azure, the Functions host
receives instead): receive, keep the message hidden while BLAST runs, settle."""

from __future__ import annotations

import logging
import os
import select
import threading

from blast_core.service import BlastService, message_fields
from blast_core.transports import Delivery

log = logging.getLogger("blast_core.worker")

IDLE_WAIT = (0.02, 0.25)
MAX_BACKOFF = 60


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


def retry_delay(delivery_count: int) -> int:
    """Seconds before a failed delivery comes back: doubling, capped."""
    return min(2 ** delivery_count, MAX_BACKOFF)


def work_on(service: BlastService, delivery: Delivery) -> None:
    stop_renewing = threading.Event()
    renewer = threading.Thread(target=_keep_hidden, daemon=True, args=(
        delivery, stop_renewing, service.settings.visibility_timeout / 3))
    renewer.start()
    fields = message_fields(delivery.body, delivery.delivery_count)
    try:
        service.process(delivery.body, delivery.delivery_count)
        settle, outcome = delivery.complete, "completed"
    except Exception as error:
        reason = f"{type(error).__name__}: {error}"[:1000]
        if delivery.delivery_count >= service.settings.max_deliveries:
            log.error("delivery %d failed (%s); dead-lettering", delivery.delivery_count, reason,
                      extra=fields)
            settle, outcome = (lambda: delivery.dead_letter(reason)), "dead-lettered"
        else:
            log.warning("delivery %d failed (%s); will retry", delivery.delivery_count, reason,
                        extra=fields)
            delay = retry_delay(delivery.delivery_count)
            settle, outcome = (lambda: delivery.retry_later(delay)), "abandoned"
    finally:
        stop_renewing.set()
        renewer.join()
    try:
        settle()
    except Exception as error:
        log.warning("message could not be %s (%s); it will be delivered again",
                    outcome, type(error).__name__, extra=fields)


def _keep_hidden(delivery: Delivery, stop: threading.Event, interval: float) -> None:
    while not stop.wait(interval):
        try:
            delivery.renew()
        except Exception as error:
            log.warning("could not renew the message (%s)", type(error).__name__)
