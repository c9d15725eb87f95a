"""The JSON shapes of runs, steps, log lines and retention, shared by the CLI's ``--json``
and the dashboard.

One place decides what a run looks like to a script or a browser, so
``surestep show RUN --json`` and ``GET /api/runs/RUN`` agree field for field.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:  # not at run time: the CLI imports this module and starts without asyncio
    from ..engine import Engine, JournalEntry
from ..decorators import find_workflow, served_versions
from ..errors import RunNotFoundError
from ..hitl import waits_for
from ..retention import describe_retention
from ..store.base import (
    CANCELLED,
    COMPLETED,
    FAILED,
    WAITING,
    LiveEngine,
    RunInfo,
    child_run_id,
    served_now,
)

#: Records the runtime writes for its own bookkeeping (a wait's deadline, a patch
#: marker), and every journaled value (``ctx.now()``, ``random()``, ``uuid4()``: kind
#: ``value``): hidden unless asked for.
INTERNAL_PREFIXES = ("@deadline", "@patch:")
INTERNAL_KINDS = frozenset({"value"})
#: A step between attempts (its next attempt is due at ``retry.next_at``).
RETRYING = "retrying"


def status_text(run: RunInfo, live: Sequence[LiveEngine] | None = None) -> str:
    """``run.status_text``; for a run waiting for a worker, and given the live engines,
    with the versions of its workflow they serve."""
    text = run.status_text
    if live is not None and text.startswith("waiting: a worker serving"):
        text += f" ({served_now(live, run.workflow)})"
    return text


def is_internal(name: str, kind: str) -> bool:
    return kind in INTERNAL_KINDS or name.startswith(INTERNAL_PREFIXES)


def run_json(run: RunInfo, live: Sequence[LiveEngine] | None = None) -> dict[str, Any]:
    """A run as JSON: its row, ``finished``, ``status_text`` (what an unfinished run
    waits for: with ``live``, the engines live now, which versions they serve),
    ``waits_for`` (``person``, ``event``, ``timer``, or ``None``) and ``duration``
    (seconds; ``None`` while running)."""
    data = run.to_dict()
    data["waits_for"] = waits_for(run)
    data.pop("fence", None)  # a lease detail, meaningless outside the store
    data["finished"] = run.finished
    data["status_text"] = status_text(run, live)
    data["duration"] = max(run.updated_at - run.created_at, 0.0) if run.finished else None
    return data


def entry_times(entry: JournalEntry) -> tuple[float, float]:
    """When a journal entry started and ended, by its kind: a step from its start to
    its end, a sleep until its wake-up time, an event at its arrival; ``(0, 0)``
    for entries that take no time (recorded values, state)."""
    start, end = entry.started_at or 0.0, entry.finished_at or 0.0
    if entry.kind == "sleep" and not end and isinstance(entry.output, (int, float)):
        end = float(entry.output)
    return (start or end, end or start)


def step_json(entry: JournalEntry, run: RunInfo | None = None) -> dict[str, Any]:
    """A journal entry as JSON, with a ``status``, times by :func:`entry_times` and a
    ``duration`` in seconds.

    A sleep is ``waiting`` until its wake-up time (``wake_at``) while its run is
    unfinished, and then ``completed``; its output is that time, so it is shown as
    ``wake_at`` instead of a raw number. Given the run, a sleep its run's end cut
    short takes the run's status (cancelled, failed)."""
    started, finished = entry_times(entry)
    status = FAILED if entry.kind == "step_error" or entry.error else COMPLETED
    output, wake_at = entry.output, None
    if entry.kind == "sleep" and isinstance(entry.output, (int, float)):
        output, wake_at = None, float(entry.output)
        ended = run.updated_at if run is not None and run.finished else time.time()
        if wake_at > ended:
            status = run.status if run is not None and run.finished else WAITING
            finished = ended if run is not None and run.finished else finished
    return {
        "seq": entry.seq,
        "name": entry.name,
        "kind": entry.kind,
        "status": status,
        "attempt": entry.attempt,
        "key": entry.key,
        "input": entry.input,
        "output": output,
        "error": entry.error,
        "started_at": started,
        "finished_at": finished,
        "duration": max(finished - started, 0.0),
        "wake_at": wake_at,
        "internal": is_internal(entry.name, entry.kind),
    }


#: How many of the newest runs are searched for a running parent's unfinished children.
CHILD_SCAN = 1000


def attempts_json(
    failed: Sequence[dict[str, Any]], last: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """A retried step's attempts as segments of its bar: each failed attempt (``attempt``,
    ``started_at``, ``finished_at``, ``error``, ``next_at``: when the next one was due,
    the end of the backoff gap), then ``last``: the attempt that ended the step, or the
    one still to come."""
    segments = [
        {
            "attempt": a["attempt"],
            "status": FAILED,
            "started_at": a["t0"],
            "finished_at": a["t1"],
            "next_at": a["next"],
            "error": f"{a['e'].get('type', '?')}: {a['e'].get('message', '')}",
        }
        for a in failed
    ]
    if last is not None:
        segments.append(last)
    return segments


def retrying_json(run: RunInfo, failed: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The step the run is retrying (no record yet): its failed attempts and the next."""
    retry = run.retry
    assert retry is not None
    now = time.time()
    next_at = float(retry["next_at"])
    upcoming = {
        "attempt": retry["attempt"],
        "status": RETRYING if next_at > now else run.status,
        "started_at": next_at,
        "finished_at": max(now, next_at),
        "next_at": None,
        "error": None,
    }
    started = failed[0]["t0"] if failed else next_at
    error_type, _, message = str(retry["error"]).partition(": ")
    return {
        "seq": retry["seq"],
        "name": retry["name"],
        "kind": "step",
        "status": RETRYING,
        "attempt": retry["attempt"],
        "of": retry["of"],
        "key": None,
        "input": None,
        "output": None,
        "error": {"type": error_type, "message": message},
        "started_at": started,
        "finished_at": max(now, next_at),
        "duration": max(now - started, 0.0),
        "wake_at": next_at,
        "internal": False,
        "attempts": attempts_json(failed, upcoming),
    }


def awaited_event_json(run: RunInfo, seq: int, since: float) -> dict[str, Any]:
    """The event a waiting run waits for (no record yet): drawn as waiting until now,
    and its deadline as ``wake_at``."""
    now = time.time()
    return {
        "seq": seq,
        "name": f"@event:{run.waiting_for}",
        "kind": "event",
        "status": WAITING,
        "attempt": 0,
        "key": None,
        "input": None,
        "output": None,
        "error": None,
        "started_at": since,
        "finished_at": now,
        "duration": max(now - since, 0.0),
        "wake_at": run.wake_at,
        "internal": False,
        "attempts": [],
    }


async def steps_json(engine: Engine, run: RunInfo, internal: bool = False) -> list[dict[str, Any]]:
    """A run's journal as JSON, each entry placed in time for the timeline; the
    runtime's own records and journaled values (:func:`is_internal`) only with ``internal``.

    A child workflow's entry spans the child run (``child`` is its id); an
    event's spans the wait that ended with it (from the end of the entry before).
    A retried step lists its ``attempts`` (:func:`attempts_json`). While the run
    retries a step, or waits for an event, that step comes last, not recorded yet.
    """
    steps = []
    previous_end = run.created_at
    failed = await engine.attempts(run.run_id)
    recorded: set[int] = set()
    for entry in await engine.journal(run.run_id):
        recorded.add(entry.seq)
        if is_internal(entry.name, entry.kind) and not internal:
            continue
        data = step_json(entry, run)
        retried = failed.get(entry.seq)
        data["attempts"] = []
        if retried and entry.kind in ("step", "step_error"):
            final = {
                "attempt": entry.attempt,
                "status": data["status"],
                "started_at": min(max(retried[-1]["next"], retried[-1]["t1"]), entry.finished_at),
                "finished_at": entry.finished_at,
                "next_at": None,
                "error": None,
            }
            data["attempts"] = attempts_json(retried, final)
        if entry.kind == "child":
            data["child"] = child_id = child_run_id(run.run_id, entry.seq)
            try:
                child = await engine.get_run(child_id)
            except RunNotFoundError:
                pass
            else:
                data["started_at"], data["finished_at"] = child.created_at, child.updated_at
                data["duration"] = max(child.updated_at - child.created_at, 0.0)
        elif entry.kind == "event" and data["finished_at"] and data["duration"] == 0:
            data["started_at"] = min(previous_end, data["finished_at"])
            data["duration"] = data["finished_at"] - data["started_at"]
        previous_end = max(previous_end, data["finished_at"])
        steps.append(data)
    if not run.finished:
        if run.retry is not None and run.retry["seq"] not in recorded:
            steps.append(retrying_json(run, failed.get(run.retry["seq"], [])))
        elif run.status == WAITING and run.waiting_for is not None:
            steps.append(awaited_event_json(run, max(recorded, default=-1) + 1, run.updated_at))
    return steps


async def children_json(
    engine: Engine, run: RunInfo, steps: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The run's child runs: those its journal records, and (while it runs) the ones
    among the newest :data:`CHILD_SCAN` runs that name it as their parent."""
    found: dict[str, RunInfo] = {}
    for step in steps:
        if "child" in step:
            with contextlib.suppress(RunNotFoundError):
                found[step["child"]] = await engine.get_run(step["child"])
    if not run.finished:
        for other in await engine.runs(limit=CHILD_SCAN):
            if getattr(other, "parent_id", None) == run.run_id:
                found.setdefault(other.run_id, other)
    return [run_json(child) for child in sorted(found.values(), key=lambda r: r.created_at)]


def matches(run: RunInfo, query: str) -> bool:
    """Whether ``query`` (case-insensitive) is part of the run's id, session id or user id."""
    needle = query.strip().lower()
    if not needle:
        return True
    return any(
        needle in (value or "").lower() for value in (run.run_id, run.session_id, run.user_id)
    )


def journal_lines(run: RunInfo, steps: Iterable[JournalEntry]) -> list[dict[str, Any]]:
    """A run's history as log lines, derived from its row and its journal.

    The run's start, each recorded step (completed or failed, with its attempts
    and duration) and the run's outcome. Every line has a stable ``id``, so a
    follower prints each once.
    """
    lines = [_line("run-start", run.created_at, "INFO", f"run started: workflow {run.workflow}")]
    now = time.time()
    for entry in steps:
        started, finished = entry_times(entry)
        if not finished or is_internal(entry.name, entry.kind):
            continue  # a recorded value or state, or the runtime's own: no moment to show
        if entry.kind == "sleep":
            # Said when it starts; "slept" only once its time has come.
            until = format_time(finished)
            text = f"step {entry.seq} sleeps until {until}"
            lines.append(_line(f"step-{entry.seq}", started, "INFO", text, seq=entry.seq))
            if finished <= now and not (run.finished and finished > run.updated_at):
                text = f"step {entry.seq} slept {format_duration(finished - started)}"
                lines.append(_line(f"step-{entry.seq}-end", finished, "INFO", text, seq=entry.seq))
            continue
        duration = format_duration(finished - started)
        tries = f"{entry.attempt} attempt{'s' if entry.attempt != 1 else ''}"
        if entry.kind == "step_error":
            error = entry.error or {}
            text = f"step {entry.seq} {entry.name} failed after {tries} in {duration}: " + (
                f"{error.get('type', '?')}: {error.get('message', '')}"
            )
            level = "ERROR"
        elif entry.kind == "step":
            text = f"step {entry.seq} {entry.name} completed after {tries} in {duration}"
            level = "INFO"
        elif entry.kind == "event":
            text = f"step {entry.seq} received event {entry.name.removeprefix('@event:')}"
            level = "INFO"
        else:
            text = f"step {entry.seq} {entry.kind} {entry.name} after {duration}"
            level = "INFO"
        lines.append(_line(f"step-{entry.seq}", finished, level, text, seq=entry.seq))
    if run.finished:
        if run.status == COMPLETED:
            lines.append(_line("run-end", run.updated_at, "INFO", "run completed"))
        elif run.status == FAILED:
            error = run.error or {}
            text = f"run failed: {error.get('type', '?')}: {error.get('message', '')}"
            lines.append(_line("run-end", run.updated_at, "ERROR", text))
        elif run.status == CANCELLED:
            lines.append(_line("run-end", run.updated_at, "WARNING", "run cancelled"))
    return lines


def _line(
    ident: str, at: float, level: str, message: str, seq: int | None = None
) -> dict[str, Any]:
    return {
        "id": ident,
        "time": at,
        "level": level,
        "message": message,
        "seq": seq,
        "source": "journal",
    }


def stored_lines(records: Iterable[Any]) -> list[dict[str, Any]]:
    """The lines the run's ``ctx.logger`` stored (``engine.logs``), as log lines.

    Each has a stable ``id`` (its step position and its index there), so a
    follower prints each once.
    """
    lines = []
    counts: dict[Any, int] = {}
    for record in records:
        data = record if isinstance(record, dict) else {"message": str(record)}
        seq = data.get("seq")
        index = counts[seq] = counts.get(seq, -1) + 1
        lines.append(
            {
                "id": f"log-{seq}-{index}",
                "time": float(_first(data, ("t", "time", "ts"), 0.0) or 0.0),
                "level": str(_first(data, ("level", "levelname"), "INFO")),
                "message": str(_first(data, ("message", "msg"), "")),
                "seq": seq,
                "source": "log",
            }
        )
    return lines


def _first(data: dict[str, Any], names: tuple[str, ...], default: Any) -> Any:
    for name in names:
        if data.get(name) is not None:
            return data[name]
    return default


async def log_lines(engine: Engine, run_id: str) -> list[dict[str, Any]]:
    """The run's log lines in time order: its history from its journal (start, each
    step's outcome, end) merged with the lines its ``ctx.logger`` stored."""
    run = await engine.get_run(run_id)
    lines = journal_lines(run, await engine.journal(run_id))
    lines += stored_lines(await engine.logs(run_id))
    lines.sort(key=lambda line: line["time"])
    return lines


def call_text(args: Any, kwargs: Any = None) -> str:
    """Arguments the way the call was written: ``("o-1", ["book"], n=2)``.

    Given one value, it is a step's recorded input (``[args, kwargs]``, or
    ``None`` for a step that took none).
    """
    if kwargs is None:
        if args is None:
            return "()"
        if not (
            isinstance(args, list)
            and len(args) == 2
            and isinstance(args[0], list)
            and isinstance(args[1], dict)
        ):
            return orjson.dumps(args).decode()
        args, kwargs = args
    parts = [orjson.dumps(a).decode() for a in args]
    parts += [f"{k}={orjson.dumps(v).decode()}" for k, v in kwargs.items()]
    return "(" + ", ".join(parts) + ")"


def format_duration(seconds: float | None) -> str:
    """``12 ms``, ``1.24 s``, ``3m 05s``, ``2h 01m``: rounded to what is shown, so
    3,599.9996 s is ``1h 00m``, not ``59m 59s``."""
    if seconds is None:
        return ""
    if round(seconds * 1000) < 1000:
        return f"{seconds * 1000:.0f} ms"
    if round(seconds, 2) < 60:
        return f"{seconds:.2f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes + (secs >= 30), 60)
    return f"{hours}h {minutes:02d}m"


def format_time(at: float) -> str:
    """A timestamp in local time, to the millisecond."""
    if not at:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at)) + f".{int(at * 1000) % 1000:03d}"


def retention_text(keep: int | None, default: str) -> str:
    """The retention a declared policy gives (``keep``: milliseconds, KEEP_FOREVER or
    ``None`` for none declared), as people read it: ``"30d"``, ``"7d (default)"``."""
    text = describe_retention(keep)
    return f"{default} (default)" if text == "default" else text


def retention_json(default: str, deployments: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Which retention applies to what: ``default`` (the policy of runs finished under
    none of their own), each workflow registered in this process and each recorded
    deployment, with ``retention`` as declared (milliseconds, -1 for forever, ``None``
    for none) and ``retention_text`` as it applies."""
    workflows = []
    for name, versions in sorted(served_versions().items()):
        keep = find_workflow(name).retention
        workflows.append(
            {
                "workflow": name,
                "versions": list(versions),
                "retention": keep,
                "retention_text": retention_text(keep, default),
            }
        )
    return {
        "default": default,
        "workflows": workflows,
        "deployments": [
            {**row, "retention_text": retention_text(row["retention"], default)}
            for row in deployments
        ],
    }
