"""Queue transports: Azure Service Bus (production) and Azure Storage Queue (runs on Azurite).

Both carry the same messages (`domain/messages.py`), sent with the time to live of
`domain/limits.py`'s MESSAGE_TTL and, for a retry, a delay. Submitting sends; receiving is only
for `python -m blast_core worker` and `serve`, since in Azure the Functions host receives.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient, QueueMessage

from blast_core.domain.limits import MESSAGE_TTL
from blast_core.domain.messages import BULK, INTERACTIVE
from blast_core.settings import SERVICEBUS_CONNECTION, STORAGE_CONNECTION, Settings
from blast_core.storage.clients import credential, storage_client
from blast_core.storage.ports import DeadLetter, Lanes, Outgoing, QueueCounts


class StorageQueueTransport:
    """A Storage Queue and its `<name>-poison` queue, named as the Functions host names it."""

    def __init__(self, queue: QueueClient, poison: QueueClient, visibility_timeout: int):
        self.queue = queue
        self.poison = poison
        self.visibility_timeout = visibility_timeout

    @classmethod
    def connect(cls, settings: Settings, name: str) -> StorageQueueTransport:
        connection = settings.connection(STORAGE_CONNECTION)
        names = (name, f"{name}-poison")
        queues = [storage_client(QueueClient, connection, "queue", name) for name in names]
        return cls(*queues, visibility_timeout=settings.visibility_timeout)

    def ensure(self) -> None:
        for queue in (self.queue, self.poison):
            try:
                queue.create_queue()
            except ResourceExistsError:
                pass

    def send(self, message: Outgoing, delay: float = 0) -> None:
        """A Storage Queue message has a body only (the properties travel in it already) and
        no id of ours; a delayed one is sent hidden for `delay` seconds."""
        self.queue.send_message(message.body, visibility_timeout=int(delay) or None,
                                time_to_live=MESSAGE_TTL)

    def receive(self) -> StorageQueueDelivery | None:
        return self._receive(self.queue)

    def receive_many(self, max_messages: int) -> list[StorageQueueDelivery]:
        """Up to `max_messages` (at most 32, the Storage Queue limit) in one call."""
        count = max(1, min(max_messages, 32))
        pages = self.queue.receive_messages(messages_per_page=count, max_messages=count,
                                            visibility_timeout=self.visibility_timeout)
        page = next(pages.by_page(), [])
        return [StorageQueueDelivery(self, self.queue, message) for message in page]

    def counts(self) -> QueueCounts:
        return QueueCounts(self.queue.get_queue_properties().approximate_message_count or 0,
                           self.poison.get_queue_properties().approximate_message_count or 0)

    def peek_dead_letters(self, limit: int) -> list[DeadLetter]:
        """Up to 32 (the Storage Queue peek limit) messages of the poison queue."""
        return [DeadLetter(_content(m), "poisoned after the maximum deliveries")
                for m in self.poison.peek_messages(max_messages=min(limit, 32))]

    def receive_dead_letter(self) -> StorageQueueDelivery | None:
        return self._receive(self.poison)

    def _receive(self, queue: QueueClient) -> StorageQueueDelivery | None:
        messages = queue.receive_messages(max_messages=1, visibility_timeout=self.visibility_timeout)
        message = next(iter(messages), None)
        return None if message is None else StorageQueueDelivery(self, queue, message)

    def close(self) -> None:
        self.queue.close()
        self.poison.close()


def _content(message: QueueMessage) -> bytes:
    return message.content.encode() if isinstance(message.content, str) else message.content


class StorageQueueDelivery:
    def __init__(self, transport: StorageQueueTransport, queue: QueueClient,
                 message: QueueMessage):
        self._transport = transport
        self._queue = queue
        self._message = message
        self._lock = threading.Lock()
        self.body = _content(message)
        self.delivery_count = message.dequeue_count

    def renew(self) -> None:
        self._update(self._transport.visibility_timeout)

    def retry_later(self, seconds: int, copy: Outgoing) -> None:
        """The same message, hidden for `seconds`: its dequeue count goes on counting."""
        self._update(seconds)

    def abandon(self) -> None:
        self._update(0)

    def release(self, copy: Outgoing) -> None:
        """Back to the queue unworked: `copy` sent, then this one deleted, so that the
        dequeue count of a delivery that made no attempt does not count."""
        self._transport.send(copy)
        self.complete()

    def complete(self) -> None:
        with self._lock:
            self._queue.delete_message(self._message.id, self._message.pop_receipt)

    def dead_letter(self, reason: str) -> None:
        with self._lock:
            self._transport.poison.send_message(self._message.content)
            self._queue.delete_message(self._message.id, self._message.pop_receipt)

    def _update(self, seconds: int) -> None:
        with self._lock:
            receipt = self._queue.update_message(
                self._message.id, self._message.pop_receipt, visibility_timeout=seconds)
            self._message.pop_receipt = receipt.pop_receipt


class ServiceBusTransport:
    """Sends with our own message ids (`messages.Message.first_id`), so that the queue's
    duplicate detection drops a repeated submit, and with a fresh id for every resend."""

    def __init__(self, client, queue_name: str, admin=None):
        # client: azure.servicebus.ServiceBusClient; admin: its management
        # ServiceBusAdministrationClient, for queue counts (needs Manage rights or the
        # Data Owner role)
        self._client = client
        self._admin = admin
        self._queue_name = queue_name
        self._lock = threading.Lock()
        self._sender = None
        self._receiver = None
        self._dead_letters = None

    @classmethod
    def connect(cls, settings: Settings, name: str) -> ServiceBusTransport:
        from azure.servicebus import ServiceBusClient
        from azure.servicebus.management import ServiceBusAdministrationClient

        connection = settings.connection(SERVICEBUS_CONNECTION)
        if connection.string:
            client = ServiceBusClient.from_connection_string(connection.string)
            admin = ServiceBusAdministrationClient.from_connection_string(connection.string)
        else:
            namespace = connection.properties.get("fullyQualifiedNamespace", "")
            client = ServiceBusClient(namespace, credential=credential())
            admin = ServiceBusAdministrationClient(namespace, credential=credential())
        return cls(client, name, admin)

    def ensure(self) -> None:
        """Service Bus queues are created by the deployment (infra/), not by the app."""

    def send(self, message: Outgoing, delay: float = 0) -> None:
        """The properties (the trace context) also become application properties, where
        Service Bus tooling and other consumers look for them. A delayed message is scheduled
        (`scheduled_enqueue_time_utc`): Service Bus has no other way to delay one."""
        from azure.servicebus import ServiceBusMessage

        scheduled = datetime.now(UTC) + timedelta(seconds=delay) if delay > 0 else None
        with self._lock:
            if self._sender is None:
                self._sender = self._client.get_queue_sender(self._queue_name)
            self._sender.send_messages(ServiceBusMessage(
                message.body, message_id=message.message_id, content_type="application/json",
                application_properties=dict(message.properties) or None,
                time_to_live=timedelta(seconds=MESSAGE_TTL), scheduled_enqueue_time_utc=scheduled))

    def receive(self) -> ServiceBusDelivery | None:
        found = self.receive_many(1)
        return found[0] if found else None

    def receive_many(self, max_messages: int) -> list[ServiceBusDelivery]:
        if self._receiver is None:
            self._receiver = self._client.get_queue_receiver(self._queue_name)
        messages = self._receiver.receive_messages(max_message_count=max_messages, max_wait_time=5)
        return [ServiceBusDelivery(self, self._receiver, message) for message in messages]

    def counts(self) -> QueueCounts:
        """The queue's runtime properties, from the management API."""
        properties = self._admin.get_queue_runtime_properties(self._queue_name)
        return QueueCounts(properties.active_message_count or 0,
                           properties.dead_letter_message_count or 0)

    def peek_dead_letters(self, limit: int) -> list[DeadLetter]:
        """Up to `limit` dead letters, oldest first, browsed page by page."""
        found: list[DeadLetter] = []
        with self._dead_letter_receiver() as receiver:
            while len(found) < limit:
                page = receiver.peek_messages(max_message_count=min(limit - len(found), 250))
                if not page:
                    break
                found += [DeadLetter(_body(m), _dead_letter_reason(m)) for m in page]
        return found

    def receive_dead_letter(self) -> ServiceBusDelivery | None:
        if self._dead_letters is None:
            self._dead_letters = self._dead_letter_receiver()
        messages = self._dead_letters.receive_messages(max_message_count=1, max_wait_time=5)
        return ServiceBusDelivery(self, self._dead_letters, messages[0]) if messages else None

    def _dead_letter_receiver(self):
        from azure.servicebus import ServiceBusSubQueue

        return self._client.get_queue_receiver(self._queue_name,
                                               sub_queue=ServiceBusSubQueue.DEAD_LETTER)

    def close(self) -> None:
        for part in (self._sender, self._receiver, self._dead_letters, self._client,
                     self._admin):
            if part is not None:
                part.close()


class ServiceBusDelivery:
    """A message received in peek-lock. `delivery_count` counts from 1, as the Functions
    trigger reports it (the SDK counts earlier deliveries, from 0)."""

    def __init__(self, transport: ServiceBusTransport, receiver, message):
        self._transport = transport
        self._receiver = receiver
        self._message = message
        self.body = _body(message)
        self.delivery_count = message.delivery_count + 1

    def renew(self) -> None:
        """Renew the lock (at most 5 minutes long) before it expires; the worker calls this
        every third of BLAST_VISIBILITY_TIMEOUT while it works."""
        self._receiver.renew_message_lock(self._message)

    def complete(self) -> None:
        self._receiver.complete_message(self._message)

    def retry_later(self, seconds: int, copy: Outgoing) -> None:
        """Service Bus brings an abandoned message back at once: schedule the copy, then
        settle this one. A crash in between leaves both, and processing is idempotent."""
        self._transport.send(copy, delay=seconds)
        self._receiver.complete_message(self._message)

    def release(self, copy: Outgoing) -> None:
        """Back to the queue unworked, as a copy: abandoning would count a delivery."""
        self._transport.send(copy)
        self._receiver.complete_message(self._message)

    def dead_letter(self, reason: str) -> None:
        self._receiver.dead_letter_message(self._message, reason=reason[:4096])

    def abandon(self) -> None:
        self._receiver.abandon_message(self._message)


def _body(message) -> bytes:
    return b"".join(bytes(part) for part in message.body)


def _dead_letter_reason(message) -> str:
    reason = message.dead_letter_reason or ""
    description = message.dead_letter_error_description or ""
    return f"{reason}: {description}" if reason and description else reason or description


def connect(settings: Settings) -> Lanes:
    """The queue of each lane: BLAST_QUEUE_NAME for interactive work, BLAST_BULK_QUEUE_NAME for
    bulk work."""
    kind = ServiceBusTransport if settings.queue_transport == "servicebus" \
        else StorageQueueTransport
    return Lanes({INTERACTIVE: kind.connect(settings, settings.queue_name),
                  BULK: kind.connect(settings, settings.bulk_queue_name)})
