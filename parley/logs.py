"""structlog set-up: JSON lines for services, a readable console in a terminal."""

from __future__ import annotations

import logging
import sys

import structlog

from parley.settings import LogSettings


def configure(settings: LogSettings | None = None, *, service: str = "parley") -> None:
    """Configure structlog and the stdlib root logger once per process."""
    settings = settings or LogSettings()
    use_json = settings.format == "json" or (
        settings.format == "auto" and not sys.stderr.isatty()
    )
    level = logging.getLevelName(settings.level.upper())
    processors: list = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    if use_json:
        processors.append(structlog.processors.format_exc_info)
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=max(level, logging.WARNING), stream=sys.stderr)
    structlog.contextvars.bind_contextvars(service=service)


def get(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)
