"""Stand-ins for the payment and shipping services of the order-fulfilment example.

Every side effect is appended to a ledger file (one JSON line per effect), so a
demo or a test can count how many times the card was really charged.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid

LEDGER_ENV = "SURESTEP_EXAMPLE_LEDGER"
PAUSE_ENV = "SURESTEP_EXAMPLE_PAUSE_BEFORE_SHIPMENT"


def _record(effect: str, **fields: object) -> None:
    path = os.environ.get(LEDGER_ENV)
    if not path:
        return
    line = json.dumps({"effect": effect, "pid": os.getpid(), **fields})
    with open(path, "a", encoding="utf-8") as ledger:
        ledger.write(line + "\n")
        ledger.flush()
        os.fsync(ledger.fileno())


def read_ledger(path: str) -> list[dict[str, object]]:
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as ledger:
        return [json.loads(line) for line in ledger if line.strip()]


class Payments:
    async def charge(self, order_id: str) -> str:
        await asyncio.sleep(0.01)  # the network
        txn = f"txn-{uuid.uuid4().hex[:8]}"
        _record("charge", order_id=order_id, txn=txn)
        return txn


class Shipping:
    async def create(self, order_id: str, txn: str) -> str:
        if os.environ.get(PAUSE_ENV):
            # The demo kills the process here: after charge_card was journaled,
            # before create_shipment had any effect.
            print("paused-before-shipment", flush=True)
            await asyncio.sleep(3600)
        await asyncio.sleep(0.01)
        tracking = f"track-{uuid.uuid4().hex[:8]}"
        _record("shipment", order_id=order_id, txn=txn, tracking=tracking)
        return tracking


payments = Payments()
shipping = Shipping()
