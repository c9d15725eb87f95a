"""OpenTelemetry spans for runs and steps (``pip install surestep[otel]``).

Off unless asked for: ``Engine(tracing=True)`` uses the global tracer
provider, ``Engine(tracing=provider)`` a given one. Each execution of a run is
a span ``surestep.run <workflow>``; each step inside it a child span
``surestep.step <name>``. Attributes: ``surestep.run_id``,
``surestep.workflow``, ``surestep.attempt`` (the run's, from 0),
``surestep.step.name``, ``surestep.step.seq``, ``surestep.step.attempts``
(how many attempts the step took) and ``surestep.replay`` (the step's result
came from the journal, or the run replayed its journal).
"""

from __future__ import annotations

from typing import Any

from .errors import ConfigurationError

TRACER_NAME = "surestep"


def tracer_for(tracing: Any) -> Any:
    """The tracer ``Engine(tracing=...)`` asks for, or ``None`` when tracing is off."""
    if tracing is None or tracing is False:
        return None
    try:
        from opentelemetry import trace
    except ImportError:
        raise ConfigurationError(
            "tracing needs OpenTelemetry: pip install 'surestep[otel]'"
        ) from None
    from ._version import __version__

    if tracing is True:
        return trace.get_tracer(TRACER_NAME, __version__)
    return tracing.get_tracer(TRACER_NAME, __version__)
