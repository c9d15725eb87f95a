"""One workflow, two versions: ``SURESTEP_TEST_VERSION`` picks which this process serves.

v2 changed the code incompatibly (it stamps before it greets), so a v1 run
must never be resumed by a v2 worker.
"""

from __future__ import annotations

import os

from surestep import WorkflowContext, workflow

VERSION = os.environ.get("SURESTEP_TEST_VERSION", "v1")

if VERSION == "v1":

    @workflow(name="greeter", version="v1")
    async def greeter(ctx: WorkflowContext, who: str) -> str:
        hello = await ctx.step("greet", lambda: f"hello {who}")
        await ctx.wait_for_event("go")
        return f"v1:{hello}:{os.getpid()}"

else:

    @workflow(name="greeter", version="v2")
    async def greeter(ctx: WorkflowContext, who: str) -> str:
        stamp = await ctx.step("stamp", lambda: "stamped")
        hello = await ctx.step("greet", lambda: f"hello {who}")
        await ctx.wait_for_event("go")
        return f"v2:{stamp}:{hello}:{os.getpid()}"
