"""Queue transports: Azure Service Bus (production) and Azure Storage Queue (runs on Azurite).

Both carry the same message (`jobs.encode_message`). Submitting sends; receiving is only for
`python -m blast_core worker` and `serve`, since in Azure the Functions host receives.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient, QueueMessage

from blast_core.settings import SERVICEBUS_CONNECTION, STORAGE_CONNECTION, Settings


class Delivery(Protocol):
    """One received message, held (hidden or locked) until it is settled."""

    body: bytes
    delivery_count: int

    def renew(self) -> None: ...
    def complete(self) -> None: ...
    def retry_later(self, seconds: int) -> None: ...
    def dead_letter(self, reason: str) -> None: ...


@dataclass(frozen=True)
class DeadLetter:
    body: bytes
    reason: str


@dataclass(frozen=True)
class QueueCounts:
    """Messages waiting in the queue (Service Bus: active; Storage: approximate, which
    includes messages being worked on) and in its dead-letter or poison queue."""

    depth: int
    dead_letters: int


class Transport(Protocol):
    def ensure(self) -> None: ...
    def counts(self) -> QueueCounts: ...
    def send(self, body: str, message_id: str,
             properties: Mapping[str, str] | None = None) -> None: ...
    def receive(self) -> Delivery | None: ...
    def peek_dead_letters(self, limit: int) -> list[DeadLetter]: ...
    def receive_dead_letter(self) -> Delivery | None: ...
    def close(self) -> None: ...


class StorageQueueTransport:
    """A Storage Queue and its `<name>-poison` queue, named as the Functions host names it."""

    def __init__(self, queue: QueueClient, poison: QueueClient, visibility_timeout: int):
        self.queue = queue
        self.poison = poison
        self.visibility_timeout = visibility_timeout

    @classmethod
    def connect(cls, settings: Settings) -> StorageQueueTransport:
        connection = settings.connection(STORAGE_CONNECTION)
        names = (settings.queue_name, f"{settings.queue_name}-poison")
        if connection.string:
            queues = [QueueClient.from_connection_string(connection.string, name) for name in names]
        else:
            queues = [QueueClient(connection.service_uri("queue"), name,
                                  credential=connection.credential()) for name in names]
        return cls(*queues, visibility_timeout=settings.visibility_timeout)

    def ensure(self) -> None:
        for queue in (self.queue, self.poison):
            try:
                queue.create_queue()
            except ResourceExistsError:
                pass

    def send(self, body: str, message_id: str,
             properties: Mapping[str, str] | None = None) -> None:
        """A Storage Queue message has a body only: `properties` travel in it already."""
        self.queue.send_message(body)

    def receive(self) -> StorageQueueDelivery | None:
        return self._receive(self.queue)

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

    def retry_later(self, seconds: int) -> None:
        self._update(seconds)

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
    """Sends with the message id set to the job id, so the queue's duplicate detection works."""

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
        self._renewer = None

    @classmethod
    def connect(cls, settings: Settings) -> ServiceBusTransport:
        from azure.servicebus import ServiceBusClient
        from azure.servicebus.management import ServiceBusAdministrationClient

        connection = settings.connection(SERVICEBUS_CONNECTION)
        if connection.string:
            client = ServiceBusClient.from_connection_string(connection.string)
            admin = ServiceBusAdministrationClient.from_connection_string(connection.string)
        else:
            namespace = connection.properties.get("fullyQualifiedNamespace", "")
            client = ServiceBusClient(namespace, credential=connection.credential())
            admin = ServiceBusAdministrationClient(namespace, credential=connection.credential())
        return cls(client, settings.queue_name, admin)

    def ensure(self) -> None:
        """Service Bus queues are created by the deployment (infra/), not by the app."""

    def send(self, body: str, message_id: str,
             properties: Mapping[str, str] | None = None) -> None:
        """`properties` (the trace context) also become application properties, where
        Service Bus tooling and other consumers look for them."""
        from azure.servicebus import ServiceBusMessage

        with self._lock:
            if self._sender is None:
                self._sender = self._client.get_queue_sender(self._queue_name)
            self._sender.send_messages(ServiceBusMessage(
                body, message_id=message_id, content_type="application/json",
                application_properties=dict(properties) if properties else None))

    def receive(self) -> ServiceBusDelivery | None:
        from azure.servicebus import AutoLockRenewer

        if self._receiver is None:
            self._renewer = AutoLockRenewer(max_lock_renewal_duration=6 * 3600)
            self._receiver = self._client.get_queue_receiver(
                self._queue_name, auto_lock_renewer=self._renewer)
        messages = self._receiver.receive_messages(max_message_count=1, max_wait_time=5)
        return ServiceBusDelivery(self._receiver, messages[0]) if messages else None

    def counts(self) -> QueueCounts:
        """The queue's runtime properties, from the management API."""
        properties = self._admin.get_queue_runtime_properties(self._queue_name)
        return QueueCounts(properties.active_message_count or 0,
                           properties.dead_letter_message_count or 0)

    def peek_dead_letters(self, limit: int) -> list[DeadLetter]:
        with self._dead_letter_receiver() as receiver:
            return [DeadLetter(_body(m), m.dead_letter_reason or "")
                    for m in receiver.peek_messages(max_message_count=limit)]

    def receive_dead_letter(self) -> ServiceBusDelivery | None:
        if self._dead_letters is None:
            self._dead_letters = self._dead_letter_receiver()
        messages = self._dead_letters.receive_messages(max_message_count=1, max_wait_time=5)
        return ServiceBusDelivery(self._dead_letters, messages[0]) if messages else None

    def _dead_letter_receiver(self):
        from azure.servicebus import ServiceBusSubQueue

        return self._client.get_queue_receiver(self._queue_name,
                                               sub_queue=ServiceBusSubQueue.DEAD_LETTER)

    def close(self) -> None:
        for part in (self._sender, self._receiver, self._dead_letters, self._renewer,
                     self._client, self._admin):
            if part is not None:
                part.close()


class ServiceBusDelivery:
    def __init__(self, receiver, message):
        self._receiver = receiver
        self._message = message
        self.body = _body(message)
        self.delivery_count = message.delivery_count + 1

    def renew(self) -> None:
        """The receiver's AutoLockRenewer keeps the lock."""

    def complete(self) -> None:
        self._receiver.complete_message(self._message)

    def retry_later(self, seconds: int) -> None:
        self._receiver.abandon_message(self._message)

    def dead_letter(self, reason: str) -> None:
        self._receiver.dead_letter_message(self._message, reason=reason[:4096])


def _body(message) -> bytes:
    return b"".join(bytes(part) for part in message.body)


def connect(settings: Settings) -> Transport:
    if settings.queue_transport == "servicebus":
        return ServiceBusTransport.connect(settings)
    return StorageQueueTransport.connect(settings)
