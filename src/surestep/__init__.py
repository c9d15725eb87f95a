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

from typing import Any

from ._version import __version__
from .context import Context, FunctionContext, WorkflowContext
from .decorators import BackoffPolicy, RetryPolicy, function, workflow
from .engine import Engine, JournalEntry, RunHandle, run
from .errors import (
    ChildWorkflowError,
    ConfigurationError,
    DefinitionError,
    EventTimeoutError,
    JournalCorruptError,
    LeaseLostError,
    NonDeterminismError,
    PayloadTooLargeError,
    RunCancelledError,
    RunNotFinishedError,
    RunNotFoundError,
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

__all__ = [
    "AsyncClient",
    "BackoffPolicy",
    "BackoffType",
    "ChildWorkflowError",
    "Client",
    "ConfigurationError",
    "Context",
    "DefinitionError",
    "Engine",
    "EventTimeoutError",
    "FunctionContext",
    "JournalCorruptError",
    "JournalEntry",
    "LeaseLostError",
    "NonDeterminismError",
    "PayloadTooLargeError",
    "RetryPolicy",
    "RunCancelledError",
    "RunHandle",
    "RunInfo",
    "RunNotFinishedError",
    "RunNotFoundError",
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


def __getattr__(name: str) -> Any:
    # The HTTP clients need httpx (the ``http`` extra): imported on first use only.
    if name in ("Client", "AsyncClient"):
        from . import client

        return getattr(client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
