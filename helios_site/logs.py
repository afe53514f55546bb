"""JSON log lines: timestamp, level, component, message, extra, and request_id/trace_id when known.

Every HELIOS process logs this way (Django's LOGGING uses it, and the daemons call configure()),
so that one parser reads the logs of the gateway, ATLAS, the workers and the proxy alike.
"""

from __future__ import annotations

import contextvars
import logging
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS, merge_record_extra
from pythonjsonlogger.json import JsonFormatter as _LibraryJsonFormatter

from helios_site import tracing

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

# Attributes the filter sets on every record; they are top-level fields, not part of "extra".
_CONTEXT_ATTRS = ("request_id", "trace_id", "span_id")
# color_message: uvicorn's copy of the message with terminal colour codes.
_NOT_EXTRA = frozenset(RESERVED_ATTRS) | {"message", "asctime", "taskName", "color_message", *_CONTEXT_ATTRS}


class RequestContextFilter(logging.Filter):
    """Copies the current request id and OpenTelemetry trace ids onto each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        record.trace_id = record.span_id = None
        ids = tracing.current_ids()
        if ids:
            record.trace_id, record.span_id = ids
        return True


class JsonFormatter(_LibraryJsonFormatter):
    """One JSON object per line with HELIOS's fixed top-level keys."""

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        log_data["timestamp"] = (
            datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        )
        log_data["level"] = record.levelname
        log_data["component"] = record.name
        log_data["message"] = record.getMessage()
        extra: dict[str, Any] = dict(message_dict)
        merge_record_extra(record, extra, reserved=_NOT_EXTRA)
        exc_info = extra.pop("exc_info", None)
        stack_info = extra.pop("stack_info", None)
        log_data["extra"] = extra
        for attr in _CONTEXT_ATTRS:
            value = getattr(record, attr, None)
            if value:
                log_data[attr] = value
        if exc_info:
            log_data["exc_info"] = exc_info
        if stack_info:
            log_data["stack_info"] = stack_info
