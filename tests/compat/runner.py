"""A worker process for the porting crash tests: starts or resumes one scenario.

    python runner.py SCENARIO STORE start            # prints "started RUN", then "result RUN JSON"
    python runner.py SCENARIO STORE recover RUN      # resumes what is unfinished, then the same

``COMPAT_LEDGER`` and ``COMPAT_PAUSE_AT`` are read by ``programs/world.py``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from scenarios import SCENARIOS

from surestep import Engine
from surestep.engine import run_loop


async def main(name: str, store: str, command: str, run_id: str = "") -> None:
    scenario = SCENARIOS[name]
    scenario.function()  # imports the program: its workflows are served here
    async with Engine(store) as engine:
        if command == "start":
            handle = await scenario.start(engine)
            print(f"started {handle.run_id}", flush=True)
        else:
            await engine.recover()
            handle = engine.handle(run_id)
        result = await scenario.finish(engine, handle)
        print(f"result {handle.run_id} {json.dumps(result)}", flush=True)


if __name__ == "__main__":
    run_loop(main(*sys.argv[1:]))
