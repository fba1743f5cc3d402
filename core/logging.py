"""Logging setup: every record passes through the redactor before any handler writes it.

The redaction rewrites the record itself, not only the text our handler writes, because not every
line reaches our handler: uvicorn's access and error loggers have their own handlers and don't
propagate, and the access line carries the request's full query string (`?api_key=…`). Records
are redacted as they are created (a log-record factory), so every handler sees the clean record
whenever it was added; the same filter also sits on the root and uvicorn handlers and loggers, in
case something later replaces the record factory without chaining ours.
"""

from __future__ import annotations

import logging
from typing import Any

from core.redaction import redact_text

# uvicorn configures these (its LOGGING_CONFIG) with their own handlers, before or after us.
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")
# Loggers whose formatter unpacks record.args (uvicorn's AccessFormatter reads client, method,
# path, version, status from it): their args are redacted one by one instead of merged away.
_STRUCTURED_ARGS = frozenset({"uvicorn.access"})
_DONE = "_llmflow_redacted"


class RedactingFilter(logging.Filter):
    """Rewrites a record in place (message, arguments, traceback, stack) through the redactor.

    Attached to loggers and handlers alike; a record is only redacted once however many of
    them it passes. Never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, _DONE, False):
            return True
        setattr(record, _DONE, True)
        try:
            redact_record(record)
        except Exception:
            # A message that can't be rendered ("%d" given a str) can't be checked whole: keep
            # its template, drop the arguments rather than write them unchecked.
            try:
                template = redact_text(str(record.msg), truncate=False)
            except Exception:
                template = "(unprintable message)"
            record.msg, record.args = f"{template} [arguments withheld: bad format]", None
        return True


def _redact_arg(value: object) -> object:
    return redact_text(value, truncate=False) if isinstance(value, str) else value


def redact_record(record: logging.LogRecord) -> None:
    if record.name in _STRUCTURED_ARGS and isinstance(record.args, tuple):
        record.msg = _redact_arg(record.msg)
        record.args = tuple(_redact_arg(a) for a in record.args)
    else:
        # The rendered message, so a secret split across the format and its arguments
        # ("key=%s") is seen whole.
        record.msg, record.args = redact_text(record.getMessage(), truncate=False), None
    if record.exc_info and not record.exc_text:
        # Formatters reuse exc_text when it is set, so the traceback is rendered once, redacted.
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redact_text(record.exc_text, truncate=False)
    if record.stack_info:
        record.stack_info = redact_text(record.stack_info, truncate=False)


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record), truncate=False)


def _has_filter(filterer: logging.Filterer) -> bool:
    return any(isinstance(f, RedactingFilter) for f in filterer.filters)


def _install_record_factory(redacting: RedactingFilter) -> None:
    previous = logging.getLogRecordFactory()
    if getattr(previous, _DONE, False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        redacting.filter(record)
        return record

    setattr(factory, _DONE, True)
    logging.setLogRecordFactory(factory)


def install_redaction(*logger_names: str) -> None:
    """Redact every record from now on: the record factory, plus the filter on the root logger's
    handlers and on uvicorn's loggers and their handlers (and any named loggers). Idempotent.
    Logger-level filters survive uvicorn's dictConfig, which replaces handlers but keeps them."""
    redacting = RedactingFilter()
    _install_record_factory(redacting)
    root = logging.getLogger()
    targets: list[logging.Filterer] = [root, *root.handlers]
    for name in (*UVICORN_LOGGERS, *logger_names):
        logger = logging.getLogger(name)
        targets.extend([logger, *logger.handlers])
    for target in targets:
        if not _has_filter(target):
            target.addFilter(redacting)


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs full request URLs at INFO, and some services carry keys in the query string.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    install_redaction()
