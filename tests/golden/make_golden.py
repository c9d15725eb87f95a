"""Record the golden journals (run once; the files are checked in).

    python tests/golden/make_golden.py

It writes ``format2/``: the journals as this surestep records them. The files
beside this script were recorded the same way by surestep 0.1 (journal format 1)
and stay as they are: today's code must still read and replay them.

``checkout-v1.json`` is a run of ``golden_workflows.checkout`` as it stands,
stopped while it waits for an event. ``checkout-before-receipt.json`` comes
from the code before ``ctx.patched("receipt-step")`` was added: today's code
replays it through the old branch. ``checkout-paid-first.json`` comes from an
older code that paid before reserving: today's code must refuse it.
"""

from __future__ import annotations

import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from surestep import Engine, WorkflowContext, decorators, testing, workflow  # noqa: E402
from surestep.engine import run_loop  # noqa: E402


async def record(workflow_fn, name: str, *args: object) -> None:  # type: ignore[no-untyped-def]
    with tempfile.TemporaryDirectory() as tmp:
        async with Engine(os.path.join(tmp, "store"), inline_sleep=0) as engine:
            handle = await engine.start(workflow_fn, *args)
            while (await engine.get_run(handle.run_id)).status != "waiting":
                await engine.store.wait_changed(1.0)
            run = await testing.recorded_run(engine, handle.run_id)
            testing.save_journal(run, os.path.join(HERE, "format2", name))


def main() -> None:
    from support import golden_workflows

    run_loop(record(golden_workflows.checkout, "checkout-v1.json", ["lamp", "desk"], 250))
    decorators._workflows.pop("checkout")

    @workflow(name="checkout", version="1")
    async def checkout_paid_first(ctx: WorkflowContext, items: list, amount: int) -> dict:
        payment = await ctx.step(golden_workflows.pay, amount)
        reservations = [await ctx.step(golden_workflows.reserve, item) for item in items]
        await ctx.wait_for_event("note")
        return {"reservations": reservations, "payment": payment}

    run_loop(record(checkout_paid_first, "checkout-paid-first.json", ["lamp"], 250))
    decorators._workflows.pop("checkout")

    @workflow(name="checkout", version="1")
    async def checkout_before_receipt(ctx: WorkflowContext, items: list, amount: int) -> dict:
        reservations = [await ctx.step(golden_workflows.reserve, item) for item in items]
        payment = await ctx.step(golden_workflows.pay, amount)
        note = await ctx.wait_for_event("note", timeout=3600) if amount > 100 else None
        return {"reservations": reservations, "payment": payment, "note": note}

    run_loop(record(checkout_before_receipt, "checkout-before-receipt.json", ["desk"], 500))


if __name__ == "__main__":
    main()
