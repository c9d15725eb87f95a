"""The seam between the workflow API and the runtime that executes it.

A :class:`~surestep.context.WorkflowContext` asks its runtime (the
:class:`~surestep.engine.Engine`) for what it cannot do alone, through :class:`Runtime`;
the runtime drives the run's journal through the context's
:class:`~surestep.recorder.Recorder` (``flush``, ``check_all_replayed``), which it makes
and hands to the context. Neither reaches into the other's private names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .context import WorkflowContext
    from .decorators import WorkflowSpec


class Runtime(Protocol):
    """What a workflow's context needs from whoever executes its run."""

    async def run_child(
        self,
        spec: WorkflowSpec,
        child_id: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        parent: WorkflowContext,
    ) -> Any:
        """Start the child run ``child_id`` of ``parent`` (or find it again: the id is
        derived from the parent's step) and wait for its result; ``WorkflowFailedError``
        or ``RunCancelledError`` when it failed or was cancelled."""
        ...
