"""OpenTelemetry tracing of requests: off by default, on through the standard OTEL_* environment.

Tracing starts when OTEL_TRACES_EXPORTER names an exporter (otlp or console) or an OTLP endpoint
is set (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT), unless
OTEL_SDK_DISABLED=true. The OTLP exporter speaks http/protobuf. OTEL_SERVICE_NAME names the service
(default helios-gateway); the rest of the OTEL_* variables are read by the SDK itself.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from opentelemetry import trace

from helios_site.config import ConfigError

_SUPPORTED_EXPORTERS = ("otlp", "console")


def _exporter_name(environ: Mapping[str, str]) -> str | None:
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    name = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if name == "none":
        return None
    if name:
        if name not in _SUPPORTED_EXPORTERS:
            raise ConfigError(f"OTEL_TRACES_EXPORTER: expected one of otlp, console, none, got {name!r}")
        return name
    if environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return "otlp"
    return None


def configure(default_service_name: str = "helios-gateway") -> bool:
    """Install a tracer provider and instrument Django when the environment asks for it.

    Must run before Django builds its middleware chain (the instrumentor adds a middleware).
    Returns whether tracing is on.
    """
    exporter_name = _exporter_name(os.environ)
    if exporter_name is None:
        return False
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    exporter: SpanExporter
    if exporter_name == "console":
        exporter = ConsoleSpanExporter()
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    os.environ.setdefault("OTEL_SERVICE_NAME", default_service_name)
    provider = TracerProvider(resource=Resource.create())
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    DjangoInstrumentor().instrument()
    return True


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) in hex of the span being recorded, for the log lines."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")
