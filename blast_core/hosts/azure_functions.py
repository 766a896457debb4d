"""Adapters between Azure Functions' types and the core: used only by `function_app.py`."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

import azure.functions as func

from blast_core.api import dispatch
from blast_core.domain.limits import BATCH_TRIGGER_SHARE
from blast_core.hosts import worker
from blast_core.service.bootstrap import default_service
from blast_core.storage.ports import Outgoing, Transport


def api_request(req: func.HttpRequest) -> dispatch.ApiRequest:
    url = urlsplit(req.url)
    path = url.path.split(dispatch.PREFIX + "/", 1)[-1]
    return dispatch.ApiRequest(
        method=req.method.upper(), path=path, params=dict(req.params),
        headers=dict(req.headers), body=req.get_body() or b"",
        route_params=dict(req.route_params), base_url=f"{url.scheme}://{url.netloc}")


def http_response(response: dispatch.ApiResponse) -> func.HttpResponse:
    """The Python worker sends a whole body: results larger than
    BLAST_MAX_INLINE_RESULT_BYTES are redirected to Blob storage before they get here."""
    body = response.body if isinstance(response.body, bytes) else b"".join(response.body)
    content_type = response.headers.get("Content-Type", "")
    return func.HttpResponse(body, status_code=response.status, headers=response.headers,
                             mimetype=content_type.split(";")[0] or None)


def http_function(route: dispatch.Route) -> Callable[[func.HttpRequest], func.HttpResponse]:
    """A Functions handler for one route of the API."""

    def handler(req: func.HttpRequest) -> func.HttpResponse:
        return http_response(dispatch.handle(route, api_request(req), default_service))

    handler.__name__ = route.name
    return handler


CLEANUP_SCHEDULE = "0 17 * * * *"  # NCRONTAB: hourly, at 17 minutes past
SWEEP_SCHEDULE = "0 */5 * * * *"  # NCRONTAB: every 5 minutes


def clean_up_expired() -> None:
    """The timer's work: delete the jobs past BLAST_RETENTION_DAYS, their blobs first."""
    default_service().clean_up(limit=100_000)


def sweep_stranded() -> None:
    """The timer's work: end the jobs the queue can no longer finish."""
    default_service().sweep()


class MessageDeadLettered(Exception):
    """Raised to have the host abandon a message until the queue dead-letters it: a Python
    function cannot dead-letter a message itself."""


class HostDelivery:
    """A message as the Functions host hands it to a queue trigger. The host settles it:
    it completes the message when the function returns and abandons it when the function
    raises; after the queue's max delivery count the message goes to the dead-letter (Service
    Bus) or poison (Storage Queue) queue. An abandoned message comes back at once, so a retry
    after a delay is a copy scheduled for later, and this message is completed."""

    def __init__(self, transport: Transport, body: bytes, delivery_count: int):
        self._transport = transport
        self.body = body
        self.delivery_count = delivery_count

    def renew(self) -> None:
        """The host renews the lock (host.json maxAutoLockRenewalDuration)."""

    def complete(self) -> None:
        """Returning completes the message."""

    def retry_later(self, seconds: int, copy: Outgoing) -> None:
        self._transport.send(copy, delay=seconds)

    def release(self, copy: Outgoing) -> None:
        """Back to the queue unworked: the copy is sent, and returning completes this one."""
        self._transport.send(copy)

    def dead_letter(self, reason: str) -> None:
        raise MessageDeadLettered(f"{reason}; the message goes to the dead-letter queue once "
                                  "the host has abandoned it the queue's max delivery count")


def process_delivery(body: bytes, delivery_count: int) -> None:
    """The queue trigger's work; raising makes the host abandon the message."""
    process_deliveries([(body, delivery_count)])


def process_deliveries(received: list[tuple[bytes, int]]) -> None:
    """A batch trigger's work (`cardinality="many"`): each message's body and delivery count.

    The host settles a batch as one: it completes every message when the function returns
    and abandons every one when it raises. So each message is settled here as far as a
    Python function can (a retry is a scheduled copy, a message handed back is a copy sent
    now), and only a message to dead-letter makes the function raise, after all the others'
    work is recorded: their redelivery finds their batches finished and is completed. The
    host renews no lock for a batch, so this takes on only what ends within one
    (`limits.BATCH_TRIGGER_SHARE`)."""
    service = default_service()
    settles = worker.handle_many(service, [HostDelivery(service.transport, body, count)
                                           for body, count in received], BATCH_TRIGGER_SHARE)
    dead = []
    for settle in settles:
        try:
            settle()
        except MessageDeadLettered as error:
            dead.append(str(error))
    if dead:
        raise MessageDeadLettered("; ".join(dead))
