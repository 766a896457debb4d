"""Logging, in one place: the fields a job's log lines carry, and how lines are written by
`serve` and `worker` (under the Functions host its own logging applies)."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger("blast_core")

JOB_FIELDS = ("job_id", "batch", "attempt")


class JobLog(logging.LoggerAdapter):
    """A logger whose every line carries the job's fields (`JOB_FIELDS`) as record
    attributes, which `JsonFormatter` writes out."""

    def process(self, msg, kwargs):
        kwargs["extra"] = {**(self.extra or {}), **kwargs.get("extra", {})}
        return msg, kwargs


def job_fields(job_id: str, batch: int | None = None,
               attempt: int | None = None) -> dict[str, object]:
    return dict(zip(JOB_FIELDS, (job_id, batch, attempt), strict=True))


def job_log(job_id: str, batch: int | None = None, attempt: int | None = None) -> JobLog:
    return JobLog(log, job_fields(job_id, batch, attempt))


def describe(error: Exception) -> str:
    """One line for a job record or a log: SDK errors carry whole response documents after it."""
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {first_line}"[:500]


def configure_logging() -> None:
    """Lines for people on a terminal; elsewhere (a file, a pipe, a log collector) one JSON
    object per line, with a job's fields on the lines about one."""
    handler = logging.StreamHandler(sys.stderr)
    if sys.stderr.isatty():
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s[%(process)d] %(message)s"))
    else:
        handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    logging.getLogger("azure").setLevel(logging.WARNING)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC), level, logger, pid, message, the job fields
    when the record has them, and the traceback of an exception."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname, "logger": record.name, "pid": record.process,
            "message": record.getMessage()}
        for name in JOB_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)
