"""One instance of the Azure Functions host, emulated: it drives `function_app.py` the way the
host does on an Elastic Premium instance. Functions Core Tools cannot be installed here.

What it keeps of the host's documented behaviour (sources in docs/reliability.md):
- the app runs in a separate language worker process (`language_worker.py`), which the host
  starts, restarts when it dies, and restarts when an invocation passes `functionTimeout`,
  killing every invocation running in it;
- the Service Bus trigger receives in peek-lock, one message per free slot, at most
  `maxConcurrentCalls` at once, prefetch 0; it renews a running message's lock up to
  `maxAutoLockRenewalDuration`; under auto-complete it completes the message when the function
  returns and abandons it when the function raises or its worker dies;
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

import itertools
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
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
    max_concurrent_calls: int
    max_auto_lock_renewal: float
    http_timeout: float = 230.0
    scale_in_grace: float = 3600.0

    @classmethod
    def read(cls, host_json_path: Path, env: Mapping[str, str], **overrides: float) -> HostLimits:
        host_json = json.loads(host_json_path.read_text())
        limits = cls(
            function_timeout=timespan_seconds(host_setting(host_json, env, "functionTimeout")),
            max_concurrent_calls=int(host_setting(
                host_json, env, "extensions__serviceBus__maxConcurrentCalls") or 16),
            max_auto_lock_renewal=timespan_seconds(host_setting(
                host_json, env, "extensions__serviceBus__maxAutoLockRenewalDuration")
                or "00:05:00"))
        return cls(**{**limits.__dict__, **overrides})


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
    kind: str  # worker-started, worker-died, function-timeout, invoked, returned, raised,
    #            completed, abandoned, settle-failed, lock-renewal-ended, scale-in
    detail: str = ""


@dataclass(frozen=True)
class HttpResult:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class FunctionsHost:
    def __init__(self, app_dir: Path, env: Mapping[str, str], namespace: Namespace,
                 namespace_server: NamespaceServer, queue: str, limits: HostLimits,
                 log: Path, trigger: str = "blast_worker"):
        self.app_dir = app_dir
        self.env = dict(env)
        self.namespace = namespace
        self.namespace_server = namespace_server
        self.queue = queue
        self.limits = limits
        self.log = log
        self.trigger = trigger
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
        """Start the worker; the trigger takes messages once `receive` (or `resume()`)."""
        self._start_worker()
        if receive:
            self._receiving.set()
        self._slots = [threading.Thread(target=self._slot, daemon=True, name=f"sb-slot-{n}")
                       for n in range(self.limits.max_concurrent_calls)]
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

    def _slot(self) -> None:
        """One of maxConcurrentCalls message handlers of the Service Bus trigger."""
        from emulation.servicebus import Receiver

        receiver = Receiver(self.namespace, self.queue)
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
                self._handle(receiver, messages[0])
            finally:
                with self._lock:
                    self._in_flight -= 1

    def _handle(self, receiver: Any, message: ReceivedMessage) -> None:
        received = time.monotonic()
        lock_duration = message.locked_until_utc.timestamp() - time.time()
        properties = {key.decode() if isinstance(key, bytes) else key:
                      value.decode() if isinstance(value, bytes) else value
                      for key, value in (message.application_properties or {}).items()}
        payload = {"body": b"".join(message.body), "metadata": {
            "DeliveryCount": message.delivery_count + 1, "MessageId": message.message_id,
            "SequenceNumber": message.sequence_number, "LockToken": message.lock_token,
            "EnqueuedTimeUtc": message.enqueued_time_utc.isoformat(),
            "ExpiresAtUtc": message.expires_at_utc.isoformat(),
            "LockedUntil": message.locked_until_utc.isoformat(),
            "ContentType": message.content_type or "",
            "ApplicationProperties": properties, "UserProperties": properties}}
        try:
            invocation = self.invoke(self.trigger, "servicebus", payload)
        except WorkerDied:
            return  # the instance is going: the lock expires
        self._event("invoked", f"{message.message_id} delivery {message.delivery_count + 1}")
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
                    f"{message.message_id}: {str(invocation.value)[:200]}")
        try:
            getattr(receiver, f"{action}_message")(message)
            self._event(f"{action}d", message.message_id)
        except Exception as error:
            self._event("settle-failed", f"{message.message_id} {action}: {type(error).__name__}")

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

    def _event(self, kind: str, detail: str = "") -> None:
        self.events.append(HostEvent(time.time(), kind, detail))

    def history(self, kind: str) -> list[HostEvent]:
        return [e for e in list(self.events) if e.kind == kind]


__all__ = ["DEAD_LETTER", "FunctionsHost", "HostLimits", "HttpResult", "HttpTimeout"]
