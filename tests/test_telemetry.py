"""Traces: one trace from submit through the worker's spans and formatting, carried in the
queue message; OpenTelemetry's in-memory exporter stands in for Application Insights."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest
from conftest import ROOT, SMALL_DB, sample_queries, service_env
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from blast_core.domain import jobs, messages
from blast_core.service import bootstrap
from blast_core.service.errors import ResultPending
from blast_core.settings import Settings

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture(scope="module")
def exporter() -> InMemorySpanExporter:
    """The process-wide provider: OpenTelemetry lets it be set once, so once per session."""
    found = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(found))
    trace.set_tracer_provider(provider)
    return found


@pytest.fixture
def spans(exporter: InMemorySpanExporter) -> Iterator[InMemorySpanExporter]:
    exporter.clear()
    yield exporter
    exporter.clear()


def test_one_trace_from_submit_through_the_worker_and_formatting(spans, azurite,
                                                                 blast_available):
    service = bootstrap.build(Settings.from_env(service_env(azurite)))
    service.ensure_storage()
    try:
        job = service.submit({"query": sample_queries(SMALL_DB, 2, seed=5),
                              "database": SMALL_DB})
        delivery = service.transport.receive()
        assert delivery is not None
        service.handle(messages.decode(delivery.body), delivery.delivery_count)
        delivery.complete()
        with pytest.raises(ResultPending):  # asks a worker to make it
            service.result(job.id, "tsv")
        making = service.transport.receive()
        service.handle(messages.decode(making.body), making.delivery_count)
        making.complete()
        assert b"".join(service.result(job.id, "tsv").chunks)
    finally:
        service.transport.close()

    found: dict[str, ReadableSpan] = {s.name: s for s in spans.get_finished_spans()}
    names = ("submit", "process batch", "staging", "blast", "upload", "format")
    assert set(names) <= set(found)
    submit = found["submit"]
    trace_id = submit.context.trace_id
    assert {s.context.trace_id for s in spans.get_finished_spans()} == {trace_id}
    assert submit.parent is None
    assert found["process batch"].parent.span_id == submit.context.span_id
    for child in ("staging", "blast", "upload"):
        assert found[child].parent.span_id == found["process batch"].context.span_id, child
    assert found["format"].parent.span_id == submit.context.span_id

    carried = json.loads(delivery.body)["trace"]["traceparent"]
    assert carried == (f"00-{trace_id:032x}-{submit.context.span_id:016x}"
                       f"-{submit.context.trace_flags:02x}")
    assert messages.decode(delivery.body).job_id == job.id
    assert messages.decode(making.body).format == "tsv"
    for name in names:
        attributes = found[name].attributes
        assert attributes["blast.job_id"] == job.id, name
        assert "ACGT" not in json.dumps(dict(attributes)), "no query sequence in a span"
    assert found["blast"].attributes["blast.database"] == SMALL_DB
    assert found["blast"].attributes["blast.program"] == "blastn"


def test_the_worker_continues_the_trace_its_message_carries(spans, service):
    """A message from elsewhere (another instance, a requeue) names its trace by itself."""
    job = service.submit({"query": ">q\nACGTACGTAAGGCCTTAGGCATCGATCGA", "database": SMALL_DB})
    spans.clear()
    with pytest.raises(messages.MalformedMessage):  # no batch 3: fails inside the span
        service.handle(messages.batch_message(job.id, 3, {"traceparent": TRACEPARENT}), 1)
    (span,) = spans.get_finished_spans()
    assert (span.name, f"{span.context.trace_id:032x}") == ("receive batch",
                                                            TRACEPARENT.split("-")[1])
    assert not span.status.is_ok


@pytest.mark.parametrize("carrier", [
    None, [TRACEPARENT], {"traceparent": 7}, {"traceparent": "x" * 600},
    {f"k{n}": "v" for n in range(20)}, "00-abc",
])
def test_a_message_with_no_usable_trace_is_still_valid(carrier):
    job_id = jobs.new_job_id()
    body = json.dumps({"job_id": job_id, "batch": 1, "trace": carrier})
    assert messages.decode(body) == messages.Message(job_id, batch=1, trace={})
    assert "trace" not in json.loads(messages.batch_message(job_id, 1, {}).encode())


def test_without_a_connection_string_nothing_is_configured_or_carried():
    """In a fresh process, as the service runs when APPLICATIONINSIGHTS_CONNECTION_STRING is
    unset: no provider, spans that record nothing, messages without a trace."""
    script = """
import json
from blast_core import telemetry
from blast_core.domain import jobs
from blast_core.domain import messages
from blast_core.settings import Settings
assert telemetry.configure(Settings.from_env({})) is False
with telemetry.span("submit", job_id="x") as span:
    assert not span.is_recording()
    assert telemetry.inject() == {}
    message = messages.batch_message(jobs.new_job_id(), 0, telemetry.inject())
    assert "trace" not in json.loads(message.encode())
with telemetry.span("process batch", parent={"traceparent": "garbage"}):
    pass
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.stdout.strip() == "ok", done.stderr


# One process as the service runs it, with the two ways a log record can reach Application
# Insights replaced by recorders: the Functions host's forwarding by a handler on the root
# logger (the Python worker puts one there that sends every record to the host, which writes
# it to Application Insights: azure-functions-python-worker, dispatcher.py), the distro's
# Azure Monitor exporters by in-memory ones (configure_azure_monitor builds its exporters
# from these names). Metrics, live metrics, statsbeat and the control plane are off: nothing
# leaves the process.
ONE_LINE_SCRIPT = """
import json, logging, sys
from opentelemetry import trace
from opentelemetry._logs import get_logger_provider
from opentelemetry.sdk._logs.export import InMemoryLogExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
import azure.monitor.opentelemetry._configure as distro
import azure.monitor.opentelemetry.exporter as exporters
from blast_core import telemetry
from blast_core.settings import Settings

log_exporters, span_exporters, forwarded = [], [], []

class DistroLogExporter(InMemoryLogExporter):  # stands in for AzureMonitorLogExporter
    def __init__(self, **options):
        super().__init__()
        log_exporters.append(self)

class DistroSpanExporter(InMemorySpanExporter):  # stands in for AzureMonitorTraceExporter
    def __init__(self, **options):
        super().__init__()
        span_exporters.append(self)

class HostForwarding(logging.Handler):  # stands in for the Python worker's handler
    def emit(self, record):
        forwarded.append(record.getMessage())

exporters.AzureMonitorLogExporter = DistroLogExporter
distro.AzureMonitorTraceExporter = DistroSpanExporter
distro._setup_live_metrics = lambda configurations: None
logging.getLogger().setLevel(logging.INFO)
if sys.argv[1] == "host":
    logging.getLogger().addHandler(HostForwarding())

assert telemetry.configure(Settings.from_env()) is True
logging.getLogger("blast_core.hosts.worker").info("one line")
with telemetry.span("submit", job_id="x"):
    pass
getattr(get_logger_provider(), "force_flush", lambda: None)()  # none set: a proxy
trace.get_tracer_provider().force_flush()
exported = [r.log_record.body for e in log_exporters for r in e.get_finished_logs()]
print(json.dumps({
    "forwarded": forwarded.count("one line"),
    "exported": exported.count("one line"),
    "spans": [s.name for e in span_exporters for s in e.get_finished_spans()],
}))
"""


@pytest.mark.parametrize("process", ["host", "serve"])
def test_a_log_line_reaches_application_insights_once(process):
    """Under the Functions host the host's forwarding carries logs and the distro only
    traces; `serve` and `worker` have no host, so the distro carries both. The deployment
    keeps the host's default telemetry mode, in which it forwards worker logs, and does not
    have the worker configure the distro itself (PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY)."""
    assert "telemetryMode" not in json.loads((ROOT / "host.json").read_text())
    assert "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY" not in (
        ROOT / "infra" / "modules" / "functionapp.bicep").read_text()
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT),
           "APPLICATIONINSIGHTS_CONNECTION_STRING":
               "InstrumentationKey=00000000-0000-0000-0000-000000000000;"
               "IngestionEndpoint=http://127.0.0.1:9/",
           "OTEL_METRICS_EXPORTER": "none",
           "OTEL_TRACES_SAMPLER": "always_on",  # the default samples at a rate, maybe not one span
           "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
           "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED": "true"}
    if process == "host":
        env["FUNCTIONS_WORKER_RUNTIME"] = "python"  # set by the host in its workers
    done = subprocess.run([sys.executable, "-c", ONE_LINE_SCRIPT, process], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    counts = json.loads(done.stdout.strip().splitlines()[-1])
    assert counts["forwarded"] + counts["exported"] == 1, counts
    assert counts["forwarded" if process == "host" else "exported"] == 1, counts
    assert counts["spans"] == ["submit"], "traces are exported either way"
