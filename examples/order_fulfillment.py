"""The seed's order-fulfilment workflow; only the import names surestep.

python examples/order_fulfillment.py start STORE ORDER_ID   # run one order
python examples/order_fulfillment.py recover STORE          # resume unfinished orders
"""

from __future__ import annotations

import json
import sys

from services import payments, shipping

from surestep import Engine, WorkflowContext, function, workflow


@function
async def validate_order(ctx, order_id: str, items: list) -> dict:
    return {"valid": len(items) > 0, "item_count": len(items)}


@function
async def charge_card(ctx, order_id: str) -> str:
    return await payments.charge(order_id)


@function
async def create_shipment(ctx, order_id: str, txn: str) -> str:
    return await shipping.create(order_id, txn)


@workflow
async def order_fulfillment(ctx: WorkflowContext, order_id: str, items: list) -> dict:
    validation = await ctx.step(validate_order, order_id, items)
    if not validation["valid"]:
        return {"order_id": order_id, "status": "rejected"}
    txn = await ctx.step(charge_card, order_id)
    tracking = await ctx.step(create_shipment, order_id, txn)
    return {"order_id": order_id, "status": "fulfilled", "txn": txn, "tracking": tracking}


async def main(argv: list[str]) -> None:
    command, store = argv[0], argv[1]
    async with Engine(store) as engine:
        if command == "start":
            handle = await engine.start(order_fulfillment, argv[2], ["book", "lamp"])
            print(f"started {handle.run_id}", flush=True)
            print(json.dumps(await handle.result()), flush=True)
        elif command == "recover":
            for handle in await engine.recover():
                print(f"resumed {handle.run_id}", flush=True)
                print(json.dumps(await handle.result()), flush=True)
        else:
            raise SystemExit(f"unknown command {command!r}: use start or recover")


if __name__ == "__main__":
    from surestep.engine import run_loop

    run_loop(main(sys.argv[1:]))
