"""Workflows for the schedule and event-trigger tests, served by worker processes.

``SURESTEP_TEST_EVERY`` and ``SURESTEP_TEST_CATCHUP`` set ``ticker``'s schedule.
"""

from __future__ import annotations

import os

from surestep import WorkflowContext, event, workflow


@workflow(
    every=float(os.environ.get("SURESTEP_TEST_EVERY", "1")),
    catchup=os.environ.get("SURESTEP_TEST_CATCHUP", "all"),
)
async def ticker(ctx: WorkflowContext) -> str:
    return ctx.run_id


@workflow(triggers=[event("user.created")])
async def welcome(ctx: WorkflowContext, user_id: str) -> str:
    return f"welcome {user_id}"


@workflow(triggers=[event("user.created"), event("user.deleted")])
async def audit(ctx: WorkflowContext, user_id: str, plan: str = "free") -> list[str]:
    return [user_id, plan]
