"""structlog set-up, done once by the CLI: JSON lines when stderr is not a terminal.

Every line passes through the credential redactor: structlog events field by field, the standard
library's records (aiohttp's among them) as formatted text, tracebacks included.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog

from shadowd.core.fastjson import dumps_or_json
from shadowd.core.redaction import SECRET_KEY, Redactor

# Credentials only: personal data in log lines is kept out by not logging payloads, while
# phone-like digit runs (offsets, ids) must stay readable.
_redactor = Redactor(personal=False)


def register_secrets(secrets: Iterable[str | None]) -> None:
    """Exact secrets of this process (its tokens, its API key) that no log line may show."""
    global _redactor
    known = set(_redactor.literals) | {s for s in secrets if s and len(s) >= 4}
    _redactor = Redactor(personal=False, literals=frozenset(known))


def redact_text(text: str) -> str:
    return _redactor.text(text)


@functools.lru_cache(maxsize=4096)
def _secret_named(key: str) -> bool:
    """Event keys are names from the code, a small set: each is matched once."""
    return SECRET_KEY.search(key) is not None


def redact_event(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: secret-named keys hidden, credentials in any string value replaced."""
    for key, value in list(event.items()):
        if _secret_named(key) and value:
            event[key] = "[redacted:secret]"
        elif isinstance(value, str):
            event[key] = _redactor.text(value)
        elif isinstance(value, dict | list | tuple):
            event[key] = _redactor.json(value)
        elif isinstance(value, BaseException):
            event[key] = _redactor.text(f"{type(value).__name__}: {value}")
    return event


_base_record_factory = logging.getLogRecordFactory()


def _redacting_record_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    """Every standard-library record is redacted when it is made, so that no handler (ours, a test
    runner's, a library's) ever formats the clear text."""
    record = _base_record_factory(*args, **kwargs)
    try:
        message = record.getMessage()
    except Exception:  # a broken format string: let the handler report it as it would
        return record
    record.msg, record.args = _redactor.text(message), None
    if record.exc_info and record.exc_info[1] is not None:
        record.exc_text = _redactor.text(logging.Formatter().formatException(record.exc_info))
    return record


class RedactingFormatter(logging.Formatter):
    """Formats a standard-library record, traceback included, then removes credentials from the text."""

    def format(self, record: logging.LogRecord) -> str:
        return _redactor.text(super().format(record))


class RedactingProcessorFormatter(structlog.stdlib.ProcessorFormatter):
    """structlog's rendering of a standard-library record, then the credential redactor over the line."""

    def format(self, record: logging.LogRecord) -> str:
        return _redactor.text(super().format(record))


class HttpProtocolFilter(logging.Filter):
    """aiohttp's own errors for requests it cannot parse carry the raw request line or header in the
    exception text: keep the event and its class, never the bytes the client sent."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None:
            from aiohttp.http_exceptions import HttpProcessingError

            if isinstance(exc, HttpProcessingError):
                said = record.getMessage()  # "Error handling request from <address>"
                remote = said.rsplit(" from ", 1)[-1] if " from " in said else "?"
                record.msg = "unparsable request from %s: %s (status %s)"
                record.args = (remote, type(exc).__name__, exc.code)
                record.exc_info = None
                record.exc_text = None
                record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def http_protocol_logger() -> logging.Logger:
    """The logger handed to aiohttp's request handler (`logger=`), filtered as above."""
    logger = logging.getLogger("shadowd.http")
    if not any(isinstance(f, HttpProtocolFilter) for f in logger.filters):
        logger.addFilter(HttpProtocolFilter())
    return logger


def configure_logging(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    stream = stream or sys.stderr
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r} (debug, info, warning, error, critical)")
    if fmt not in ("auto", "json", "console"):
        raise ValueError(f"unknown log format {fmt!r} (auto, json, console)")
    as_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer(serializer=dumps_or_json) if as_json else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_event,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    # The standard library's records (aiokafka, aiohttp, asyncio...) are rendered by structlog too,
    # so every line of a JSON log is JSON, with `logger` naming the library.
    handler.setFormatter(
        RedactingProcessorFormatter(
            processor=renderer,
            foreign_pre_chain=[
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.processors.format_exc_info,
                redact_event,
            ],
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_shadowd", False):
            root.removeHandler(old)
    handler._shadowd = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(max(numeric, logging.WARNING))
    logging.setLogRecordFactory(_redacting_record_factory)
    http_protocol_logger()
