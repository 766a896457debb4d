"""Azure Service Bus, emulated at the SDK calls `blast_core.storage.queues.ServiceBusTransport` makes.

Service Bus cannot run here (its emulator needs Docker), so this module keeps the broker's
documented rules in one object, `Namespace`, and offers it through stand-ins for the SDK
classes the transport uses (`ServiceBusClient`, its sender and receiver, and
`ServiceBusAdministrationClient`). Messages are sent as the SDK's own `ServiceBusMessage`;
received messages have the public attributes of `ServiceBusReceivedMessage`. `install()`
puts the stand-ins where `ServiceBusTransport.connect` imports the SDK from, so the real
transport code runs against the emulated broker, in this process or, through
`NamespaceServer`, in the Functions host's language worker process.

The rules, each traced to its source in docs/reliability.md:
- peek-lock: a received message is locked for the queue's lock duration; complete removes it,
  abandon or an expired lock returns it with its delivery count one higher; a lock can be
  renewed while it holds; settling or renewing a lost lock fails (MessageLockLostError);
- the SDK's `delivery_count` is the number of earlier deliveries (0 on the first); after
  `max_delivery_count` deliveries the next release moves it to the dead-letter queue
  (`MaxDeliveryCountExceeded`);
- duplicate detection: a send whose MessageId was seen within the window is accepted and the
  message dropped;
- time to live: min(message TTL, queue default) from the enqueue time; an expired message that
  is not locked moves to the dead-letter queue (`TTLExpiredException`), when a receiver asks
  the queue for messages (Service Bus moves expired messages only while one pulls);
- scheduled messages are invisible until their time, and their TTL starts then;
- receive returns up to `max_message_count` available messages, waiting up to
  `max_wait_time` for the first;
- the dead-letter sub-queue is received and peeked like the queue; nothing expires there.

Durations come from `QueueRules`: the defaults are the queue of infra/modules/servicebus.bicep;
tests shrink them to seconds, which changes no rule.
"""

from __future__ import annotations

import datetime
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Client, Connection, Listener
from typing import Any

DEAD_LETTER = "deadletter"
MAX_DELIVERY_REASON = "MaxDeliveryCountExceeded"
EXPIRED_REASON = "TTLExpiredException"


class LockLost(Exception):
    """The message's lock expired or was never held: the SDK raises MessageLockLostError."""


@dataclass(frozen=True)
class QueueRules:
    """A queue's properties; the defaults are those infra/modules/servicebus.bicep deploys."""

    lock_duration: float = 300.0  # PT5M, the longest Service Bus allows
    max_delivery_count: int = 5
    default_ttl: float = 86_400.0  # P1D
    duplicate_window: float = 3_600.0  # PT1H
    dead_letter_on_expiry: bool = True


@dataclass
class Entry:
    sequence_number: int
    message_id: str
    body: bytes
    application_properties: dict[str, Any]
    content_type: str | None
    enqueued_at: float
    expires_at: float
    deliveries: int = 0
    locked_until: float = 0.0
    lock_token: str = ""
    dead_letter_reason: str | None = None
    dead_letter_description: str | None = None

    def public(self) -> dict[str, Any]:
        """What a receiver sees: plain data, so it crosses a process boundary."""
        return {"sequence_number": self.sequence_number, "message_id": self.message_id,
                "body": self.body, "application_properties": dict(self.application_properties),
                "content_type": self.content_type, "enqueued_at": self.enqueued_at,
                "expires_at": self.expires_at, "delivery_count": max(self.deliveries - 1, 0),
                "locked_until": self.locked_until, "lock_token": self.lock_token,
                "dead_letter_reason": self.dead_letter_reason,
                "dead_letter_description": self.dead_letter_description}


@dataclass
class Event:
    """One thing the broker did, for tests to assert on."""

    at: float
    kind: str  # sent, duplicate, scheduled, delivered, completed, abandoned, lock-expired,
    #            dead-lettered, expired
    queue: str
    message_id: str
    detail: str = ""


@dataclass
class _Queue:
    rules: QueueRules
    active: dict[int, Entry] = field(default_factory=dict)  # available, locked or scheduled
    dead: dict[int, Entry] = field(default_factory=dict)
    seen_ids: dict[str, float] = field(default_factory=dict)  # message id -> first send


class Namespace:
    """The broker: queues with their dead-letter sub-queues, under one lock."""

    def __init__(self, queues: dict[str, QueueRules]):
        self._queues = {name: _Queue(rules) for name, rules in queues.items()}
        self._changed = threading.Condition()
        self._sequence = 0
        self.events: list[Event] = []

    # Sending

    def send(self, queue: str, message: dict[str, Any]) -> int | None:
        """Enqueue (or schedule, with `scheduled_at`) one message; the sequence number, or
        None when duplicate detection dropped it (the send itself still succeeds)."""
        with self._changed:
            state = self._queue(queue)
            now = time.time()
            message_id = message["message_id"] or uuid.uuid4().hex
            first_seen = state.seen_ids.get(message_id)
            if first_seen is not None and now - first_seen < state.rules.duplicate_window:
                self._event("duplicate", queue, message_id)
                return None
            state.seen_ids[message_id] = now
            self._sequence += 1
            visible_at = max(message.get("scheduled_at") or now, now)
            ttl = min(message.get("ttl") or state.rules.default_ttl, state.rules.default_ttl)
            state.active[self._sequence] = Entry(
                sequence_number=self._sequence, message_id=message_id, body=message["body"],
                application_properties=dict(message.get("application_properties") or {}),
                content_type=message.get("content_type"), enqueued_at=visible_at,
                expires_at=visible_at + ttl)
            self._event("scheduled" if visible_at > now else "sent", queue, message_id,
                        f"visible in {visible_at - now:.1f} s" if visible_at > now else "")
            self._changed.notify_all()
            return self._sequence

    # Receiving and settling

    def receive(self, queue: str, sub_queue: str | None, max_count: int,
                max_wait: float) -> list[dict[str, Any]]:
        """Lock and return up to `max_count` available messages, waiting up to `max_wait`
        seconds for the first."""
        deadline = time.monotonic() + max_wait
        with self._changed:
            state = self._queue(queue)
            while True:
                self._housekeep(queue, state, expire=sub_queue != DEAD_LETTER)
                entries = state.dead if sub_queue == DEAD_LETTER else state.active
                now = time.time()
                available = [e for s, e in sorted(entries.items())
                             if e.locked_until <= now and e.enqueued_at <= now][:max_count]
                if available:
                    for entry in available:
                        entry.deliveries += 1
                        entry.locked_until = now + state.rules.lock_duration
                        entry.lock_token = str(uuid.uuid4())
                        self._event("delivered", queue, entry.message_id,
                                    f"delivery {entry.deliveries}"
                                    + (" (dead-letter queue)" if sub_queue == DEAD_LETTER else ""))
                    return [entry.public() for entry in available]
                left = deadline - time.monotonic()
                if left <= 0:
                    return []
                self._changed.wait(min(left, self._next_change(state) - time.time(), 0.5))

    def renew(self, queue: str, sub_queue: str | None, lock_token: str) -> float:
        with self._changed:
            state = self._queue(queue)
            entry = self._locked(state, sub_queue, lock_token)
            entry.locked_until = time.time() + state.rules.lock_duration
            return entry.locked_until

    def settle(self, queue: str, sub_queue: str | None, lock_token: str, action: str,
               reason: str | None = None, description: str | None = None) -> None:
        """`complete`, `abandon` or `dead_letter` a message whose lock this receiver holds."""
        with self._changed:
            state = self._queue(queue)
            entry = self._locked(state, sub_queue, lock_token)
            entries = state.dead if sub_queue == DEAD_LETTER else state.active
            entry.locked_until, entry.lock_token = 0.0, ""
            if action == "complete":
                del entries[entry.sequence_number]
                self._event("completed", queue, entry.message_id)
            elif action == "abandon":
                self._event("abandoned", queue, entry.message_id)
                if sub_queue != DEAD_LETTER:
                    self._release(queue, state, entry)
            elif action == "dead_letter":
                if sub_queue == DEAD_LETTER:
                    raise ValueError("a dead-lettered message cannot be dead-lettered again")
                self._dead_letter(queue, state, entry, reason, description)
            else:
                raise ValueError(f"unknown settlement {action!r}")
            self._changed.notify_all()

    def peek(self, queue: str, sub_queue: str | None, from_sequence: int,
             max_count: int) -> list[dict[str, Any]]:
        """Messages from `from_sequence` on, without locking them (browse)."""
        with self._changed:
            state = self._queue(queue)
            self._housekeep(queue, state)
            entries = state.dead if sub_queue == DEAD_LETTER else state.active
            return [e.public() for s, e in sorted(entries.items())
                    if s >= from_sequence][:max_count]

    def properties(self, queue: str) -> dict[str, int]:
        with self._changed:
            state = self._queue(queue)
            self._housekeep(queue, state)
            now = time.time()
            return {"active_message_count": sum(1 for e in state.active.values()
                                                if e.enqueued_at <= now),
                    "scheduled_message_count": sum(1 for e in state.active.values()
                                                   if e.enqueued_at > now),
                    "dead_letter_message_count": len(state.dead)}

    def history(self, kind: str | None = None) -> list[Event]:
        with self._changed:
            return [e for e in self.events if kind is None or e.kind == kind]

    def wait_idle(self, queue: str, timeout: float) -> bool:
        """Whether the queue (not its dead letters) became empty within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            state = self._queue(queue)
            while True:
                self._housekeep(queue, state)
                if not state.active:
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(min(left, 0.5))

    # The broker's own clock

    def _housekeep(self, queue: str, state: _Queue, expire: bool = False) -> None:
        """Apply what time has decided: expired locks release their messages, and, when a
        receiver pulls from the queue (`expire`), messages past their time to live move to
        the dead-letter queue (locked ones keep their lock)."""
        now = time.time()
        for entry in list(state.active.values()):
            if entry.lock_token and entry.locked_until <= now:
                entry.lock_token = ""
                self._event("lock-expired", queue, entry.message_id,
                            f"delivery {entry.deliveries}")
                self._release(queue, state, entry)
        for entry in list(state.active.values()) if expire else []:
            if (not entry.lock_token and entry.expires_at <= now
                    and entry.sequence_number in state.active):
                self._event("expired", queue, entry.message_id)
                if state.rules.dead_letter_on_expiry:
                    self._dead_letter(queue, state, entry, EXPIRED_REASON,
                                      "The message expired and was dead lettered.")
                else:
                    del state.active[entry.sequence_number]
        for entry in state.dead.values():
            if entry.lock_token and entry.locked_until <= now:
                entry.lock_token = ""

    def _release(self, queue: str, state: _Queue, entry: Entry) -> None:
        """Back to the queue after an abandon or a lost lock; to the dead-letter queue once
        it has been delivered `max_delivery_count` times."""
        entry.locked_until = 0.0
        if entry.deliveries >= state.rules.max_delivery_count:
            self._dead_letter(queue, state, entry, MAX_DELIVERY_REASON,
                              f"Message could not be consumed after {entry.deliveries} "
                              "delivery attempts.")

    def _dead_letter(self, queue: str, state: _Queue, entry: Entry, reason: str | None,
                     description: str | None) -> None:
        del state.active[entry.sequence_number]
        entry.dead_letter_reason, entry.dead_letter_description = reason, description
        entry.locked_until, entry.lock_token = 0.0, ""
        state.dead[entry.sequence_number] = entry
        self._event("dead-lettered", queue, entry.message_id, reason or "")

    def _next_change(self, state: _Queue) -> float:
        moments = [time.time() + 3600]
        for entry in state.active.values():
            moments += [entry.locked_until if entry.lock_token else entry.enqueued_at,
                        entry.expires_at]
        return max(min(moments), time.time() + 0.01)

    def _locked(self, state: _Queue, sub_queue: str | None, lock_token: str) -> Entry:
        self._housekeep_locks(state)
        entries = state.dead if sub_queue == DEAD_LETTER else state.active
        for entry in entries.values():
            if entry.lock_token and entry.lock_token == lock_token:
                return entry
        raise LockLost("The lock supplied is invalid: it expired, or the message was settled")

    def _housekeep_locks(self, state: _Queue) -> None:
        for name, candidate in self._queues.items():
            if candidate is state:
                self._housekeep(name, state)

    def _queue(self, name: str) -> _Queue:
        if name not in self._queues:
            raise KeyError(f"no queue named {name!r} in the emulated namespace")
        return self._queues[name]

    def _event(self, kind: str, queue: str, message_id: str, detail: str = "") -> None:
        self.events.append(Event(time.time(), kind, queue, message_id, detail))


# The namespace across processes: the Functions host's language worker sends and peeks
# through it while the host (the test process) receives and settles.


class NamespaceServer:
    """Serves a Namespace's methods on a loopback port, one thread per connection."""

    METHODS = frozenset({"send", "receive", "renew", "settle", "peek", "properties"})

    def __init__(self, namespace: Namespace):
        self.namespace = namespace
        self.authkey = secrets.token_bytes(16)
        self._listener = Listener(("127.0.0.1", 0), authkey=self.authkey)
        self.address = self._listener.address
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True, name="servicebus-accept").start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                connection = self._listener.accept()
            except (OSError, EOFError):
                if self._closed.is_set():
                    return
                continue
            threading.Thread(target=self._serve, args=(connection,), daemon=True,
                             name="servicebus-connection").start()

    def _serve(self, connection: Connection) -> None:
        with connection:
            while True:
                try:
                    method, args = connection.recv()
                except (EOFError, OSError):
                    return
                try:
                    if method not in self.METHODS:
                        raise ValueError(f"no method {method!r}")
                    reply = ("ok", getattr(self.namespace, method)(*args))
                except Exception as error:
                    reply = ("error", error)
                try:
                    connection.send(reply)
                except (EOFError, OSError):
                    return

    def close(self) -> None:
        self._closed.set()
        self._listener.close()


class RemoteNamespace:
    """A Namespace in another process: each thread keeps its own connection."""

    def __init__(self, address: tuple[str, int], authkey: bytes):
        self._address = address
        self._authkey = authkey
        self._local = threading.local()

    def _call(self, method: str, *args: Any) -> Any:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = Client(self._address, authkey=self._authkey)
        try:
            connection.send((method, args))
            status, value = connection.recv()
        except (EOFError, OSError) as error:
            self._local.connection = None
            raise ConnectionError(f"the emulated namespace is gone: {error}") from None
        if status == "error":
            raise value
        return value

    def __getattr__(self, method: str) -> Any:
        if method not in NamespaceServer.METHODS:
            raise AttributeError(method)
        return lambda *args: self._call(method, *args)


# Stand-ins for the SDK classes ServiceBusTransport uses.

_installed: dict[str, Any] = {}


def _utc(seconds: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC)


class ReceivedMessage:
    """The public attributes of azure.servicebus.ServiceBusReceivedMessage that callers read.
    As the SDK documents, received application property keys and string values are bytes."""

    def __init__(self, data: dict[str, Any]):
        self._data = data
        self.message_id = data["message_id"]
        self.sequence_number = data["sequence_number"]
        self.delivery_count = data["delivery_count"]
        self.lock_token = data["lock_token"]
        self.locked_until_utc = _utc(data["locked_until"]) if data["lock_token"] else None
        self.enqueued_time_utc = _utc(data["enqueued_at"])
        self.expires_at_utc = _utc(data["expires_at"])
        self.content_type = data["content_type"]
        self.dead_letter_reason = data["dead_letter_reason"]
        self.dead_letter_error_description = data["dead_letter_description"]
        self.application_properties = {
            _bytes(key): _bytes(value) for key, value in data["application_properties"].items()
        } or None

    @property
    def body(self) -> Iterator[bytes]:
        yield self._data["body"]

    def __str__(self) -> str:
        return self._data["body"].decode(errors="replace")


def _bytes(value: Any) -> Any:
    return value.encode() if isinstance(value, str) else value


def _message_data(message: Any, scheduled_at: float | None = None) -> dict[str, Any]:
    """What the broker keeps of an azure.servicebus.ServiceBusMessage."""
    scheduled = message.scheduled_enqueue_time_utc
    return {"message_id": message.message_id, "body": b"".join(message.body),
            "application_properties": dict(message.application_properties or {}),
            "content_type": message.content_type,
            "ttl": message.time_to_live.total_seconds() if message.time_to_live else None,
            "scheduled_at": scheduled_at or (scheduled.timestamp() if scheduled else None)}


class _Handler:
    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Sender(_Handler):
    def __init__(self, namespace: Any, queue: str):
        self._namespace = namespace
        self._queue = queue

    def send_messages(self, message: Any, **kwargs: Any) -> None:
        for one in message if isinstance(message, list) else [message]:
            self._namespace.send(self._queue, _message_data(one))

    def schedule_messages(self, messages: Any, schedule_time_utc: datetime.datetime,
                          **kwargs: Any) -> list[int]:
        numbers = []
        for one in messages if isinstance(messages, list) else [messages]:
            numbers.append(self._namespace.send(
                self._queue, _message_data(one, schedule_time_utc.timestamp())))
        return numbers


class Receiver(_Handler):
    def __init__(self, namespace: Any, queue: str, sub_queue: Any = None, max_wait_time=None):
        self._namespace = namespace
        self._queue = queue
        self._sub_queue = DEAD_LETTER if sub_queue is not None and "dead" in str(sub_queue).lower() \
            else None
        self._max_wait_time = max_wait_time
        self._last_peeked = 0  # the SDK browses on from here when no sequence_number is given

    def receive_messages(self, max_message_count: int | None = 1,
                         max_wait_time: float | None = None) -> list[ReceivedMessage]:
        wait = max_wait_time if max_wait_time is not None else (self._max_wait_time or 60.0)
        return [ReceivedMessage(data) for data in self._namespace.receive(
            self._queue, self._sub_queue, max_message_count or 1, wait)]

    def peek_messages(self, max_message_count: int = 1, *, sequence_number: int = 0,
                      **kwargs: Any) -> list[ReceivedMessage]:
        found = [ReceivedMessage({**data, "lock_token": ""}) for data in self._namespace.peek(
            self._queue, self._sub_queue, sequence_number or self._last_peeked + 1,
            max_message_count)]
        if found:
            self._last_peeked = found[-1].sequence_number
        return found

    def complete_message(self, message: ReceivedMessage) -> None:
        self._settle(message, "complete")

    def abandon_message(self, message: ReceivedMessage) -> None:
        self._settle(message, "abandon")

    def dead_letter_message(self, message: ReceivedMessage, reason: str | None = None,
                            error_description: str | None = None) -> None:
        self._settle(message, "dead_letter", reason, error_description)

    def renew_message_lock(self, message: ReceivedMessage, **kwargs: Any) -> datetime.datetime:
        try:
            message.locked_until_utc = _utc(self._namespace.renew(
                self._queue, self._sub_queue, message.lock_token))
        except LockLost as lost:
            raise _lock_lost_error(lost) from None
        return message.locked_until_utc

    def _settle(self, message: ReceivedMessage, action: str, *details: str | None) -> None:
        try:
            self._namespace.settle(self._queue, self._sub_queue, message.lock_token, action,
                                   *details)
        except LockLost as lost:
            raise _lock_lost_error(lost) from None


def _lock_lost_error(lost: LockLost) -> Exception:
    from azure.servicebus.exceptions import MessageLockLostError

    return MessageLockLostError(message=str(lost))


class ServiceBusClient(_Handler):
    """azure.servicebus.ServiceBusClient, bound to the installed emulated namespace."""

    def __init__(self, fully_qualified_namespace: str, credential: Any = None, **kwargs: Any):
        self.fully_qualified_namespace = fully_qualified_namespace
        self._namespace = _installed["namespace"]

    @classmethod
    def from_connection_string(cls, conn_str: str, **kwargs: Any) -> ServiceBusClient:
        endpoint = dict(part.split("=", 1) for part in conn_str.split(";") if "=" in part)
        return cls(endpoint["Endpoint"].removeprefix("sb://").strip("/"))

    def get_queue_sender(self, queue_name: str, **kwargs: Any) -> Sender:
        return Sender(self._namespace, queue_name)

    def get_queue_receiver(self, queue_name: str, *, sub_queue: Any = None,
                           max_wait_time: float | None = None, **kwargs: Any) -> Receiver:
        return Receiver(self._namespace, queue_name, sub_queue, max_wait_time)


@dataclass(frozen=True)
class QueueRuntimeProperties:
    active_message_count: int
    scheduled_message_count: int
    dead_letter_message_count: int


class ServiceBusAdministrationClient(_Handler):
    def __init__(self, fully_qualified_namespace: str, credential: Any = None, **kwargs: Any):
        self._namespace = _installed["namespace"]

    @classmethod
    def from_connection_string(cls, conn_str: str, **kwargs: Any) -> ServiceBusAdministrationClient:
        return cls("")

    def get_queue_runtime_properties(self, queue_name: str, **kwargs: Any) -> QueueRuntimeProperties:
        return QueueRuntimeProperties(**self._namespace.properties(queue_name))


CONNECTION_STRING = ("Endpoint=sb://emulated.servicebus.local/;SharedAccessKeyName=RootManageSharedAccessKey;"
                     "SharedAccessKey=emulated")


def install(namespace: Namespace | RemoteNamespace) -> Callable[[], None]:
    """Make the SDK names that ServiceBusTransport imports resolve to these stand-ins;
    returns the function that puts the SDK's own classes back."""
    import azure.servicebus
    import azure.servicebus.management

    originals = (azure.servicebus.ServiceBusClient,
                 azure.servicebus.management.ServiceBusAdministrationClient)
    _installed["namespace"] = namespace
    azure.servicebus.ServiceBusClient = ServiceBusClient
    azure.servicebus.management.ServiceBusAdministrationClient = ServiceBusAdministrationClient

    def uninstall() -> None:
        (azure.servicebus.ServiceBusClient,
         azure.servicebus.management.ServiceBusAdministrationClient) = originals
        _installed.pop("namespace", None)

    return uninstall
