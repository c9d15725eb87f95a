"""Real runs and a real dashboard for the end-to-end tests and ``make screenshot``.

Runs are made by the installed ``surestep`` command running the workflows of
``flows.py`` (so the store holds what a user's store holds), and the dashboard
is ``surestep ui --port 0`` in its own process.
"""

from __future__ import annotations

import json
import selectors
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

FLOWS = Path(__file__).with_name("flows.py")


def surestep_command() -> list[str]:
    """The installed ``surestep`` entry point (the one beside this Python, in a venv)."""
    beside = Path(sys.executable).with_name("surestep")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("surestep")
    if found:
        return [found]
    raise RuntimeError("the surestep command is not installed: pip install -e '.[dev]'")


def surestep(
    store: str | Path, *args: str, check: int | None = 0
) -> subprocess.CompletedProcess[str]:
    """Run ``surestep --store STORE ARGS...``; ``check``: the exit code it must end with."""
    done = subprocess.run(
        [*surestep_command(), "--store", str(store), *args],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    if check is not None and done.returncode != check:
        raise AssertionError(
            f"surestep {' '.join(args)} exited {done.returncode}, not {check}:\n"
            f"{done.stdout}\n{done.stderr}"
        )
    return done


@dataclass
class Runs:
    """The run ids of the store's runs, by what they are, and every run's status."""

    order: str = ""
    failed: str = ""
    greet: str = ""
    parent: str = ""
    child: str = ""
    all: list[str] = field(default_factory=list)
    status: dict[str, str] = field(default_factory=dict)
    parent_of: dict[str, str] = field(default_factory=dict)

    def having(self, status: str) -> list[str]:
        """The runs with ``status``, newest first."""
        return [run_id for run_id in self.all if self.status[run_id] == status]

    def as_listed(self, ids: list[str]) -> list[str]:
        """``ids`` (newest first) as the dashboard lists them: a child whose parent is
        among them right under it."""
        listed = set(ids)
        under = [i for i in ids if self.parent_of.get(i) in listed]
        ordered: list[str] = []

        def place(run_id: str) -> None:
            ordered.append(run_id)
            for child in under:
                if self.parent_of[child] == run_id:
                    place(child)

        for run_id in ids:
            if run_id not in under:
                place(run_id)
        return ordered


def make_runs(store: str | Path) -> Runs:
    """A completed run with five steps (one retried), a failed run, a one-step run,
    and a run with a child workflow (so five runs in all)."""
    runs = Runs()
    surestep(
        store,
        "run",
        f"{FLOWS}:order_fulfillment",
        "o-17",
        '["book","lamp"]',
        "--session",
        "sess-42",
        "--user",
        "alice",
        "-q",
    )
    surestep(store, "run", f"{FLOWS}:declined_payment", "o-18", "--user", "bob", "-q", check=1)
    surestep(store, "run", f"{FLOWS}:greet", "world", "--session", "sess-7", "-q")
    surestep(store, "run", f"{FLOWS}:family", "kid", "-q")
    listed = json.loads(surestep(store, "runs", "--json").stdout)
    by_workflow = {
        (run["workflow"], run.get("parent_id") is not None): run["run_id"] for run in listed
    }
    runs.order = by_workflow["order_fulfillment", False]
    runs.failed = by_workflow["declined_payment", False]
    runs.greet = by_workflow["greet", False]
    runs.parent = by_workflow["family", False]
    runs.child = by_workflow["greet", True]
    runs.all = [run["run_id"] for run in listed]
    runs.status = {run["run_id"]: run["status"] for run in listed}
    runs.parent_of = {run["run_id"]: run["parent_id"] for run in listed if run.get("parent_id")}
    return runs


class Process:
    """A background ``surestep`` process, stopped with SIGTERM (then SIGKILL) on close."""

    def __init__(self, store: str | Path, *args: str) -> None:
        self.args = args
        self.proc = subprocess.Popen(
            [*surestep_command(), "--store", str(store), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def read_line(self, timeout: float = 30.0) -> str:
        """The next line of its stdout, waiting at most ``timeout`` seconds."""
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self.proc.stdout, selectors.EVENT_READ)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if selector.select(timeout=max(deadline - time.monotonic(), 0)):
                    line = self.proc.stdout.readline()
                    if line:
                        return line
                    break  # end of file: the process exited
        self.close()
        raise AssertionError(
            f"surestep {' '.join(self.args)} printed no line within {timeout}s "
            f"(exit {self.proc.returncode}): {self.stderr()}"
        )

    def stderr(self) -> str:
        if self.proc.poll() is None or self.proc.stderr is None:
            return ""
        return self.proc.stderr.read()

    def wait(self, timeout: float = 60.0) -> int:
        return self.proc.wait(timeout=timeout)

    def close(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        return self.proc.returncode


class DashboardProcess(Process):
    """``surestep ui --port 0 ...``; ``url`` is where it listens (with ``?token=`` if any)."""

    def __init__(self, store: str | Path, *args: str) -> None:
        super().__init__(store, "ui", "--port", "0", *args)
        line = self.read_line()
        if "surestep dashboard: " not in line:
            self.close()
            raise AssertionError(f"unexpected first line from surestep ui: {line!r}")
        self.line = line
        self.url = line.split("surestep dashboard: ", 1)[1].split()[0]
        self.base = self.url.split("?", 1)[0]
