"""Ending the worker processes the tests start (``subprocess.Popen`` with a stdout pipe)."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Mapping


def sigkill(proc: subprocess.Popen[str]) -> float:
    """SIGKILL ``proc`` and reap it; the wall-clock time of the kill (the ledgers' clock)."""
    proc.send_signal(signal.SIGKILL)
    killed_at = time.time()
    proc.wait()
    assert proc.stdout is not None
    proc.stdout.close()
    return killed_at


def terminate_all(procs: list[subprocess.Popen[str]], timeout: float = 60) -> list[int]:
    """SIGTERM every process (a worker drains and exits), then reap each; their exit codes."""
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    codes = [proc.wait(timeout=timeout) for proc in procs]
    for proc in procs:
        assert proc.stdout is not None
        proc.stdout.close()
    return codes


def kill_when_paused(command: list[str], env: Mapping[str, str]) -> str:
    """Run ``command`` until it prints ``paused``, SIGKILL it, and return the run id it
    printed (``""`` if it printed none)."""
    with subprocess.Popen(command, env=dict(env), stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        run_id = ""
        for line in proc.stdout:
            if line.startswith("started "):
                run_id = line.split()[1]
            if line.startswith("paused "):
                proc.send_signal(signal.SIGKILL)
                break
        else:
            proc.wait()
            raise AssertionError(f"{command}: exited with {proc.returncode} before pausing")
        assert proc.wait(timeout=30) == -signal.SIGKILL
    return run_id
