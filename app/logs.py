"""Structured (JSON) logs. Log records carry ids and figures, never transcript text or secrets."""

from __future__ import annotations

import json
import logging
import re
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from urllib.parse import unquote, unquote_plus

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

# The ids that follow a call from the API through the worker: set by the API's middleware
# (request_id, also sent along with the task) and by the task (transcript_id).
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
transcript_id: ContextVar[str | None] = ContextVar("transcript_id", default=None)


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in (("request_id", request_id), ("transcript_id", transcript_id)):
            value = var.get()
            if value is not None and not hasattr(record, name):
                setattr(record, name, value)
        return True


# callx's API keys (app/auth/keys.py): cx_<8 hex id>_<secret>. The id is public, the secret not.
_API_KEY = re.compile(r"cx_([0-9a-f]{8})_[A-Za-z0-9_-]+")


def loggable_target(target: str) -> str:
    """A request's path and query as logged: the query's values left out (a key sent as
    `?api_key=...`, a customer's external_id), and any API key in what is left shown by its
    public id only."""
    path, _, query = target.partition("?")
    shown = unquote(path)
    if query:
        parts = [part.partition("=") for part in query.split("&") if part]
        shown += "?" + "&".join(unquote_plus(name) + (sep and "=...") for name, sep, _ in parts)
    return _API_KEY.sub(r"cx_\1_[redacted]", shown)


class AccessLogFilter(logging.Filter):
    """uvicorn's access log line (`client - "GET /path?query HTTP/1.1" 200`) with its target
    made loggable: an API key sent in a URL is never written out."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if record.name == "uvicorn.access" and isinstance(args, tuple) and len(args) == 5:
            client, method, target, version, status = args
            record.args = (client, method, loggable_target(str(target)), version, status)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    handler.addFilter(AccessLogFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # instructor logs failed answers verbatim (they can quote the call): keep it quiet.
    logging.getLogger("instructor").setLevel(logging.CRITICAL)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    for name in ("openai", "httpx2", "httpcore", "httpcore2"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # Celery's "received" and "succeeded in" lines, two per task, say less than callx's own
    # "extraction stored" (status, latency, transcript and request ids) and cost as much:
    # shown at DEBUG only. A task that fails is still logged, as an error.
    if root.level > logging.DEBUG:
        for name in ("celery.app.trace", "celery.worker.strategy"):
            logging.getLogger(name).setLevel(logging.WARNING)
