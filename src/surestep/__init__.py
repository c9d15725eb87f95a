"""surestep: durable workflows for Python.

Steps are journaled (LMDB embedded by default); after a crash the next attempt
replays the journal, skips completed steps and continues::

    from surestep import WorkflowContext, function, workflow

    @function(retries=3)
    async def charge_card(ctx, order_id: str) -> str: ...

    @workflow
    async def order_fulfillment(ctx: WorkflowContext, order_id: str) -> dict:
        txn = await ctx.step(charge_card, order_id)
        return {"txn": txn}
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .decorators import BackoffPolicy, RetryPolicy, function, workflow
from .errors import (
    AnswerError,
    ChildWorkflowError,
    ConfigurationError,
    DefinitionError,
    DirectCallError,
    EventTimeoutError,
    JournalCorruptError,
    LeaseLostError,
    NonDeterminismError,
    OverloadedError,
    PayloadTooLargeError,
    RunCancelledError,
    RunFinishedError,
    RunNotFinishedError,
    RunNotFoundError,
    ScheduleNotFoundError,
    SerializationError,
    StateConflictError,
    StepFailedError,
    StepTimeoutError,
    StoreError,
    StoreFullError,
    SurestepError,
    UnknownWorkflowError,
    UnsupportedFormatError,
    WorkflowFailedError,
    register_exception,
)
from .store.base import RunInfo
from .types import BackoffType, event, webhook

if TYPE_CHECKING:
    from .batch import BatchItemError, BatchItemResult, BatchResult, BatchStats
    from .client import AsyncClient, Client
    from .context import Context, FunctionContext, WorkflowContext
    from .engine import Engine, JournalEntry, RunHandle, run

# The runtime (and asyncio with it) and the HTTP clients are imported on first use:
# `surestep --help`, and a module that only declares workflows, start without them.
_RUNTIME = {
    "BatchItemError": "batch",
    "BatchItemResult": "batch",
    "BatchResult": "batch",
    "BatchStats": "batch",
    "Context": "context",
    "FunctionContext": "context",
    "WorkflowContext": "context",
    "Engine": "engine",
    "JournalEntry": "engine",
    "RunHandle": "engine",
    "run": "engine",
    # The HTTP clients need httpx (the ``http`` extra).
    "Client": "client",
    "AsyncClient": "client",
}


def __getattr__(name: str) -> Any:
    module = _RUNTIME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_RUNTIME))


__all__ = [
    "AnswerError",
    "AsyncClient",
    "BackoffPolicy",
    "BackoffType",
    "BatchItemError",
    "BatchItemResult",
    "BatchResult",
    "BatchStats",
    "ChildWorkflowError",
    "Client",
    "ConfigurationError",
    "Context",
    "DefinitionError",
    "DirectCallError",
    "Engine",
    "EventTimeoutError",
    "FunctionContext",
    "JournalCorruptError",
    "JournalEntry",
    "LeaseLostError",
    "NonDeterminismError",
    "OverloadedError",
    "PayloadTooLargeError",
    "RetryPolicy",
    "RunCancelledError",
    "RunFinishedError",
    "RunHandle",
    "RunInfo",
    "RunNotFinishedError",
    "RunNotFoundError",
    "ScheduleNotFoundError",
    "SerializationError",
    "StateConflictError",
    "StepFailedError",
    "StepTimeoutError",
    "StoreError",
    "StoreFullError",
    "SurestepError",
    "UnknownWorkflowError",
    "UnsupportedFormatError",
    "WorkflowContext",
    "WorkflowFailedError",
    "__version__",
    "event",
    "function",
    "register_exception",
    "run",
    "webhook",
    "workflow",
]
