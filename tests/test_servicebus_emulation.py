"""The emulated Service Bus keeps the documented rules it claims (tests/emulation/servicebus.py;
docs/reliability.md has the sources). Seconds stand for the deployed minutes and hours."""

import datetime
import time

import pytest
from azure.servicebus import ServiceBusMessage, ServiceBusSubQueue
from azure.servicebus.exceptions import MessageLockLostError
from emulation.servicebus import (
    EXPIRED_REASON,
    MAX_DELIVERY_REASON,
    Namespace,
    NamespaceServer,
    QueueRules,
    RemoteNamespace,
    ServiceBusAdministrationClient,
    ServiceBusClient,
    install,
)

RULES = QueueRules(lock_duration=0.6, max_delivery_count=3, default_ttl=30, duplicate_window=2)


@pytest.fixture
def client():
    namespace = Namespace({"q": RULES})
    uninstall = install(namespace)
    yield ServiceBusClient.from_connection_string(
        "Endpoint=sb://emulated/;SharedAccessKeyName=k;SharedAccessKey=v"), namespace
    uninstall()


def send(client, body: str, message_id: str, **options) -> None:
    client.get_queue_sender("q").send_messages(ServiceBusMessage(body, message_id=message_id,
                                                                 **options))


def test_peek_lock_hides_a_message_until_its_lock_expires_and_counts_deliveries(client):
    client, _ = client
    send(client, "a", "m1")
    receiver = client.get_queue_receiver("q")
    [first] = receiver.receive_messages(5, max_wait_time=1)
    assert (first.message_id, first.delivery_count, b"".join(first.body)) == ("m1", 0, b"a")
    assert receiver.receive_messages(1, max_wait_time=0.2) == []  # locked
    [again] = receiver.receive_messages(1, max_wait_time=2)  # the lock expired
    assert again.delivery_count == 1
    with pytest.raises(MessageLockLostError):
        receiver.complete_message(first)  # the first lock is gone
    receiver.complete_message(again)
    assert receiver.receive_messages(1, max_wait_time=0.8) == []


def test_renewal_keeps_the_lock_and_abandon_returns_the_message_at_once(client):
    client, _ = client
    send(client, "a", "m1")
    receiver = client.get_queue_receiver("q")
    [message] = receiver.receive_messages(1, max_wait_time=1)
    for _ in range(3):
        time.sleep(0.3)
        receiver.renew_message_lock(message)
    assert receiver.receive_messages(1, max_wait_time=0.2) == []
    receiver.abandon_message(message)
    [back] = receiver.receive_messages(1, max_wait_time=0.2)
    assert back.delivery_count == 1


def test_the_last_allowed_delivery_moves_the_message_to_the_dead_letter_queue(client):
    client, _ = client
    send(client, "a", "m1", application_properties={"traceparent": "t"})
    receiver = client.get_queue_receiver("q")
    for count in range(RULES.max_delivery_count):
        [message] = receiver.receive_messages(1, max_wait_time=1)
        assert message.delivery_count == count
        receiver.abandon_message(message)
    assert receiver.receive_messages(1, max_wait_time=0.2) == []
    dead = client.get_queue_receiver("q", sub_queue=ServiceBusSubQueue.DEAD_LETTER)
    [letter] = dead.peek_messages(10)
    assert letter.dead_letter_reason == MAX_DELIVERY_REASON
    assert letter.application_properties == {b"traceparent": b"t"}  # bytes, as the SDK returns
    assert dead.peek_messages(10) == []  # browsing goes on from the last sequence number
    [received] = dead.receive_messages(1, max_wait_time=1)
    dead.complete_message(received)
    admin = ServiceBusAdministrationClient.from_connection_string("x")
    assert admin.get_queue_runtime_properties("q").dead_letter_message_count == 0


def test_duplicate_detection_accepts_the_send_and_drops_the_message(client):
    client, namespace = client
    send(client, "a", "same")
    send(client, "b", "same")
    receiver = client.get_queue_receiver("q")
    [only] = receiver.receive_messages(5, max_wait_time=0.5)
    assert b"".join(only.body) == b"a"
    receiver.complete_message(only)
    assert [e.kind for e in namespace.history("duplicate")] == ["duplicate"]
    time.sleep(RULES.duplicate_window)
    send(client, "c", "same")  # outside the window
    assert len(receiver.receive_messages(1, max_wait_time=0.5)) == 1


def test_expired_messages_go_to_the_dead_letter_queue_but_not_while_locked(client):
    client, _ = client
    sender = client.get_queue_sender("q")
    for message_id in ("short", "held"):
        sender.send_messages(ServiceBusMessage(message_id, message_id=message_id,
                                               time_to_live=datetime.timedelta(seconds=1)))
    receiver = client.get_queue_receiver("q")
    held = next(m for m in receiver.receive_messages(2, max_wait_time=0.5)
                if m.message_id == "held")
    for _ in range(6):  # the SDK keeps whole seconds of a time to live
        time.sleep(0.25)
        receiver.renew_message_lock(held)
    receiver.complete_message(held)  # past its time to live, but locked all along
    dead = client.get_queue_receiver("q", sub_queue=ServiceBusSubQueue.DEAD_LETTER)
    assert dead.peek_messages(10) == [], "expired messages move only while a receiver pulls"
    assert receiver.receive_messages(1, max_wait_time=0.1) == []
    assert [(m.message_id, m.dead_letter_reason) for m in dead.peek_messages(10)] == \
        [("short", EXPIRED_REASON)]


def test_scheduled_messages_appear_at_their_time(client):
    client, namespace = client
    sender = client.get_queue_sender("q")
    at = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=1)
    sender.schedule_messages(ServiceBusMessage("later", message_id="later"), at)
    send(client, "now", "now", scheduled_enqueue_time_utc=at)
    assert namespace.properties("q")["scheduled_message_count"] == 2
    receiver = client.get_queue_receiver("q")
    assert receiver.receive_messages(5, max_wait_time=0.3) == []
    found = receiver.receive_messages(5, max_wait_time=2)
    assert sorted(m.message_id for m in found) == ["later", "now"]
    assert all(m.enqueued_time_utc >= at - datetime.timedelta(milliseconds=1) for m in found)


def test_another_process_reaches_the_namespace_through_its_server():
    namespace = Namespace({"q": RULES})
    server = NamespaceServer(namespace)
    try:
        remote = RemoteNamespace(server.address, server.authkey)
        uninstall = install(remote)
        try:
            client = ServiceBusClient("emulated")
            send(client, "over the wire", "w1")
            [message] = client.get_queue_receiver("q").receive_messages(1, max_wait_time=1)
            assert b"".join(message.body) == b"over the wire"
            with pytest.raises(MessageLockLostError):
                client.get_queue_receiver("q").complete_message(
                    type(message)({**message._data, "lock_token": "not-a-lock"}))
        finally:
            uninstall()
    finally:
        server.close()
