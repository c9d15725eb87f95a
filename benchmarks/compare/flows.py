"""The surestep workflow that ``compare.py`` and ``workers.py`` measure.

``chain(n)`` runs ``n`` durable steps one after the other, each adding one to the
previous step's output, and returns ``n``. ``compare.py`` defines the same two
functions for DBOS (``@DBOS.workflow()`` / ``@DBOS.step()``), with the same bodies.
The worker processes of ``workers.py`` import this module by name, so that the
client and the workers register the same workflow, at the same version.
"""

from __future__ import annotations

from surestep import WorkflowContext, function, workflow

STEP_NAME = "cmp.inc"


@function(name=STEP_NAME)
async def inc(x: int) -> int:
    return x + 1


@workflow(name="cmp.chain")
async def chain(ctx: WorkflowContext, n: int) -> int:
    x = 0
    for _ in range(n):
        x = await ctx.step(inc, x)
    return x
