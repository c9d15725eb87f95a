"""The outside world the porting programs act on (a payment gateway, a warehouse, a
mailer...), as one ledger of side effects.

Each effect is a JSON line appended and fsynced to the file named by ``COMPAT_LEDGER``
before the step that caused it returns, so a crash test can count what happened. With
``COMPAT_PAUSE_AT=n`` the process prints ``paused`` and blocks when its n-th effect is
about to happen: the step before it has returned and been journaled, so a SIGKILL then
lands between two steps.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

_done_here = 0


def effect(kind: str, key: str, **fields: Any) -> None:
    """Do (record) the effect ``kind`` on ``key``: a business key such as an order id,
    the same in every run of the scenario, so that doing it twice shows."""
    global _done_here
    _done_here += 1
    if os.environ.get("COMPAT_PAUSE_AT") == str(_done_here):
        print(f"paused before effect {_done_here} ({kind} {key})", flush=True)
        time.sleep(3600)  # blocks the process until the test kills it
    line = json.dumps({"kind": kind, "key": key, "pid": os.getpid(), **fields})
    ledger = os.environ.get("COMPAT_LEDGER")
    if ledger is None:
        print(f"effect: {line}", file=sys.stderr)
        return
    with open(ledger, "a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())
