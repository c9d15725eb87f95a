"""The CLI of the AGNT5 primitives: ``surestep answer``, ``runs --waiting-for``, the
question and progress in ``show``, and progress while ``surestep run`` watches."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from rich.console import Console

from surestep import Engine, cli

sys.path.insert(0, str(Path(__file__).parent / "e2e"))

from harness import surestep_command

FLOWS = """
from surestep import WorkflowContext, workflow


@workflow
async def pick_size(ctx: WorkflowContext) -> dict:
    size = await ctx.wait_for_user(
        "Which size?", input_type="select", options=["s", "m"], skippable=True
    )
    return {"size": size}


@workflow
async def counted(ctx: WorkflowContext, n: int) -> int:
    for i in range(1, n + 1):
        ctx.progress(i, total=n, message=f"item {i}")
        await ctx.sleep(0.3)
    return n
"""


@pytest.fixture
def flows(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "flows_for_answers.py"
    path.write_text(FLOWS)
    saved = list(sys.path)
    yield path
    sys.path[:] = saved
    sys.modules.pop("flows_for_answers", None)


def call(store: Path, *args: str) -> Result:
    return CliRunner().invoke(cli.main, ["--store", str(store), *args], catch_exceptions=False)


def installed(store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The installed ``surestep`` command, as a person answers: a process that does not
    import the workflow, so that the run resumes where its workflow is served."""
    return subprocess.run(
        [*surestep_command(), "--store", str(store), *args],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def waiting_run(store: Path, flows: Path) -> str:
    """A run of pick_size that waits for its answer (nobody executes it meanwhile)."""
    module = cli.import_target(str(flows))

    async def start() -> str:
        async with Engine(str(store)) as engine:
            handle = await engine.start(module.pick_size)
            while (await engine.get_run(handle.run_id)).status != "waiting":
                await engine.store.wait_changed(0.2)
            return handle.run_id

    return asyncio.run(start())


def outcome(store: Path, run_id: str) -> object:
    async def result() -> object:
        async with Engine(str(store)) as engine:  # serves the workflow: resumes the run
            return await engine.handle(run_id).result()

    return asyncio.run(result())


def test_answer_from_the_command_line(tmp_path: Path, flows: Path) -> None:
    store = tmp_path / "store"
    run_id = waiting_run(store, flows)
    listed = call(store, "runs", "--waiting-for", "person", "--json")
    assert listed.exit_code == 0, listed.output
    [run] = json.loads(listed.stdout)
    assert run["run_id"] == run_id and run["waits_for"] == "person"
    assert run["question"]["question"] == "Which size?"
    assert json.loads(call(store, "runs", "--waiting-for", "event", "--json").stdout) == []
    table = call(store, "runs", "--waiting-for", "person")
    assert "a person" in table.stdout
    shown = call(store, "show", run_id)
    assert "a person: Which size?" in shown.stdout
    assert "select: s, m, (--skip)" in shown.stdout

    refused = call(store, "answer", run_id, "xl")
    assert refused.exit_code == 2
    assert "AnswerError" in refused.stderr and "'xl' is not an option" in refused.stderr
    usage = call(store, "answer", run_id, "m", "--skip")
    assert usage.exit_code == 2 and "not both" in usage.stderr

    answered = installed(store, "answer", run_id[:10], "m")  # a run id's prefix will do
    assert answered.returncode == 0, answered.stderr
    assert answered.stdout == f"answered run {run_id}\n"
    assert outcome(store, run_id) == {"size": "m"}


def test_skip_from_the_command_line(tmp_path: Path, flows: Path) -> None:
    store = tmp_path / "store"
    run_id = waiting_run(store, flows)
    skipped = installed(store, "answer", run_id, "--skip")
    assert skipped.returncode == 0, skipped.stderr
    assert outcome(store, run_id) == {"size": None}


def test_run_shows_the_progress_and_show_keeps_the_last_report(tmp_path: Path, flows: Path) -> None:
    store = tmp_path / "store"
    ran = call(store, "run", f"{flows}:counted", "3")
    assert ran.exit_code == 0, ran.output
    assert ran.stdout.strip() == "3"
    lines = [line for line in ran.stderr.splitlines() if "progress" in line]
    assert lines and lines[-1].split() == ["progress", "3", "/", "3", "item", "3"]
    run_id = json.loads(call(store, "runs", "--json").stdout)[0]["run_id"]
    shown = call(store, "show", run_id, "--json")
    assert json.loads(shown.stdout)["progress"]["message"] == "item 3"


def test_the_run_bar_draws_the_progress_in_a_terminal() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100, color_system=None)
    bar = cli._RunBar(console)
    bar.start()
    bar.update("run r: step 1 running…")  # no report yet: the spinner and what runs
    bar.update("run r: step 2 running…", {"n": 2, "total": 5, "message": "two pages"})
    bar.bar.refresh()
    bar.stop()
    drawn = out.getvalue()
    assert "run r: step 2 running…" in drawn
    assert "2/5" in drawn and "two pages" in drawn
