"""The seam between the workflow API and the runtime that executes it.

A :class:`~surestep.context.WorkflowContext` asks its runtime (the
:class:`~surestep.engine.Engine`) for what it cannot do alone, through :class:`Runtime`;
the runtime drives the run's journal through the context's
:class:`~surestep.recorder.Recorder` (``flush``, ``check_all_replayed``), which it makes
and hands to the context. Neither reaches into the other's private names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from .store.base import RunInfo

if TYPE_CHECKING:
    from .context import WorkflowContext
    from .decorators import WorkflowSpec


def run_row(
    spec: WorkflowSpec,
    run_id: str,
    args: tuple[Any, ...] | list[Any],
    kwargs: dict[str, Any],
    session_id: str | None,
    user_id: str | None,
    **fields: Any,
) -> RunInfo:
    """The row of a new run ``run_id`` of ``spec`` (``fields``: what its starter sets more)."""
    return RunInfo(
        run_id=run_id,
        workflow=spec.name,
        version=spec.version,
        args=list(args),
        kwargs=kwargs,
        session_id=session_id,
        user_id=user_id,
        **fields,
    )


def child_row(
    spec: WorkflowSpec,
    child_id: str,
    args: tuple[Any, ...] | list[Any],
    kwargs: dict[str, Any],
    parent: WorkflowContext,
    **fields: Any,
) -> RunInfo:
    """The row of the child run ``child_id`` that a step of ``parent`` starts: the
    parent's session and user, the parent named (``fields``: what a runtime sets more)."""
    return run_row(
        spec,
        child_id,
        args,
        kwargs,
        parent.session_id,
        parent.user_id,
        parent_id=parent.run_id,
        **fields,
    )


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
