"""The Service Bus transport. Service Bus cannot run here (its emulator needs Docker), so the
first tests stop at the SDK boundary: a recording stand-in for the SDK's sender and receiver,
given the SDK's own message types. The integration test runs against a real namespace or the
official emulator when BLAST_TEST_SERVICEBUS holds a connection string, and is skipped
otherwise."""

import os
from datetime import UTC, datetime, timedelta

import pytest
import requests
from azure.servicebus import ServiceBusMessage
from conftest import SMALL_DB, sample_queries, service_env, start_server, wait_for_job

from blast_core.domain import jobs, messages
from blast_core.domain.limits import MESSAGE_TTL
from blast_core.settings import Settings
from blast_core.storage.ports import Outgoing
from blast_core.storage.queues import ServiceBusDelivery, ServiceBusTransport


class RecordingSender:
    def __init__(self):
        self.sent: list[ServiceBusMessage] = []

    def send_messages(self, message: ServiceBusMessage) -> None:
        self.sent.append(message)

    def close(self) -> None:
        pass


class RecordingClient:
    def __init__(self):
        self.sender = RecordingSender()
        self.senders_opened = 0

    def get_queue_sender(self, queue_name: str) -> RecordingSender:
        assert queue_name == "blast-jobs"
        self.senders_opened += 1
        return self.sender

    def close(self) -> None:
        pass


def send(transport: ServiceBusTransport, message: messages.Message, delay: float = 0) -> None:
    transport.send(Outgoing(message.encode(), message.first_id, dict(message.trace)), delay)


def test_send_sets_our_message_id_a_time_to_live_and_a_schedule_for_a_delay():
    client = RecordingClient()
    transport = ServiceBusTransport(client, "blast-jobs")
    ids = [jobs.new_job_id() for _ in range(3)]
    for job_id in ids:
        send(transport, messages.batch_message(job_id, 2))
    assert [m.message_id for m in client.sender.sent] == [f"{job_id}-2" for job_id in ids]
    assert [messages.decode(b"".join(m.body)) for m in client.sender.sent] == \
        [messages.batch_message(job_id, 2) for job_id in ids]
    assert client.sender.sent[0].content_type == "application/json"
    assert client.sender.sent[0].time_to_live == timedelta(seconds=MESSAGE_TTL)
    assert client.sender.sent[0].scheduled_enqueue_time_utc is None
    assert client.senders_opened == 1, "one AMQP link is reused for every send"
    before = datetime.now(UTC)
    send(transport, messages.batch_message(ids[0], 2), delay=30)
    scheduled = client.sender.sent[-1].scheduled_enqueue_time_utc
    assert timedelta(seconds=29) < scheduled - before < timedelta(seconds=31)


def test_send_sets_the_trace_context_as_application_properties():
    client = RecordingClient()
    transport = ServiceBusTransport(client, "blast-jobs")
    job_id = jobs.new_job_id()
    trace = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    send(transport, messages.batch_message(job_id, 0, trace))
    send(transport, messages.batch_message(job_id, 1))
    traced, untraced = client.sender.sent
    assert traced.application_properties == trace
    assert messages.decode(b"".join(traced.body)).trace == trace
    assert not untraced.application_properties


class ReceivedMessage:
    """What the SDK hands a receiver: a body of byte sections and the broker's count of
    earlier deliveries (0 on the first)."""

    def __init__(self, body: bytes, delivery_count: int):
        self.body = iter([body[:5], body[5:]])
        self.delivery_count = delivery_count


class RecordingReceiver:
    def __init__(self):
        self.calls: list[tuple[str, dict]] = []

    def complete_message(self, message):
        self.calls.append(("complete", {}))

    def abandon_message(self, message):
        self.calls.append(("abandon", {}))

    def dead_letter_message(self, message, reason):
        self.calls.append(("dead_letter", {"reason": reason}))

    def renew_message_lock(self, message):
        self.calls.append(("renew", {}))


def test_deliveries_count_from_one_like_the_functions_trigger_and_settle():
    client, receiver = RecordingClient(), RecordingReceiver()
    transport = ServiceBusTransport(client, "blast-jobs")
    message = messages.batch_message(jobs.new_job_id(), 0)
    body = message.encode().encode()
    delivery = ServiceBusDelivery(transport, receiver, ReceivedMessage(body, delivery_count=0))
    assert (delivery.body, delivery.delivery_count) == (body, 1)
    delivery.renew()
    copy = message.retried(1)
    delivery.retry_later(5, Outgoing(copy.encode(), copy.resend_id()))
    delivery.dead_letter("x" * 5000)
    delivery.abandon()
    assert [c[0] for c in receiver.calls] == ["renew", "complete", "dead_letter", "abandon"]
    assert len(receiver.calls[2][1]["reason"]) == 4096
    [scheduled] = client.sender.sent  # a retry is a scheduled copy: abandon has no delay
    assert messages.decode(b"".join(scheduled.body)).attempts == 1
    assert scheduled.scheduled_enqueue_time_utc is not None
    assert scheduled.message_id.startswith(message.first_id + "-")


def test_identity_based_settings_need_no_secret():
    transport = ServiceBusTransport.connect(Settings.from_env({
        "BLAST_SERVICEBUS__fullyQualifiedNamespace": "example.servicebus.windows.net"}),
        "blast-jobs")
    assert transport._client.fully_qualified_namespace == "example.servicebus.windows.net"
    transport.close()


REAL_SERVICEBUS = os.environ.get("BLAST_TEST_SERVICEBUS", "")


@pytest.mark.servicebus
@pytest.mark.skipif(not REAL_SERVICEBUS, reason="set BLAST_TEST_SERVICEBUS to a Service Bus "
                    "connection string (and BLAST_TEST_SERVICEBUS_QUEUE) to run")
def test_jobs_flow_through_a_real_service_bus_queue(azurite, blast_available, tmp_path):
    env = service_env(azurite, BLAST_QUEUE_TRANSPORT="servicebus",
                      BLAST_SERVICEBUS=REAL_SERVICEBUS,
                      BLAST_QUEUE_NAME=os.environ.get("BLAST_TEST_SERVICEBUS_QUEUE", "blast-jobs"))
    server = start_server(env, tmp_path / "serve.log", workers=1)
    try:
        job = requests.post(f"{server.url}/jobs", json={
            "query": sample_queries(SMALL_DB, 1, seed=31), "database": SMALL_DB}).json()
        assert wait_for_job(server.url, job["id"], timeout=120)["status"] == "succeeded"
    finally:
        server.stop()
