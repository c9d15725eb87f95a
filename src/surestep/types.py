"""The option types of ``@function`` and ``@workflow``, where code written for the AGNT5
SDK imports them (``from agnt5.types import BackoffType, event, webhook`` becomes
``from surestep.types import ...``).

``event(name)`` and ``webhook(source, event=...)`` declare what starts a workflow
(``@workflow(triggers=[...])``); they are validated here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, TypeAlias

from .decorators import BackoffPolicy, RetryPolicy
from .errors import ConfigurationError

JSON: TypeAlias = dict[str, Any] | list[Any] | str | int | float | bool | None

WEBHOOK_SOURCES = ("standard", "sentry", "stripe", "github", "slack")


class BackoffType(str, enum.Enum):
    """How the wait between a step's attempts grows (``BackoffPolicy(type=...)``,
    or ``@function(backoff=BackoffType.LINEAR)``)."""

    CONSTANT = "constant"
    LINEAR = "linear"
    EXPONENTIAL = "exponential"


@dataclass(frozen=True)
class EventTrigger:
    """Start the workflow when the named event is published (``event("user.created")``)."""

    name: str


@dataclass(frozen=True)
class WebhookTrigger:
    """Start the workflow when ``source`` (one of :data:`WEBHOOK_SOURCES`) delivers a
    webhook, of the ``event`` type when given (``webhook("stripe", event="charge.succeeded")``)."""

    source: str
    event: str | None = None

    @property
    def event_type(self) -> str:
        """The delivery's name as AGNT5 forms it: ``{source}.{event}``, or the source alone."""
        return self.source if self.event is None else f"{self.source}.{self.event}"


TriggerSpec: TypeAlias = EventTrigger | WebhookTrigger


def event(name: str) -> EventTrigger:
    """A trigger on the event called ``name``."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigurationError(f"event() takes a non-empty event name, not {name!r}")
    return EventTrigger(name)


def webhook(source: str, event: str | None = None) -> WebhookTrigger:
    """A trigger on webhooks from ``source`` (``standard``, ``sentry``, ``stripe``,
    ``github`` or ``slack``), of one ``event`` type when given."""
    if source not in WEBHOOK_SOURCES:
        raise ConfigurationError(
            f"webhook() source must be one of {', '.join(WEBHOOK_SOURCES)}, not {source!r}"
        )
    if event is not None and (not isinstance(event, str) or not event.strip()):
        raise ConfigurationError(f"webhook() event must be a non-empty string, not {event!r}")
    return WebhookTrigger(source, event)


__all__ = [
    "JSON",
    "WEBHOOK_SOURCES",
    "BackoffPolicy",
    "BackoffType",
    "EventTrigger",
    "RetryPolicy",
    "TriggerSpec",
    "WebhookTrigger",
    "event",
    "webhook",
]
