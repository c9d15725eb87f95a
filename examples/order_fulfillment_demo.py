"""The main job, end to end: an order is charged, the process is killed with
SIGKILL before the shipment, a new process resumes the run, and the card was
charged exactly once.

    make demo        # or: python examples/order_fulfillment_demo.py
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from services import LEDGER_ENV, PAUSE_ENV, read_ledger  # noqa: E402

SCRIPT = os.path.join(HERE, "order_fulfillment.py")


def say(text: str) -> None:
    print(f"demo: {text}", flush=True)


def main() -> int:
    workdir = tempfile.mkdtemp(prefix="surestep-demo-")
    store = os.path.join(workdir, "store")
    ledger = os.path.join(workdir, "ledger.jsonl")
    env = {**os.environ, LEDGER_ENV: ledger}

    say(f"store {store}")
    say("1. start order o-1001 and kill the process with SIGKILL once the card is charged")
    with subprocess.Popen(
        [sys.executable, SCRIPT, "start", store, "o-1001"],
        env={**env, PAUSE_ENV: "1"},
        stdout=subprocess.PIPE,
        text=True,
    ) as first:
        assert first.stdout is not None
        for line in first.stdout:
            say(f"   worker 1: {line.strip()}")
            if line.startswith("paused-before-shipment"):
                first.send_signal(signal.SIGKILL)
                break
        first.wait()
    killed = first.returncode == -signal.SIGKILL
    say(f"   worker 1 exited with {first.returncode} (killed: {killed})")
    charges = [e for e in read_ledger(ledger) if e["effect"] == "charge"]
    say(f"   ledger after the crash: {len(charges)} charge(s), 0 shipments expected")

    say("2. a new process recovers the run from the journal")
    second = subprocess.run(
        [sys.executable, SCRIPT, "recover", store],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    run_id = ""
    for line in second.stdout.splitlines():
        say(f"   worker 2: {line}")
        if line.startswith("resumed "):
            run_id = line.split()[1]

    effects = read_ledger(ledger)
    charges = [e for e in effects if e["effect"] == "charge"]
    shipments = [e for e in effects if e["effect"] == "shipment"]
    say(f"3. the card was charged {len(charges)} time(s); {len(shipments)} shipment(s) created")
    ok = (
        first.returncode == -signal.SIGKILL
        and len(charges) == 1
        and len(shipments) == 1
        and shipments[0]["txn"] == charges[0]["txn"]
        and '"status": "fulfilled"' in second.stdout
    )
    say("OK: charged once, shipped with the recorded txn" if ok else "FAILED")
    say(f"look at it: .venv/bin/surestep --store {store} show {run_id} (or ... ui)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
