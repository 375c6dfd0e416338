"""Structured JSON logs, one object per line, with the request id of the request being served.

The request id comes from ``X-Request-ID`` when the caller (or nginx) sent a
sane one, else a new one is made; it is returned in the response header and put
on every log record written while the request runs (a context variable, so it
follows the request through ``await``). Every message, argument and extra field
is masked (:mod:`samplan.observability.masking`) before it is written.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import logging
import logging.config
import re
import uuid
from typing import Any, Final

import orjson

from samplan.observability.masking import mask

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "samplan_request_id", default=None
)
_SANE_ID: Final[re.Pattern[str]] = re.compile(r"[A-Za-z0-9._:\-]{1,128}")

# attributes every LogRecord has; anything else was passed as ``extra=``
_STANDARD: Final[frozenset[str]] = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys()
) | {"message", "asctime", "color_message", "taskName"}


def request_id_from(header: str | None) -> str:
    """The caller's id when it is a sane token, else a fresh one."""
    if header and _SANE_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", "request_id", ...extra}``, masked."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": mask(record.getMessage()),
        }
        request_id = getattr(record, "request_id", None) or REQUEST_ID.get()
        if request_id:
            entry["request_id"] = request_id
        for key, value in vars(record).items():
            if key in _STANDARD or key == "request_id" or key.startswith("_"):
                continue
            entry[key] = mask(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["exc"] = mask(self.formatException(record.exc_info))
        return orjson.dumps(entry, default=str).decode()


class MaskingTextFormatter(logging.Formatter):
    """The classic one-line text format, masked, with the request id when there is one."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = mask(super().format(record))
        request_id = REQUEST_ID.get()
        return f"{text} [request_id={request_id}]" if request_id else text


def logging_config(log_format: str = "json", level: str = "INFO") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` dict (uvicorn applies it in each of its workers too)."""
    formatter = JsonFormatter if log_format == "json" else MaskingTextFormatter
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"samplan": {"()": f"{formatter.__module__}.{formatter.__qualname__}"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "samplan",
                                "stream": "ext://sys.stderr"}},
        "root": {"handlers": ["stderr"], "level": level.upper()},
        "loggers": {
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.error": {"handlers": [], "propagate": True},
            "uvicorn.access": {"handlers": [], "propagate": True, "level": "WARNING"},
            "httpx": {"level": "WARNING"},
            # "setup plugin alembic.autogenerate..." at every start, when the readiness
            # check imports Alembic: noise, not news
            "alembic.runtime.plugins": {"level": "WARNING"},
        },
    }


def configure_logging(log_format: str = "json", level: str = "INFO") -> None:
    """Route every logger (uvicorn's too) to stderr in ``log_format``; call once per process."""
    logging.config.dictConfig(logging_config(log_format, level))
