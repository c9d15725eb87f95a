"""Check today's code against recorded journals, without executing any step.

Before a deploy, replay the journals of in-flight runs (or golden journals
checked into your tests) against the new code: a run is *compatible* when
every recorded step is asked for again, in order, with the same name and
input; otherwise the report names the first divergence (step number, what was
recorded, what the code asked for, and the source line).

    from surestep import testing

    report = testing.replay(order_fulfillment, testing.load_journal("golden/o-1.json"))
    assert report.compatible, report.describe()
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from . import _core
from .context import WorkflowContext
from .decorators import find_workflow
from .engine import Engine, run_loop
from .errors import JournalCorruptError, NonDeterminismError, UnknownWorkflowError, describe
from .recorder import Recorder, ReplayComplete
from .store.base import FINISHED, RunInfo

GOLDEN_FORMAT = 1


@dataclass(frozen=True)
class RecordedRun:
    """What a replay needs: the run's workflow, input and journal records (each an
    encoded record; a buffer of several back to back is read as well)."""

    run_id: str
    workflow: str
    version: str
    args: list[Any]
    kwargs: dict[str, Any]
    records: list[bytes]
    session_id: str | None = None
    user_id: str | None = None


@dataclass(frozen=True)
class ReplayReport:
    """The outcome of replaying one run against today's code."""

    run_id: str
    workflow: str
    compatible: bool
    replayed: int
    divergence: NonDeterminismError | None = None
    error: str | None = None

    def describe(self) -> str:
        if self.compatible:
            return f"{self.run_id} {self.workflow}: compatible ({self.replayed} recorded step(s))"
        reason = str(self.divergence) if self.divergence is not None else self.error
        return f"{self.run_id} {self.workflow}: INCOMPATIBLE: {reason}"


def replay(workflow: Callable[..., Any] | str, run: RecordedRun) -> ReplayReport:
    """Replay ``run``'s journal against ``workflow`` as the code stands (synchronous)."""
    return run_loop(replay_async(workflow, run))


async def replay_async(workflow: Callable[..., Any] | str, run: RecordedRun) -> ReplayReport:
    spec = find_workflow(workflow)
    try:
        index = _core.ReplayIndex.from_records(run.records)
    except JournalCorruptError as exc:
        return ReplayReport(run.run_id, spec.name, False, 0, error=str(exc.for_run(run.run_id)))
    info = RunInfo(
        run_id=run.run_id,
        workflow=spec.name,
        version=run.version,
        args=run.args,
        kwargs=run.kwargs,
        session_id=run.session_id,
        user_id=run.user_id,
        attempt=1,
    )
    recorder = Recorder(info, None, index, replay_only=True)
    ctx = WorkflowContext(info, recorder)
    args, kwargs = tuple(run.args), run.kwargs
    if spec.conversion is not None:  # typed parameters, read from their JSON as a run does
        args, kwargs = spec.conversion.decode_arguments(args, kwargs, skip=1)
    try:
        await spec.fn(ctx, *args, **kwargs)
        recorder.check_all_replayed()
    except ReplayComplete as done:
        return ReplayReport(run.run_id, spec.name, True, done.seq)
    except NonDeterminismError as exc:
        return ReplayReport(run.run_id, spec.name, False, exc.seq, divergence=exc)
    except Exception as exc:
        if not ctx.is_replaying and not index.unconsumed():
            # Raised after the last recorded step, before asking for another: the
            # recorded run ended (or will end) the same way.
            return ReplayReport(run.run_id, spec.name, True, len(index))
        error = describe(exc)
        return ReplayReport(
            run.run_id,
            spec.name,
            False,
            ctx.step_count,
            error=f"{error['type']}: {error['message']}",
        )
    return ReplayReport(run.run_id, spec.name, True, len(index))


async def recorded_run(engine: Engine, run_id: str) -> RecordedRun:
    """A stored run, ready to replay or to save as a golden journal."""
    info = await engine.get_run(run_id)
    return RecordedRun(
        run_id=info.run_id,
        workflow=info.workflow,
        version=info.version,
        args=info.args,
        kwargs=info.kwargs,
        records=[record.raw for record in await engine.records(run_id)],
        session_id=info.session_id,
        user_id=info.user_id,
    )


async def check_store(engine: Engine, run_ids: Iterable[str] | None = None) -> list[ReplayReport]:
    """Replay stored runs (by default every unfinished run) against the code registered here."""
    if run_ids is None:
        run_ids = [r.run_id for r in await engine.runs() if r.status not in FINISHED]
    reports = []
    for run_id in run_ids:
        run = await recorded_run(engine, run_id)
        try:
            reports.append(await replay_async(run.workflow, run))
        except UnknownWorkflowError as exc:
            reports.append(ReplayReport(run_id, run.workflow, False, 0, error=str(exc)))
    return reports


def save_journal(run: RecordedRun, path: str | os.PathLike[str]) -> None:
    """Write a golden journal: JSON, with the records in hex."""
    data = {
        "format": GOLDEN_FORMAT,
        "journal_format": max(  # the newest format among the records (informative)
            (r.version for raw in run.records for r in _core.decode_records(raw)),
            default=_core.FORMAT_VERSION,
        ),
        "run_id": run.run_id,
        "workflow": run.workflow,
        "version": run.version,
        "args": run.args,
        "kwargs": run.kwargs,
        "session_id": run.session_id,
        "user_id": run.user_id,
        "records": [record.hex() for record in run.records],
    }
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
        f.write("\n")


def load_journal(path: str | os.PathLike[str]) -> RecordedRun:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if data.get("format") != GOLDEN_FORMAT:
        raise ValueError(f"{path}: not a surestep golden journal (format {data.get('format')!r})")
    return RecordedRun(
        run_id=data["run_id"],
        workflow=data["workflow"],
        version=data["version"],
        args=data["args"],
        kwargs=data["kwargs"],
        records=[bytes.fromhex(record) for record in data["records"]],
        session_id=data.get("session_id"),
        user_id=data.get("user_id"),
    )


__all__ = [
    "RecordedRun",
    "ReplayReport",
    "check_store",
    "load_journal",
    "recorded_run",
    "replay",
    "replay_async",
    "save_journal",
]
