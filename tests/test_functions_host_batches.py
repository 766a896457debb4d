"""The emulated Functions host runs batch (`cardinality="many"`) Service Bus triggers and several
Service Bus triggers in one app as the real host does (tests/emulation/functions_host.py;
docs/reliability.md has the sources). A throwaway app of its own: `batch` on one queue,
`single` on another; both write what they were handed to a file. Seconds stand for minutes."""

from __future__ import annotations

import datetime
import json
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from emulation import language_worker
from emulation.functions_host import FunctionsHost, ServiceBusTrigger, batch_payload
from emulation.servicebus import (
    CONNECTION_STRING,
    DEAD_LETTER,
    MAX_DELIVERY_REASON,
    Namespace,
    NamespaceServer,
    QueueRules,
    Receiver,
)

BATCH_QUEUE, SINGLE_QUEUE = "batch-jobs", "single-jobs"
RULES = QueueRules()  # as deployed: a five-minute lock

APP = '''
import json
import os
import time

import azure.functions as func

app = func.FunctionApp()


def record(**fields):
    with open(os.environ["RECORD_FILE"], "a") as out:
        out.write(json.dumps(fields) + "\\n")


def work(function, messages, bodies):
    """Record what came, sleep as a body asks ("sleep", or "sleep_first" on a first
    delivery), record the end, raise if a body says "fail"."""
    ids = [m.message_id for m in messages]
    record(function=function, event="start", at=time.time(), ids=ids, bodies=bodies,
           deliveries=[m.delivery_count for m in messages],
           sequence=[m.sequence_number for m in messages],
           enqueued=[m.enqueued_time_utc.isoformat() for m in messages],
           properties=[m.application_properties for m in messages])
    for message, body in zip(messages, bodies):
        if isinstance(body, dict):
            time.sleep(body.get("sleep", 0))
            if message.delivery_count == 1:
                time.sleep(body.get("sleep_first", 0))
    record(function=function, event="end", at=time.time(), ids=ids)
    if "fail" in bodies:
        raise RuntimeError("a body says fail")


@app.service_bus_queue_trigger(arg_name="msgs", queue_name="%BATCH_QUEUE%",
                               connection="SB_CONNECTION", cardinality=func.Cardinality.MANY)
def batch(msgs: list[func.ServiceBusMessage]) -> None:
    work("batch", msgs, [json.loads(m.get_body()) for m in msgs])


@app.service_bus_queue_trigger(arg_name="msg", queue_name="%SINGLE_QUEUE%",
                               connection="SB_CONNECTION")
def single(msg: func.ServiceBusMessage) -> None:
    work("single", [msg], [json.loads(msg.get_body())])
'''

HOST_JSON = {
    "version": "2.0",
    "functionTimeout": "00:01:00",
    "extensions": {"serviceBus": {"prefetchCount": 0, "maxConcurrentCalls": 2,
                                  "maxMessageBatchSize": 3,
                                  "maxAutoLockRenewalDuration": "00:05:00"}},
}


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("batch-app")
    (directory / "function_app.py").write_text(textwrap.dedent(APP))
    (directory / "host.json").write_text(json.dumps(HOST_JSON))
    return directory


@dataclass
class Run:
    namespace: Namespace
    hosts: list[FunctionsHost]
    record: Path

    @property
    def host(self) -> FunctionsHost:
        return self.hosts[0]

    def send(self, queue: str, message_id: str, body: Any, **options: Any) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.namespace.send(queue, {"message_id": message_id, "body": data, **options})

    def records(self, function: str, event: str = "start") -> list[dict[str, Any]]:
        if not self.record.exists():
            return []
        lines = [json.loads(line) for line in self.record.read_text().splitlines() if line]
        return [r for r in lines if r["function"] == function and r["event"] == event]

    def idle(self, *queues: str, timeout: float = 20) -> None:
        for queue in queues:
            assert self.namespace.wait_idle(queue, timeout), f"{queue} still holds messages"
        # the settlement that emptied the queue is recorded just after
        wait_for(lambda: all(h._in_flight == 0 for h in self.hosts), 10, "hosts to settle")


@contextmanager
def running(app_dir: Path, tmp_path: Path, batch_rules: QueueRules = RULES,
            single_rules: QueueRules = RULES, hosts: int = 1, receive: bool = True,
            **settings: str) -> Iterator[Run]:
    namespace = Namespace({BATCH_QUEUE: batch_rules, SINGLE_QUEUE: single_rules})
    server = NamespaceServer(namespace)
    record = tmp_path / "record.jsonl"
    env = {"BATCH_QUEUE": BATCH_QUEUE, "SINGLE_QUEUE": SINGLE_QUEUE,
           "SB_CONNECTION": CONNECTION_STRING, "RECORD_FILE": str(record), **settings}
    run = Run(namespace, [], record)
    try:
        for n in range(hosts):
            host = FunctionsHost(app_dir, env, namespace, server, log=tmp_path / f"host{n}.log")
            run.hosts.append(host)
            host.start(receive)
        yield run
    finally:
        for host in run.hosts:
            host.crash()
        server.close()


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def test_the_host_listens_on_every_service_bus_trigger_of_the_app(app_dir, tmp_path):
    with running(app_dir, tmp_path) as run:
        assert run.host.triggers == [
            ServiceBusTrigger("batch", BATCH_QUEUE, "many", None, "msgs"),
            ServiceBusTrigger("single", SINGLE_QUEUE, "one", None, "msg")]
        assert [e.function for e in run.host.history("listener-started")] == ["batch", "single"]
    with running(app_dir, tmp_path, SINGLE_QUEUE="no-such-queue") as run:
        assert [t.function for t in run.host.triggers] == ["batch"]
        [failed] = run.host.history("listener-failed")
        assert failed.function == "single" and "no-such-queue" in failed.detail
    namespace = Namespace({BATCH_QUEUE: RULES, SINGLE_QUEUE: RULES})
    server = NamespaceServer(namespace)
    env = {"BATCH_QUEUE": BATCH_QUEUE, "SINGLE_QUEUE": SINGLE_QUEUE,
           "SB_CONNECTION": CONNECTION_STRING, "RECORD_FILE": str(tmp_path / "unused")}
    try:
        # as tests/deployed.py calls it: the queue of one of the functions, positionally
        host = FunctionsHost(app_dir, env, namespace, server, SINGLE_QUEUE, None,
                             tmp_path / "named.log")
        try:
            host.start()
            assert [(t.function, t.queue) for t in host.triggers] == [
                ("batch", BATCH_QUEUE), ("single", SINGLE_QUEUE)]
        finally:
            host.crash()
        # a trigger named with a queue: that queue in place of its setting's
        host = FunctionsHost(app_dir, {**env, "BATCH_QUEUE": "not-this-one"}, namespace,
                             server, BATCH_QUEUE, log=tmp_path / "named.log", trigger="batch")
        try:
            host.start()
            assert [(t.function, t.queue) for t in host.triggers] == [
                ("batch", BATCH_QUEUE), ("single", SINGLE_QUEUE)]
            assert (host.queue, host.trigger) == (BATCH_QUEUE, "batch")
        finally:
            host.crash()
        unresolved = {k: v for k, v in env.items() if k != "SINGLE_QUEUE"}
        host = FunctionsHost(app_dir, unresolved, namespace, server, log=tmp_path / "unset.log")
        try:
            host.start()
            assert [t.function for t in host.triggers] == ["batch"]
            assert "'%SINGLE_QUEUE%' does not resolve" in host.history("listener-failed")[0].detail
        finally:
            host.crash()
        for wrong in ({"trigger": "blast_worker"}, {"queue": "elsewhere"}):
            host = FunctionsHost(app_dir, env, namespace, server, log=tmp_path / "wrong.log",
                                 **wrong)
            try:
                with pytest.raises(LookupError):
                    host.start()
            finally:
                host.crash()
    finally:
        server.close()


def test_a_batch_holds_at_most_max_message_batch_size_messages_with_their_metadata(
        app_dir, tmp_path):
    with running(app_dir, tmp_path, receive=False) as run:
        sent = time.time()
        for n in range(7):
            run.send(BATCH_QUEUE, f"m{n}", {"n": n},
                     application_properties={"tenant": f"t{n}"} if n == 0 else {})
        run.host.resume()
        run.idle(BATCH_QUEUE)
        batches = run.records("batch")
        assert [b["ids"] for b in batches] == [["m0", "m1", "m2"], ["m3", "m4", "m5"], ["m6"]]
        assert batches[0]["bodies"] == [{"n": 0}, {"n": 1}, {"n": 2}]
        assert all(b["deliveries"] == [1] * len(b["ids"]) for b in batches)
        sequence = [s for b in batches for s in b["sequence"]]
        assert sequence == sorted(sequence) and len(set(sequence)) == 7
        assert batches[0]["properties"] == [{"tenant": "t0"}, {}, {}]
        enqueued = datetime.datetime.fromisoformat(batches[0]["enqueued"][0])
        # a batch's dates are DateTimes of unspecified kind: naive, in UTC
        assert enqueued.tzinfo is None
        assert abs(enqueued.replace(tzinfo=datetime.UTC).timestamp() - sent) < 5
        invoked = run.host.history("invoked", "batch")
        assert [e.message_ids for e in invoked] == [("m0", "m1", "m2"), ("m3", "m4", "m5"),
                                                    ("m6",)]
        assert len(run.host.history("returned", "batch")) == 3
        assert sorted(e.detail for e in run.host.history("completed", "batch")) == \
            [f"m{n}" for n in range(7)]
        assert run.host.history("abandoned") == []


def test_a_raising_batch_abandons_every_message_until_the_dead_letter_queue(app_dir, tmp_path):
    with running(app_dir, tmp_path, QueueRules(max_delivery_count=3), receive=False) as run:
        run.send(BATCH_QUEUE, "good", {"n": 1})
        run.send(BATCH_QUEUE, "bad", "fail")
        run.host.resume()
        run.idle(BATCH_QUEUE)
        batches = run.records("batch")
        assert [b["ids"] for b in batches] == [["good", "bad"]] * 3
        assert [b["deliveries"] for b in batches] == [[1, 1], [2, 2], [3, 3]]
        assert len(run.host.history("raised", "batch")) == 3
        assert sorted(e.detail for e in run.host.history("abandoned", "batch")) == \
            ["bad"] * 3 + ["good"] * 3
        assert run.host.history("completed") == []
        dead = run.namespace.peek(BATCH_QUEUE, DEAD_LETTER, 0, 10)
        assert [(d["message_id"], d["dead_letter_reason"]) for d in dead] == [
            ("good", MAX_DELIVERY_REASON), ("bad", MAX_DELIVERY_REASON)]


def test_a_body_that_is_not_json_fails_the_binding_of_the_whole_batch(app_dir, tmp_path):
    """No dataType (the decorator's default): the host binds each body as a JSON object."""
    with running(app_dir, tmp_path, QueueRules(max_delivery_count=2), receive=False) as run:
        run.send(BATCH_QUEUE, "json", {"n": 1})
        run.send(BATCH_QUEUE, "text", b"plain text")
        run.host.resume()
        run.idle(BATCH_QUEUE)
        assert run.records("batch") == []  # the function never ran
        raised = run.host.history("raised", "batch")
        assert len(raised) == 2
        assert all("Exception binding parameter 'msgs'" in e.detail for e in raised)
        assert run.namespace.properties(BATCH_QUEUE)["dead_letter_message_count"] == 2


def test_a_batch_outliving_its_lock_loses_it_while_a_single_message_keeps_its_own(
        app_dir, tmp_path):
    """No lock renewal for batches: the message comes back while its first batch runs, another
    instance runs it, and the first batch's completion fails. A single-message function's
    lock is renewed past the lock duration."""
    rules = QueueRules(lock_duration=1.0)
    with running(app_dir, tmp_path, rules, rules, hosts=2) as run:
        run.send(BATCH_QUEUE, "slow-batch", {"sleep_first": 2.5})
        run.send(SINGLE_QUEUE, "slow-single", {"sleep": 2.5})
        run.idle(BATCH_QUEUE, SINGLE_QUEUE)
        wait_for(lambda: len(run.records("batch", "end")) == 2, 10, "both batches to end")
        first, second = run.records("batch")
        assert (first["deliveries"], second["deliveries"]) == ([1], [2])
        first_end = next(r for r in run.records("batch", "end") if r["at"] > first["at"] + 2)
        assert second["at"] < first_end["at"], "redelivered while the first batch ran"
        lost = [e for h in run.hosts for e in h.history("settle-failed", "batch")]
        assert [e.detail for e in lost] == ["slow-batch complete: MessageLockLostError"]
        assert [e.message_id for e in run.namespace.history("lock-expired")] == ["slow-batch"]
        assert len([e for e in run.namespace.history("completed")
                    if e.message_id == "slow-batch"]) == 1
        assert [r["deliveries"] for r in run.records("single")] == [[1]]
        assert [e for h in run.hosts for e in h.history("settle-failed", "single")] == []


def test_both_triggers_run_at_once_each_on_its_own_queue(app_dir, tmp_path):
    with running(app_dir, tmp_path, receive=False) as run:
        run.send(BATCH_QUEUE, "b1", {"sleep": 2.0})
        run.send(SINGLE_QUEUE, "s1", {"sleep": 0.8})
        run.send(SINGLE_QUEUE, "s2", {"sleep": 0.8})
        run.host.resume()
        run.idle(BATCH_QUEUE, SINGLE_QUEUE)
        [batch_start], [batch_end] = run.records("batch"), run.records("batch", "end")
        singles, single_ends = run.records("single"), run.records("single", "end")
        assert sorted(i for r in singles for i in r["ids"]) == ["s1", "s2"]
        assert batch_start["ids"] == ["b1"]
        # maxConcurrentCalls 2 for `single`: both at once, and both while the batch runs
        assert max(r["at"] for r in singles) < min(r["at"] for r in single_ends)
        assert max(r["at"] for r in singles) < batch_end["at"]
        assert min(r["at"] for r in single_ends) > batch_start["at"]


def test_the_worker_dying_mid_batch_abandons_every_message_of_it(app_dir, tmp_path):
    with running(app_dir, tmp_path, receive=False) as run:
        for n in range(3):
            run.send(BATCH_QUEUE, f"k{n}", {"sleep_first": 30})
        run.host.resume()
        wait_for(lambda: run.records("batch"), 20, "the batch to start")
        run.host.kill_worker()
        run.idle(BATCH_QUEUE, timeout=30)
        assert [b["deliveries"] for b in run.records("batch")] == [[1, 1, 1], [2, 2, 2]]
        [raised] = run.host.history("raised", "batch")
        assert "died" in raised.detail and raised.message_ids == ("k0", "k1", "k2")
        assert sorted(e.detail for e in run.host.history("abandoned", "batch")) == \
            ["k0", "k1", "k2"]
        assert len(run.host.history("completed", "batch")) == 3


def test_batch_sizes_from_app_settings_and_a_minimum_batch_waits_for_more(app_dir, tmp_path):
    overrides = {"AzureFunctionsJobHost__extensions__serviceBus__maxMessageBatchSize": "5",
                 "AzureFunctionsJobHost__extensions__serviceBus__minMessageBatchSize": "4",
                 "AzureFunctionsJobHost__extensions__serviceBus__maxBatchWaitTime": "00:00:01"}
    with running(app_dir, tmp_path, receive=False, **overrides) as run:
        limits = run.host.limits
        assert (limits.max_message_batch_size, limits.min_message_batch_size,
                limits.max_batch_wait_time) == (5, 4, 1.0)
        for n in range(7):
            run.send(BATCH_QUEUE, f"w{n}", {"n": n})
        run.host.resume()
        run.idle(BATCH_QUEUE)
        full, partial = run.records("batch")
        assert (len(full["ids"]), len(partial["ids"])) == (5, 2)
        [full_end, _] = run.records("batch", "end")
        assert partial["at"] - full_end["at"] >= 0.9, "the partial batch waited maxBatchWaitTime"


def test_what_the_host_sends_for_a_batch_becomes_the_list_the_library_builds():
    """In one process: `batch_payload` (the host) and `servicebus_batch_input` (the worker)."""
    namespace = Namespace({"q": QueueRules()})
    namespace.send("q", {"message_id": "a", "body": b'{"at": "2024-01-19T12:50:41.250940Z"}',
                         "application_properties": {"k": "v"}})
    namespace.send("q", {"message_id": "b", "body": b'"text"', "content_type": "text/plain"})
    namespace.send("q", {"message_id": "c", "body": b""})
    messages = Receiver(namespace, "q").receive_messages(10, max_wait_time=1)

    def handed(data_type: str | None) -> list[Any]:
        payload, error = batch_payload(ServiceBusTrigger("f", "q", "many", data_type, "msgs"),
                                       messages)
        assert error is None
        return language_worker.servicebus_batch_input(payload)

    binary = handed("binary")
    assert [m.get_body() for m in binary] == [b'{"at": "2024-01-19T12:50:41.250940Z"}',
                                             b'"text"', b""]
    assert [(m.message_id, m.delivery_count) for m in binary] == [("a", 1), ("b", 1), ("c", 1)]
    assert [m.sequence_number for m in binary] == [1, 2, 3]
    assert [m.application_properties for m in binary] == [{"k": "v"}, {}, {}]
    assert all(m.lock_token for m in binary)
    # string arrays lose their empty entries: the one content type shows on the first message
    assert [m.content_type for m in binary] == ["text/plain", None, None]
    # no dataType: each body through Json.NET (its date rewritten), then json.dumps per message
    assert [m.get_body() for m in handed(None)] == [b'{"at": "2024-01-19T12:50:41.25094+00:00"}',
                                                   b'"text"', b"null"]
    # dataType string: the empty body is left out, and the library cannot pair the bodies
    with pytest.raises(IndexError):
        handed("string")
    bad = Namespace({"q": QueueRules()})
    bad.send("q", {"message_id": "x", "body": b"\xff not text"})
    _, error = batch_payload(ServiceBusTrigger("f", "q", "many", None, "msgs"),
                             Receiver(bad, "q").receive_messages(1, max_wait_time=1))
    assert error and "Exception binding parameter 'msgs'" in error
