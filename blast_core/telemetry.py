"""Traces across submit and worker: OpenTelemetry, exported to Application Insights when
`APPLICATIONINSIGHTS_CONNECTION_STRING` is set.

Without it no tracer provider is configured, `tracer` stays OpenTelemetry's no-op proxy,
nothing is exported and the spans cost next to nothing. A job's trace context crosses the
queue as a W3C `traceparent` carrier inside the message (`jobs.encode_message`), so the
worker's spans continue the trace that `submit` started, whichever transport carried it.
"""

from __future__ import annotations

import logging
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

Attribute = str | int | float | bool


def configure(settings: Settings) -> bool:
    """Export traces (and logs) to Application Insights when its connection string is set;
    once per process, later calls do nothing. Returns whether anything is exported."""
    global _configured
    if _configured or not settings.monitor_connection:
        return _configured
    # Imported here: the distro takes most of a second to import, and is only needed here.
    from azure.monitor.opentelemetry import configure_azure_monitor

    configure_azure_monitor(connection_string=settings.monitor_connection)
    _configured = True
    log.info("traces are exported to Application Insights")
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
