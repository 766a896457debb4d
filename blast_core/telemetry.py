"""Traces across submit and worker: OpenTelemetry, exported to Application Insights when
`APPLICATIONINSIGHTS_CONNECTION_STRING` is set.

Without it no tracer provider is configured, `tracer` stays OpenTelemetry's no-op proxy,
nothing is exported and the spans cost next to nothing. A job's trace context crosses the
queue as a W3C `traceparent` carrier inside the message (`messages.Message.trace`), so the
worker's spans continue the trace that `submit` started, whichever transport carried it.

Each log line reaches Application Insights once. Under the Functions host the host already
sends every Python log record there: the Python worker hangs a handler on the root logger
that passes each record to the host (azure-functions-python-worker, `dispatcher.py`), which
writes it to the `traces` table ("How to configure monitoring for Azure Functions", custom
application logs), so there the distro exports traces only. `serve` and `worker` have no
host: the distro exports their logs as well. The deployment keeps the host's default
telemetry mode and does not set PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY: with it the
worker would configure the distro itself, logs included, beside the host's forwarding.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.trace import Link, Span
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from blast_core.settings import Settings

log = logging.getLogger("blast_core")

# A proxy: spans go to whichever provider is set, even one set after this import (tests).
tracer = trace.get_tracer("blast_core")
_propagator = TraceContextTextMapPropagator()  # W3C only: `traceparent` and `tracestate`
_configured = False

# Set by the Functions host in every worker it starts (an app setting in Azure, a value of
# local.settings.json under `func start`); the distro detects Functions by the same variable.
FUNCTIONS_HOST_SETTING = "FUNCTIONS_WORKER_RUNTIME"
# The distro's switch for its log export ("OTEL_LOGS_EXPORTER: if set to None, disables
# collection and export of logging telemetry", azure-monitor-opentelemetry's README). Its
# disable_logging argument is not honoured: 1.8 overwrites it from this variable
# (_utils/configurations.py, _default_disable_logging).
LOGS_EXPORTER_SETTING = "OTEL_LOGS_EXPORTER"

Attribute = str | int | float | bool


def under_functions_host(env: Mapping[str, str]) -> bool:
    """Whether this process is a language worker of the Functions host, whose log records the
    host forwards to Application Insights itself."""
    return bool(env.get(FUNCTIONS_HOST_SETTING, "").strip())


def configure(settings: Settings) -> bool:
    """Export traces to Application Insights when its connection string is set, and logs too
    unless the Functions host forwards them; once per process, later calls do nothing.
    Returns whether anything is exported."""
    global _configured
    if _configured or not settings.monitor_connection:
        return _configured
    # Imported here: the distro takes most of a second to import, and is only needed here.
    from azure.monitor.opentelemetry import configure_azure_monitor

    host_forwards_logs = under_functions_host(settings.env)
    previous = os.environ.get(LOGS_EXPORTER_SETTING)
    if host_forwards_logs:
        os.environ[LOGS_EXPORTER_SETTING] = "none"  # read once, by the call below
    try:
        configure_azure_monitor(connection_string=settings.monitor_connection)
    finally:
        if host_forwards_logs:
            if previous is None:
                os.environ.pop(LOGS_EXPORTER_SETTING, None)
            else:
                os.environ[LOGS_EXPORTER_SETTING] = previous
    _configured = True
    log.info("traces are exported to Application Insights%s",
             ", logs by the Functions host" if host_forwards_logs else ", and logs")
    return True


def inject() -> dict[str, str]:
    """The current trace context as a carrier for a message; empty outside a recorded span."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier


@contextmanager
def span(name: str, parent: Mapping[str, str] | None = None,
         **attributes: Attribute | None) -> Iterator[Span]:
    """A span named `name`, child of the current span; or, when `parent` (a carrier from
    `inject`) holds a valid context, of the trace it continues, linked to the current span
    (the trigger's or request's that runs it). Attributes are prefixed `blast.`; None ones
    left out."""
    context, links = None, []
    extracted = _propagator.extract(parent or {})
    if trace.get_current_span(extracted).get_span_context().is_valid:
        context = extracted
        current = trace.get_current_span().get_span_context()
        if current.is_valid:
            links.append(Link(current))
    with tracer.start_as_current_span(name, context=context, links=links,
                                      attributes=_prefixed(attributes)) as started:
        yield started


def annotate(**attributes: Attribute | None) -> None:
    """Add attributes to the current span (`blast.` prefixed, None ones left out)."""
    trace.get_current_span().set_attributes(_prefixed(attributes))


def _prefixed(attributes: Mapping[str, Attribute | None]) -> dict[str, Attribute]:
    return {f"blast.{key}": value for key, value in attributes.items() if value is not None}
