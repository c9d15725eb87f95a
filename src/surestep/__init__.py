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

from ._version import __version__
from .context import FunctionContext, WorkflowContext
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
    RunFinishedError,
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
)
from .store.base import RunInfo

__all__ = [
    "BackoffPolicy",
    "ChildWorkflowError",
    "ConfigurationError",
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
    "RunFinishedError",
    "RunHandle",
    "RunInfo",
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
    "function",
    "run",
    "workflow",
]
