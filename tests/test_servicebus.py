"""The Service Bus transport. Service Bus cannot run here (its emulator needs Docker), so the
first tests stop at the SDK boundary: a recording stand-in for the SDK's sender and receiver,
given the SDK's own message types. The integration test runs against a real namespace or the
official emulator when BLAST_TEST_SERVICEBUS holds a connection string, and is skipped
otherwise."""

import os

import pytest
import requests
from azure.servicebus import ServiceBusMessage
from conftest import SMALL_DB, sample_queries, service_env, start_server, wait_for_job

from blast_core import jobs
from blast_core.settings import Settings
from blast_core.transports import ServiceBusDelivery, ServiceBusTransport


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


def test_send_sets_the_job_id_as_message_id_for_duplicate_detection():
    client = RecordingClient()
    transport = ServiceBusTransport(client, "blast-jobs")
    ids = [jobs.new_job_id() for _ in range(3)]
    for job_id in ids:
        transport.send(jobs.encode_message(job_id, 2), message_id=jobs.message_id(job_id, 2))
    assert [m.message_id for m in client.sender.sent] == [f"{job_id}-2" for job_id in ids]
    assert [jobs.decode_message(b"".join(m.body)) for m in client.sender.sent] == \
        [(job_id, 2) for job_id in ids]
    assert client.sender.sent[0].content_type == "application/json"
    assert client.senders_opened == 1, "one AMQP link is reused for every send"


def test_send_sets_the_trace_context_as_application_properties():
    client = RecordingClient()
    transport = ServiceBusTransport(client, "blast-jobs")
    job_id = jobs.new_job_id()
    trace = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    transport.send(jobs.encode_message(job_id, 0, trace), message_id=jobs.message_id(job_id, 0),
                   properties=trace)
    transport.send(jobs.encode_message(job_id, 1), message_id=jobs.message_id(job_id, 1))
    traced, untraced = client.sender.sent
    assert traced.application_properties == trace
    assert jobs.message_trace(b"".join(traced.body)) == trace
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


def test_deliveries_count_from_one_like_the_functions_trigger_and_settle():
    receiver = RecordingReceiver()
    body = jobs.encode_message(jobs.new_job_id()).encode()
    delivery = ServiceBusDelivery(receiver, ReceivedMessage(body, delivery_count=0))
    assert (delivery.body, delivery.delivery_count) == (body, 1)
    delivery.retry_later(5)
    delivery.dead_letter("x" * 5000)
    delivery.complete()
    assert [c[0] for c in receiver.calls] == ["abandon", "dead_letter", "complete"]
    assert len(receiver.calls[1][1]["reason"]) == 4096


def test_identity_based_settings_need_no_secret():
    transport = ServiceBusTransport.connect(Settings.from_env({
        "BLAST_SERVICEBUS__fullyQualifiedNamespace": "example.servicebus.windows.net"}))
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
