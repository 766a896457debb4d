"""The deployed path, assembled for tests: `function_app.py` run by the emulated Functions host
(tests/emulation/functions_host.py) on the emulated Service Bus (tests/emulation/servicebus.py),
with a real Azurite and the real blastn. The operator's side (dead letters, requeue, sweeps)
runs in the test process through the real ServiceBusTransport, on the same namespace."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from conftest import ROOT, service_env
from emulation.functions_host import FunctionsHost, HostLimits
from emulation.servicebus import CONNECTION_STRING, Namespace, NamespaceServer, QueueRules, install

from blast_core.service import bootstrap
from blast_core.service.core import BlastService
from blast_core.settings import Settings
from blast_core.storage.azurite import LocalAzurite

QUEUE = "blast-jobs"
BULK_QUEUE = "blast-jobs-bulk"
# The deployed queue (infra/modules/servicebus.bicep) with its five-minute lock as seconds, so
# that a lost lock comes back within a test; every other rule as deployed.
QUEUE_RULES = QueueRules(lock_duration=3.0)


@dataclass
class Deployment:
    namespace: Namespace
    server: NamespaceServer
    env: dict[str, str]
    operator: BlastService
    log: Path
    hosts: list[FunctionsHost]

    @property
    def host(self) -> FunctionsHost:
        return self.hosts[0]

    def start_host(self, receive: bool = True, **limits: float) -> FunctionsHost:
        """Another instance of the app (scale-out), with the host limits of host.json."""
        host = FunctionsHost(ROOT, self.env, self.namespace, self.server,
                             limits=HostLimits.read(ROOT / "host.json", self.env, **limits),
                             log=self.log)
        self.hosts.append(host.start(receive))
        return host


@contextmanager
def deployment(azurite: LocalAzurite, tmp_path: Path, rules: QueueRules = QUEUE_RULES,
               hosts: int = 1, env: dict[str, str] | None = None,
               host_env: dict[str, str] | None = None, receive: bool = True,
               **limits: float) -> Iterator[Deployment]:
    """`env`: settings of the app and of the operator; `host_env`: of the app only."""
    namespace = Namespace({QUEUE: rules, BULK_QUEUE: rules})
    server = NamespaceServer(namespace)
    uninstall = install(namespace)
    settings_env = service_env(azurite, BLAST_QUEUE_TRANSPORT="servicebus",
                               BLAST_SERVICEBUS=CONNECTION_STRING, BLAST_QUEUE_NAME=QUEUE,
                               BLAST_BULK_QUEUE_NAME=BULK_QUEUE,
                               BLAST_MAX_DELIVERIES=str(rules.max_delivery_count), **(env or {}))
    operator = bootstrap.build(Settings.from_env(settings_env))
    operator.ensure_storage()
    deployed = Deployment(namespace, server, {**settings_env, **(host_env or {})}, operator,
                          tmp_path / "host.log", [])
    try:
        for _ in range(hosts):
            deployed.start_host(receive, **limits)
        yield deployed
    finally:
        for host in deployed.hosts:
            host.crash()
        operator.transport.close()
        uninstall()
        server.close()


def scaled(rules: QueueRules, **changes: float) -> QueueRules:
    return replace(rules, **changes)
