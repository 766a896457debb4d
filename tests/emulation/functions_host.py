"""One instance of the Azure Functions host, emulated: it drives `function_app.py` the way the
host does on an Elastic Premium instance. Functions Core Tools cannot be installed here.

What it keeps of the host's documented behaviour (sources in docs/reliability.md):
- the app runs in a separate language worker process (`language_worker.py`), which the host
  starts, restarts when it dies, and restarts when an invocation passes `functionTimeout`,
  killing every invocation running in it;
- every `serviceBusTrigger` binding the worker indexes gets a listener of its own on its own
  queue (`queueName`, `%SETTING%` resolved from the app settings), as each function gets its
  own `ServiceBusListener`;
- a single-message trigger (`cardinality` one) receives in peek-lock, one message per free
  slot, at most `maxConcurrentCalls` at once for that function, prefetch 0; it renews a
  running message's lock up to `maxAutoLockRenewalDuration`; under auto-complete it completes
  the message when the function returns and abandons it when the function raises or its
  worker dies;
- a batch trigger (`cardinality` many) runs one receive loop per function and instance: it
  receives up to `maxMessageBatchSize` messages in one call (as soon as one is there;
  `minMessageBatchSize` above 1 waits for more, at most `maxBatchWaitTime`), invokes the
  function once with all of them, one batch at a time, and when the invocation ends
  completes every message (it returned) or abandons every message (it raised, its
  binding failed or its worker died). `maxConcurrentCalls` and `maxAutoLockRenewalDuration`
  do not apply to batches: the host renews no lock of a batch, so a batch that runs longer
  than the queue's lock duration loses its locks, its messages come back while it runs,
  and settling them at its end fails. Sources: the extension's `ServiceBusListener`
  (`RunBatchReceiveLoopAsync`, `TriggerAndCompleteMessagesInternal`), `ServiceBusOptions`,
  "Azure Service Bus bindings for Azure Functions" (host.json settings), and the maintainers
  in Azure/azure-sdk-for-net#27979 ("Lock renewal also doesn't apply to batch functions");
- what a batch function is handed is built as the host and the worker build it: the host's
  binding data for a batch (`DeliveryCountArray`, `MessageIdArray`, `SequenceNumberArray`,
  `EnqueuedTimeUtcArray`, `UserPropertiesArray`, ... as the extension's
  `ServiceBusTriggerBindingStrategy.AddBindingData` makes them), converted to the gRPC
  `TypedData` the host sends a Python worker (`GrpcMessageConversionExtensions.ToRpc`:
  string[] to `collection_string` without its empty entries, since the Python worker does
  not declare `IncludeEmptyEntriesInMessagePayload`; long[] to `collection_sint64`; int[],
  dates and dictionaries to `json`), and the bodies as the binding's `dataType` asks:
  `binary` as `collection_bytes`, `string` as `collection_string`, and none (the v2
  decorator's default) as `object[]` (`GeneralScriptBindingProvider.GetRequestedType`,
  `JobHostMetadataProvider.GetDefaultType`): each body deserialized by Json.NET
  (`MessageToPocoConverter`, dates parsed as DateTimeOffset by `ServiceBusOptions`'
  serializer settings) and the array sent as `json`, so a body that is not JSON fails the
  binding of the whole batch before any code runs;
- the trigger reports `DeliveryCount` counting from 1, with the message id, sequence number,
  times, lock token and application properties in the trigger metadata;
- HTTP functions are invoked with the request; a caller waits at most `http_timeout` (230 s
  in Azure) while the function runs on;
- scale-in: the instance stops taking messages, running invocations get `scale_in_grace`
  (60 minutes on Premium), then the instance is gone and their messages' locks expire;
- an instance lost outright (`crash`) settles nothing: its messages come back when their
  locks expire.

Its limits are read from host.json with the `AzureFunctionsJobHost__` app-setting overrides,
as the host reads them; tests may shrink durations, which changes no rule.
"""

from __future__ import annotations

import datetime
import itertools
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection, Listener
from pathlib import Path
from typing import Any

from emulation.servicebus import DEAD_LETTER, Namespace, NamespaceServer, ReceivedMessage

WORKER_SCRIPT = Path(__file__).with_name("language_worker.py")
HOST_OVERRIDE_PREFIX = "AzureFunctionsJobHost__"


def timespan_seconds(text: str) -> float:
    """A host.json timespan (`hh:mm:ss`, `d.hh:mm:ss`, fractions allowed) in seconds."""
    match = re.fullmatch(r"(?:(\d+)\.)?(\d+):(\d\d):(\d\d(?:\.\d+)?)", text.strip())
    if not match:
        raise ValueError(f"not a timespan: {text!r}")
    days, hours, minutes, seconds = match.groups()
    return ((int(days or 0) * 24 + int(hours)) * 60 + int(minutes)) * 60 + float(seconds)


def host_setting(host_json: Mapping[str, Any], env: Mapping[str, str], path: str) -> Any:
    """A host.json value by `a__b__c` path; an `AzureFunctionsJobHost__a__b__c` app setting
    overrides it ("host.json reference": override host.json values)."""
    override = env.get(HOST_OVERRIDE_PREFIX + path)
    if override is not None:
        return override
    node: Any = host_json
    for key in path.split("__"):
        matches = [k for k in node if k.lower() == key.lower()] if isinstance(node, dict) else []
        if not matches:
            return None
        node = node[matches[0]]
    return node


@dataclass(frozen=True)
class HostLimits:
    function_timeout: float
    max_concurrent_calls: int  # per single-message function and instance
    max_auto_lock_renewal: float  # single-message functions only
    http_timeout: float = 230.0
    scale_in_grace: float = 3600.0
    max_message_batch_size: int = 1000  # batch functions only, as the three below
    min_message_batch_size: int = 1
    max_batch_wait_time: float = 30.0  # only when min_message_batch_size > 1

    def __post_init__(self) -> None:
        # As the extension checks its options when the host starts
        # (ServiceBusHostBuilderExtensions).
        if self.min_message_batch_size > self.max_message_batch_size:
            raise ValueError("The minimum message batch size must be less than the maximum "
                             "message batch size")
        if self.max_batch_wait_time > 150:
            raise ValueError("maxBatchWaitTime should be no longer than 50% of the entity "
                             "message lock duration: at most 2 minutes and 30 seconds")

    @classmethod
    def read(cls, host_json_path: Path, env: Mapping[str, str], **overrides: float) -> HostLimits:
        host_json = json.loads(host_json_path.read_text())

        def service_bus(name: str, default: Any) -> Any:
            value = host_setting(host_json, env, f"extensions__serviceBus__{name}")
            return default if value is None else value

        return cls(**{
            "function_timeout": timespan_seconds(host_setting(host_json, env, "functionTimeout")),
            "max_concurrent_calls": int(service_bus("maxConcurrentCalls", 16)),
            "max_auto_lock_renewal": timespan_seconds(
                service_bus("maxAutoLockRenewalDuration", "00:05:00")),
            "max_message_batch_size": int(service_bus("maxMessageBatchSize", 1000)),
            "min_message_batch_size": int(service_bus("minMessageBatchSize", 1)),
            "max_batch_wait_time": timespan_seconds(service_bus("maxBatchWaitTime", "00:00:30")),
            **overrides})


@dataclass(frozen=True)
class ServiceBusTrigger:
    """A function's `serviceBusTrigger` binding as the host reads it from the worker's index."""

    function: str
    queue: str  # `queueName`, its %SETTING% resolved
    cardinality: str = "one"  # "one" or "many"
    data_type: str | None = None  # the binding's `dataType`: binary, string, or none
    arg_name: str = "msg"

    @property
    def batch(self) -> bool:
        return self.cardinality == "many"


class WorkerDied(Exception):
    """The language worker process ended while the invocation ran."""


class HttpTimeout(Exception):
    """The caller gave up after `http_timeout` (Azure answers 504 then); the function runs on."""


@dataclass
class Invocation:
    id: str
    function: str
    started: float = field(default_factory=time.monotonic)
    done: threading.Event = field(default_factory=threading.Event)
    ok: bool = False
    value: Any = None


@dataclass
class HostEvent:
    at: float
    kind: str  # worker-started, worker-died, function-timeout, listener-started,
    #            listener-failed, invoked, returned, raised, completed, abandoned,
    #            settle-failed, lock-renewal-ended, scale-in
    detail: str = ""
    function: str = ""  # the Service Bus function, for its events
    message_ids: tuple[str, ...] = ()  # the messages an invocation or a settlement is about


@dataclass(frozen=True)
class HttpResult:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class FunctionsHost:
    """One instance of the host. Its Service Bus listeners are the app's `serviceBusTrigger`
    bindings, found in the function index the worker reports (`triggers`, after `start`).

    `queue` and `trigger` are optional: `trigger` names a Service Bus function the caller
    expects (a LookupError at start if the app has none by that name), and `queue` is the
    queue of that function in place of its resolved `queueName`; without `trigger`, of the
    function already on that queue or of the app's only Service Bus function (a LookupError
    if neither). `limits` default to host.json with the app settings' overrides; `log` (the
    worker's output) to a file in the temporary directory."""

    def __init__(self, app_dir: Path, env: Mapping[str, str], namespace: Namespace,
                 namespace_server: NamespaceServer, queue: str | None = None,
                 limits: HostLimits | None = None, log: Path | None = None,
                 trigger: str | None = None):
        self.app_dir = app_dir
        self.env = dict(env)
        self.namespace = namespace
        self.namespace_server = namespace_server
        self.queue = queue
        self.limits = limits or HostLimits.read(app_dir / "host.json", self.env)
        self.log = log or Path(tempfile.mkstemp(prefix="functions-host-", suffix=".log")[1])
        self.trigger = trigger
        self.triggers: list[ServiceBusTrigger] = []
        self.events: list[HostEvent] = []
        self.functions: dict[str, dict[str, Any]] = {}
        self._host_key = secrets.token_bytes(16)
        self._listener = Listener(("127.0.0.1", 0), authkey=self._host_key)
        self._lock = threading.RLock()
        self._worker: subprocess.Popen[bytes] | None = None
        self._connection: Connection | None = None
        self._pending: dict[str, Invocation] = {}
        self._ids = itertools.count(1)
        self._ready = threading.Event()
        self._receiving = threading.Event()
        self._gone = threading.Event()
        self._slots: list[threading.Thread] = []
        self._in_flight = 0

    # Life cycle

    def start(self, receive: bool = True) -> FunctionsHost:
        """Start the worker and a listener for every Service Bus trigger of the app; they
        take messages once `receive` (or `resume()`)."""
        self._start_worker()
        self.triggers = self._discover_triggers()
        if len(self.triggers) == 1:
            self.queue, self.trigger = self.triggers[0].queue, self.triggers[0].function
        if receive:
            self._receiving.set()
        for trigger in self.triggers:
            if trigger.batch:  # one receive loop per batch function and instance
                self._slots.append(threading.Thread(
                    target=self._batch_loop, args=(trigger,), daemon=True,
                    name=f"sb-batch-{trigger.function}"))
            else:
                self._slots += [threading.Thread(target=self._slot, args=(trigger,), daemon=True,
                                                 name=f"sb-slot-{trigger.function}-{n}")
                                for n in range(self.limits.max_concurrent_calls)]
            self._event("listener-started", f"{trigger.function} on {trigger.queue} "
                        f"(cardinality {trigger.cardinality})", trigger.function)
        for slot in self._slots:
            slot.start()
        return self

    def resume(self) -> None:
        """The trigger starts taking messages (a test sets the stage before)."""
        self._receiving.set()

    def stop(self, timeout: float = 60.0) -> None:
        """Shut down: take no new messages, let running invocations end, stop the worker."""
        self._receiving.clear()
        deadline = time.monotonic() + timeout
        while self._in_flight and time.monotonic() < deadline:
            time.sleep(0.1)
        self._end()

    def scale_in(self) -> None:
        """The scale controller removes this instance: no new messages; running invocations
        get the grace period, then the instance is gone."""
        self._event("scale-in", f"grace {self.limits.scale_in_grace:g} s")
        self._receiving.clear()
        deadline = time.monotonic() + self.limits.scale_in_grace
        while self._in_flight and time.monotonic() < deadline:
            time.sleep(0.05)
        self.crash()

    def crash(self) -> None:
        """The instance is lost at once: nothing it held is settled."""
        self._receiving.clear()
        self._gone.set()
        self._end()

    def kill_worker(self) -> None:
        """The language worker process dies (kill -9); the host lives on and restarts it."""
        with self._lock:
            worker = self._worker
        if worker is not None and worker.poll() is None:
            worker.send_signal(signal.SIGKILL)

    def _end(self) -> None:
        self._gone.set()
        with self._lock:
            worker = self._worker
        if worker is not None and worker.poll() is None:
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=30)
        for slot in self._slots:
            slot.join(timeout=30)
        self._listener.close()

    @property
    def worker_pid(self) -> int | None:
        return self._worker.pid if self._worker else None

    # The language worker

    def _start_worker(self) -> None:
        self._ready.clear()
        env = {**os.environ, **self.env, "EMULATED_HOST_KEY": self._host_key.hex(),
               "EMULATED_NAMESPACE_KEY": self.namespace_server.authkey.hex(),
               "FUNCTIONS_WORKER_RUNTIME": "python"}
        with open(self.log, "ab") as out:
            worker = subprocess.Popen(
                [sys.executable, str(WORKER_SCRIPT), str(self.app_dir),
                 str(self._listener.address[1]), str(self.namespace_server.address[1])],
                cwd=self.app_dir, env=env, stdout=out, stderr=subprocess.STDOUT)
        accepted: list[Connection] = []
        accepter = threading.Thread(target=lambda: accepted.append(self._listener.accept()),
                                    daemon=True)
        accepter.start()
        deadline = time.monotonic() + 60
        while not accepted and time.monotonic() < deadline:
            if worker.poll() is not None:
                raise RuntimeError(f"the language worker exited at start:\n{self.log.read_text()}")
            accepter.join(0.1)
        if not accepted:
            worker.kill()
            raise TimeoutError("the language worker did not connect within 60 s")
        with self._lock:
            self._worker, self._connection = worker, accepted[0]
        threading.Thread(target=self._read, args=(worker, accepted[0]), daemon=True,
                         name="worker-reader").start()
        if not self._ready.wait(60):
            raise TimeoutError(f"the language worker did not index the app:\n{self.log.read_text()}")
        self._event("worker-started", f"pid {worker.pid}")

    def _read(self, worker: subprocess.Popen[bytes], connection: Connection) -> None:
        while True:
            try:
                message = connection.recv()
            except (EOFError, OSError):
                break
            if message[0] == "ready":
                self.functions = message[2]
                self._ready.set()
            else:
                _, invocation_id, ok, value = message
                with self._lock:
                    invocation = self._pending.pop(invocation_id, None)
                if invocation is not None:
                    invocation.ok, invocation.value = ok, value
                    invocation.done.set()
        worker.wait()
        self._worker_gone(worker)

    def _worker_gone(self, worker: subprocess.Popen[bytes]) -> None:
        """Every invocation in the dead worker fails; the host starts a new worker."""
        with self._lock:
            if self._worker is not worker:
                return
            dead = list(self._pending.values())
            self._pending.clear()
            self._connection = None
        self._event("worker-died", f"pid {worker.pid}, exit {worker.returncode}, "
                                   f"{len(dead)} invocations lost")
        for invocation in dead:
            invocation.ok, invocation.value = False, WorkerDied(f"worker {worker.pid} died")
            invocation.done.set()
        if not self._gone.is_set():
            try:
                self._start_worker()
            except Exception as error:  # the instance cannot run the app any more
                self._event("worker-start-failed", str(error)[:300])

    def _restart_worker(self, reason: str) -> None:
        self._event("function-timeout", reason)
        self.kill_worker()

    def invoke(self, name: str, kind: str, payload: dict[str, Any]) -> Invocation:
        """Start an invocation in the worker; wait on the returned Invocation's `done`."""
        invocation = Invocation(f"{next(self._ids)}", name)
        deadline = time.monotonic() + 60
        while True:
            with self._lock:
                connection = self._connection if self._ready.is_set() else None
                if connection is not None:
                    self._pending[invocation.id] = invocation
                    try:
                        connection.send(("invoke", invocation.id, name, kind, payload))
                        break
                    except OSError:
                        self._pending.pop(invocation.id, None)
            if self._gone.is_set() or time.monotonic() > deadline:
                raise WorkerDied("no language worker to run the invocation")
            time.sleep(0.05)
        return invocation

    def run(self, invocation: Invocation) -> Invocation:
        """Wait for an invocation under `functionTimeout`; past it, restart the worker."""
        if not invocation.done.wait(self.limits.function_timeout):
            self._restart_worker(f"{invocation.function} invocation {invocation.id} passed "
                                 f"functionTimeout {self.limits.function_timeout:g} s")
            invocation.done.wait(30)
        return invocation

    # Triggers

    def _discover_triggers(self) -> list[ServiceBusTrigger]:
        """Every `serviceBusTrigger` binding in the worker's index, as the host makes one
        listener per function; a trigger whose queue cannot be resolved or does not exist gets
        no listener (the host logs the error and the function does not run). `queue` (from
        the constructor) replaces the queue of `trigger`, or, without `trigger`, of the one
        function already on that queue or of the app's only Service Bus function."""
        settings = {**os.environ, **self.env}
        found: list[tuple[ServiceBusTrigger, str | None]] = []  # with why it has no queue
        for name, function in self.functions.items():
            for binding in function.get("bindings", []):
                if str(binding.get("type", "")).lower() != "servicebustrigger":
                    continue
                cardinality = "many" if str(binding.get("cardinality") or "one").lower() \
                    == "many" else "one"
                data_type = binding.get("dataType")
                trigger = ServiceBusTrigger(name, "", cardinality,
                                            str(data_type).lower() if data_type else None,
                                            binding.get("name") or "msg")
                if binding.get("queueName") is None:
                    found.append((trigger, "topic subscriptions are not emulated"))
                    continue
                try:
                    queue = re.sub(r"%([^%]+)%", lambda setting: settings[setting.group(1)],
                                   binding["queueName"])
                except KeyError as missing:
                    found.append((trigger, f"'%{missing.args[0]}%' does not resolve to a value"))
                    continue
                found.append((replace(trigger, queue=queue), None))
        names = [trigger.function for trigger, _ in found]
        if self.trigger is not None and self.trigger not in names:
            raise LookupError(f"the app has no Service Bus function {self.trigger!r} "
                              f"(it has {names})")
        target = self.trigger
        if self.queue is not None and target is None:
            on_queue = [t.function for t, failure in found if not failure and t.queue == self.queue]
            if on_queue or len(names) == 1:
                target = (on_queue or names)[0]
            else:
                raise LookupError(f"queue={self.queue!r} is the queue of none of the app's "
                                  f"Service Bus functions {names}: pass trigger= too")
        listening = []
        for trigger, failure in found:
            if self.queue is not None and trigger.function == target:
                trigger, failure = replace(trigger, queue=self.queue), None
            if failure is None:
                try:
                    self.namespace.properties(trigger.queue)
                except KeyError:
                    failure = f"no queue {trigger.queue!r} in the namespace"
            if failure is not None:
                self._event("listener-failed", f"{trigger.function}: {failure}",
                            trigger.function)
                continue
            listening.append(trigger)
        return listening

    def http(self, method: str, path: str, body: bytes = b"",
             headers: Mapping[str, str] | None = None,
             params: Mapping[str, str] | None = None) -> HttpResult:
        name, route_params = self._route(method, path)
        url = f"https://emulated.azurewebsites.net/api/{path}"
        invocation = self.invoke(name, "http", {
            "method": method, "url": url, "headers": dict(headers or {}),
            "params": dict(params or {}), "route_params": route_params, "body": body})
        finished = threading.Thread(target=self.run, args=(invocation,), daemon=True)
        finished.start()
        if not invocation.done.wait(self.limits.http_timeout):
            raise HttpTimeout(f"{method} /api/{path} took longer than "
                              f"{self.limits.http_timeout:g} s")
        if not invocation.ok:
            return HttpResult(500, {}, str(invocation.value).encode())
        return HttpResult(**invocation.value)

    def timer(self, name: str) -> None:
        invocation = self.run(self.invoke(name, "timer", {}))
        if not invocation.ok:
            raise RuntimeError(f"timer {name} failed: {invocation.value}")

    def _route(self, method: str, path: str) -> tuple[str, dict[str, str]]:
        for name, function in self.functions.items():
            for binding in function["bindings"]:
                if binding["type"] != "httpTrigger" or method.lower() not in [
                        m.lower() for m in binding.get("methods", [])]:
                    continue
                pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(binding["route"]))
                found = re.fullmatch(pattern, path.split("?")[0])
                if found:
                    return name, found.groupdict()
        raise LookupError(f"no function serves {method} /api/{path}")

    def _slot(self, trigger: ServiceBusTrigger) -> None:
        """One of the maxConcurrentCalls message handlers of a single-message trigger."""
        from emulation.servicebus import Receiver

        receiver = Receiver(self.namespace, trigger.queue)
        while not self._gone.is_set():
            if not self._receiving.is_set() or not self._ready.is_set():
                time.sleep(0.05)
                continue
            messages = receiver.receive_messages(1, max_wait_time=0.25)
            if not messages:
                continue
            with self._lock:
                self._in_flight += 1
            try:
                self._handle(receiver, trigger, messages[0])
            finally:
                with self._lock:
                    self._in_flight -= 1

    def _handle(self, receiver: Any, trigger: ServiceBusTrigger, message: ReceivedMessage) -> None:
        received = time.monotonic()
        lock_duration = message.locked_until_utc.timestamp() - time.time()
        properties = _properties(message)
        payload = {"body": b"".join(message.body), "metadata": {
            "DeliveryCount": message.delivery_count + 1, "MessageId": message.message_id,
            "SequenceNumber": message.sequence_number, "LockToken": message.lock_token,
            "EnqueuedTimeUtc": message.enqueued_time_utc.isoformat(),
            "ExpiresAtUtc": message.expires_at_utc.isoformat(),
            "LockedUntil": message.locked_until_utc.isoformat(),
            "ContentType": message.content_type or "",
            "ApplicationProperties": properties, "UserProperties": properties}}
        try:
            invocation = self.invoke(trigger.function, "servicebus", payload)
        except WorkerDied:
            return  # the instance is going: the lock expires
        ids = (message.message_id,)
        self._event("invoked", f"{message.message_id} delivery {message.delivery_count + 1}",
                    trigger.function, ids)
        renewing = threading.Thread(target=self._renew, daemon=True, args=(
            receiver, message, invocation, received, lock_duration))
        renewing.start()
        self.run(invocation)
        if self._gone.is_set() and not invocation.done.is_set():
            return
        if self._gone.is_set() and isinstance(invocation.value, WorkerDied):
            return  # the instance died with its worker: nothing is settled
        action = "complete" if invocation.ok else "abandon"
        self._event("returned" if invocation.ok else "raised",
                    f"{message.message_id}: {str(invocation.value)[:200]}", trigger.function, ids)
        self._settle(receiver, trigger, [message], action)

    def _settle(self, receiver: Any, trigger: ServiceBusTrigger,
                messages: Sequence[ReceivedMessage], action: str) -> None:
        for message in messages:
            ids = (message.message_id,)
            try:
                getattr(receiver, f"{action}_message")(message)
                self._event({"complete": "completed", "abandon": "abandoned"}[action],
                            message.message_id, trigger.function, ids)
            except Exception as error:
                self._event("settle-failed", f"{message.message_id} {action}: "
                            f"{type(error).__name__}", trigger.function, ids)

    def _renew(self, receiver: Any, message: ReceivedMessage, invocation: Invocation,
               received: float, lock_duration: float) -> None:
        """Renew the lock before it expires, until the invocation ends or
        maxAutoLockRenewalDuration has passed since the message was received."""
        while not invocation.done.wait(max(lock_duration / 3, 0.05)):
            if self._gone.is_set():
                return
            if time.monotonic() - received >= self.limits.max_auto_lock_renewal:
                self._event("lock-renewal-ended", message.message_id)
                return
            try:
                receiver.renew_message_lock(message)
            except Exception as error:
                self._event("settle-failed", f"{message.message_id} renew: {type(error).__name__}")
                return

    def _batch_loop(self, trigger: ServiceBusTrigger) -> None:
        """The receive loop of a batch trigger (`RunBatchReceiveLoopAsync`): receive up to
        maxMessageBatchSize, invoke once, settle, receive again; one batch at a time."""
        from emulation.servicebus import Receiver

        receiver = Receiver(self.namespace, trigger.queue)
        limits = self.limits
        while not self._gone.is_set():
            if not self._receiving.is_set() or not self._ready.is_set():
                time.sleep(0.05)
                continue
            messages = receiver.receive_messages(limits.max_message_batch_size, max_wait_time=0.25)
            if not messages:
                continue
            with self._lock:
                self._in_flight += 1
            try:
                # minMessageBatchSize > 1: the messages wait (locked, not renewed) for more,
                # at most maxBatchWaitTime; a stopping listener dispatches what it holds.
                deadline = time.monotonic() + limits.max_batch_wait_time
                while (len(messages) < limits.min_message_batch_size
                       and self._receiving.is_set() and not self._gone.is_set()
                       and time.monotonic() < deadline):
                    messages += receiver.receive_messages(
                        limits.max_message_batch_size - len(messages),
                        max_wait_time=max(min(0.25, deadline - time.monotonic()), 0.01))
                self._handle_batch(receiver, trigger, messages)
            finally:
                with self._lock:
                    self._in_flight -= 1

    def _handle_batch(self, receiver: Any, trigger: ServiceBusTrigger,
                      messages: list[ReceivedMessage]) -> None:
        ids = tuple(m.message_id for m in messages)
        summary = (f"batch of {len(messages)}: "
                   + ", ".join(f"{m.message_id} delivery {m.delivery_count + 1}" for m in messages))
        payload, binding_error = batch_payload(trigger, messages)
        if binding_error is not None:
            # The host fails the invocation before the worker sees it.
            self._event("invoked", summary, trigger.function, ids)
            ok, value = False, binding_error
        else:
            try:
                invocation = self.invoke(trigger.function, "servicebus-batch", payload)
            except WorkerDied:
                return  # the instance is going: the locks expire
            self._event("invoked", summary, trigger.function, ids)
            self.run(invocation)  # no lock renewal for a batch
            if self._gone.is_set() and not invocation.done.is_set():
                return
            if self._gone.is_set() and isinstance(invocation.value, WorkerDied):
                return  # the instance died with its worker: nothing is settled
            ok, value = invocation.ok, invocation.value
        self._event("returned" if ok else "raised", f"batch of {len(messages)}: "
                    f"{str(value)[:200]}", trigger.function, ids)
        self._settle(receiver, trigger, messages, "complete" if ok else "abandon")

    def _event(self, kind: str, detail: str = "", function: str = "",
               message_ids: tuple[str, ...] = ()) -> None:
        self.events.append(HostEvent(time.time(), kind, detail, function, message_ids))

    def history(self, kind: str, function: str | None = None) -> list[HostEvent]:
        """The events of a kind, of one Service Bus function if `function` is given."""
        return [e for e in list(self.events)
                if e.kind == kind and (function is None or e.function == function)]


# What the host sends the worker for a batch: gRPC TypedData as {"type": ..., "value": ...}.


def _typed(kind: str, value: Any) -> dict[str, Any]:
    return {"type": kind, "value": value}


def _strings(values: Sequence[str | None]) -> dict[str, Any]:
    """A string[] as `ToRpcStringArray` sends it to a worker that does not declare
    IncludeEmptyEntriesInMessagePayload (the Python worker does not): null and empty
    entries left out, so the array can be shorter than the batch."""
    return _typed("collection_string", [value for value in values if value])


def _dotnet_json_date(moment: datetime.datetime, offset: bool) -> str:
    """A date as Json.NET writes it: a DateTime from `DateTimeOffset.DateTime` (kind
    Unspecified: no zone) or a DateTimeOffset (`+00:00`), seven fraction digits at most
    with trailing zeros dropped."""
    moment = moment.astimezone(datetime.UTC)
    fraction = f"{moment.microsecond:06d}".rstrip("0")
    return (moment.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if fraction else "")
            + ("+00:00" if offset else ""))


_JSON_NET_DATE = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,7}))?(Z|[+-]\d\d:\d\d)?")


def _json_net(value: Any) -> Any:
    """A body's JSON as Json.NET gives it back after `DeserializeObject<object>` with
    `DateParseHandling.DateTimeOffset` (ServiceBusOptions' settings): a string that is an
    ISO 8601 date becomes a DateTimeOffset, written back with `+00:00` for `Z` or no zone
    (an instance's clock is UTC) and without trailing fraction zeros."""
    if isinstance(value, dict):
        return {key: _json_net(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_net(item) for item in value]
    if isinstance(value, str) and (date := _JSON_NET_DATE.fullmatch(value)):
        seconds, fraction, zone = date.groups()
        try:
            datetime.datetime.strptime(seconds, "%Y-%m-%dT%H:%M:%S")
        except ValueError:
            return value
        fraction = (fraction or "").rstrip("0")
        return (seconds + (f".{fraction}" if fraction else "")
                + ("+00:00" if zone in (None, "Z") else zone))
    return value


def _properties(message: ReceivedMessage) -> dict[str, Any]:
    return {key.decode() if isinstance(key, bytes) else key:
            value.decode() if isinstance(value, bytes) else value
            for key, value in (message.application_properties or {}).items()}


def batch_payload(trigger: ServiceBusTrigger,
                  messages: Sequence[ReceivedMessage]) -> tuple[dict[str, Any], str | None]:
    """The invocation of a batch function as the host sends it to the Python worker: the
    bodies as the binding's dataType asks and the batch binding data, as TypedData; or the
    binding error that fails the invocation before the worker sees it."""
    bodies = [b"".join(message.body) for message in messages]
    if trigger.data_type == "binary":
        data = _typed("collection_bytes", bodies)
    elif trigger.data_type == "string":
        data = _strings([body.decode("utf-8", errors="replace") for body in bodies])
    else:  # object[]: each body through Json.NET, the array sent as json
        values = []
        for message, body in zip(messages, bodies, strict=True):
            try:
                text = body.decode("utf-8")
                values.append(_json_net(json.loads(text)) if text.strip() else None)
            except ValueError as error:  # UnicodeDecodeError is a ValueError too
                return {}, (
                    f"Exception binding parameter '{trigger.arg_name}': Binding parameters to "
                    "complex objects (such as 'Object') uses Json.NET serialization or XML "
                    f"object serialization. The JSON parser failed on message "
                    f"{message.message_id}: {error}")
        data = _typed("json", json.dumps(values, ensure_ascii=False, separators=(",", ":")))
    properties = [_properties(message) for message in messages]

    def attribute(name: str) -> list[Any]:
        return [getattr(message, name, None) for message in messages]

    metadata = {
        "DeliveryCountArray": _typed("json", json.dumps(
            [message.delivery_count + 1 for message in messages])),
        "DeadLetterSourceArray": _strings(attribute("dead_letter_source")),
        "LockTokenArray": _strings(attribute("lock_token")),
        "ExpiresAtUtcArray": _typed("json", json.dumps(
            [_dotnet_json_date(m.expires_at_utc, offset=False) for m in messages])),
        "ExpiresAtArray": _typed("json", json.dumps(
            [_dotnet_json_date(m.expires_at_utc, offset=True) for m in messages])),
        "EnqueuedTimeUtcArray": _typed("json", json.dumps(
            [_dotnet_json_date(m.enqueued_time_utc, offset=False) for m in messages])),
        "EnqueuedTimeArray": _typed("json", json.dumps(
            [_dotnet_json_date(m.enqueued_time_utc, offset=True) for m in messages])),
        "MessageIdArray": _strings(attribute("message_id")),
        "ContentTypeArray": _strings(attribute("content_type")),
        "ReplyToArray": _strings(attribute("reply_to")),
        "SequenceNumberArray": _typed("collection_sint64", attribute("sequence_number")),
        "ToArray": _strings(attribute("to")),
        "SubjectArray": _strings(attribute("subject")),
        "LabelArray": _strings(attribute("subject")),
        "CorrelationIdArray": _strings(attribute("correlation_id")),
        "ApplicationPropertiesArray": _typed("json", json.dumps(properties)),
        "UserPropertiesArray": _typed("json", json.dumps(properties)),
        "SessionIdArray": _strings(attribute("session_id")),
        "ReplyToSessionIdArray": _strings(attribute("reply_to_session_id")),
        "PartitionKeyArray": _strings(attribute("partition_key")),
        # The extension fills this one from the partition keys.
        "TransactionPartitionKeyArray": _strings(attribute("partition_key")),
        "sys": _typed("json", json.dumps({
            "MethodName": trigger.function,
            "UtcNow": _dotnet_json_date(datetime.datetime.now(datetime.UTC), offset=False) + "Z",
            "RandGuid": str(uuid.uuid4())})),
    }
    return {"data": data, "metadata": metadata}, None


__all__ = ["DEAD_LETTER", "FunctionsHost", "HostEvent", "HostLimits", "HttpResult", "HttpTimeout",
           "ServiceBusTrigger", "batch_payload"]
