"""Structured logs: one JSON object per line on stdout, the process's own console.

Every line carries the instance's identity and, inside a request, its request
id; extra fields come from `extra={...}`. The central copy that `lab.logs()`
reads goes over OTLP to the telemetry store (see labstack.otel), not from here.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone

from .otel import ConsoleFilter, RequestIdFilter
from .settings import Settings

# Attributes every LogRecord has; anything else was passed through `extra`.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's coloured duplicate of msg
}


class JsonFormatter(logging.Formatter):
    def __init__(self, identity: dict[str, str]) -> None:
        super().__init__()
        self.identity = identity

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            **self.identity,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        line.update((k, v) for k, v in record.__dict__.items() if k not in _STANDARD)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def describe_error(exc: BaseException) -> str:
    """`Type: message`, or just `Type` for the many exceptions with an empty message."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def configure_logging(settings: Settings) -> logging.Logger:
    """Route all logging (ours, uvicorn's, libraries') through the JSON formatter; at the
    level labstack.sampling's CONTROL sets (LAB_LOG_LEVEL, changed live), which the OTLP
    handler (labstack.otel) follows too."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        JsonFormatter(
            {
                "service": settings.service,
                "instance": settings.instance_id,
                "version": settings.version,
            }
        )
    )
    handler.addFilter(RequestIdFilter())
    handler.addFilter(ConsoleFilter())
    logging.getLogger().handlers[:] = [handler]
    return logging.getLogger("labstack")

