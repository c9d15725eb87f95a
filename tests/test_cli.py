"""The ``surestep`` command: every command, its JSON, and every kind of bad input.

Most tests call the command in-process with click's ``CliRunner``; the ones
marked "installed" run the real ``surestep`` entry point in a subprocess. The
workflows are a module each test writes (``flows_for_cli.py``), loaded by path
or by name as a user's would be.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import surestep
from surestep import Engine, _core, cli
from surestep.store.base import CANCELLED, COMPLETED, FAILED

sys.path.insert(0, str(Path(__file__).parent / "e2e"))

from harness import Process, surestep_command

FLOWS = '''
"""Workflows for the CLI's tests."""
import asyncio
from surestep import FunctionContext, WorkflowContext, function, workflow


@function
async def cli_double(x: int) -> int:
    return 2 * x


@function(retries={"max_attempts": 2, "initial_interval_ms": 1}, backoff="constant")
async def cli_explode(reason: str) -> None:
    raise ValueError(f"exploded: {reason}")


@workflow
async def cli_add(ctx: WorkflowContext, a: int, b: int) -> int:
    return await ctx.step("cli_add", lambda: a + b)


@workflow
async def cli_pipeline(ctx: WorkflowContext, name: str, n: int = 2) -> dict:
    ctx.logger.info("cli_pipeline for %s", name)
    total = 0
    for i in range(n):
        total += await ctx.step(cli_double, i + 1)
    return {"name": name, "total": total}


@workflow
async def cli_failing(ctx: WorkflowContext, reason: str) -> None:
    await ctx.step(cli_double, 1)
    await ctx.step(cli_explode, reason)


@workflow
async def cli_echo(ctx: WorkflowContext, *args, **kwargs) -> dict:
    return {"args": list(args), "kwargs": kwargs}


@workflow(name="cli-custom-name")
async def cli_named(ctx: WorkflowContext) -> str:
    return "by name"


@function
async def cli_wait_for_file(path: str) -> str:
    from pathlib import Path

    for _ in range(6000):  # at most a minute
        if Path(path).exists():
            return "released"
        await asyncio.sleep(0.01)
    raise TimeoutError(path)


@workflow
async def cli_approval(ctx: WorkflowContext) -> dict:
    return await ctx.wait_for_event("approved", timeout=120)


@workflow
async def cli_held(ctx: WorkflowContext, path: str) -> str:
    return await ctx.step(cli_wait_for_file, path)


@function
async def waits_logging_step(ctx: FunctionContext) -> int:
    ctx.logger.info("inside the step")
    return 1


@workflow
async def waits_long_sleep(ctx: WorkflowContext) -> str:
    await ctx.step(waits_logging_step)
    await ctx.sleep(3600)
    return "awake"


@workflow
async def waits_short_sleep(ctx: WorkflowContext) -> str:
    await ctx.sleep(1.5)
    return "awake"


@workflow
async def waits_for_approval(ctx: WorkflowContext) -> dict:
    return await ctx.wait_for_event("approved", timeout=3600)


@workflow
async def waits_child(ctx: WorkflowContext) -> int:
    return 7


@workflow
async def waits_parent(ctx: WorkflowContext) -> int:
    return await ctx.step(waits_child)


@workflow
async def waits_says_a_lot(ctx: WorkflowContext, words: str) -> None:
    raise ValueError(words)
'''


@pytest.fixture
def flows(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "flows_for_cli.py"
    path.write_text(FLOWS)
    saved = list(sys.path)
    yield path
    sys.path[:] = saved  # the command puts a module's directory on the path
    for name in ("flows_for_cli", "broken_module"):
        sys.modules.pop(name, None)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store"


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    """``surestep ARGS...`` in this process."""
    return CliRunner().invoke(cli.main, list(args), env=env, catch_exceptions=False)


def call(store: Path, *args: str) -> Result:
    return invoke("--store", str(store), *args)


def one_error_line(result: Result, code: int, *fragments: str) -> str:
    """The run ended with ``code`` and one line on stderr that holds ``fragments``."""
    lines = result.stderr.splitlines()
    assert result.exit_code == code, (result.exit_code, result.output)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("surestep: error: "), lines
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def run_ids(store: Path, *args: str) -> list[str]:
    result = call(store, "runs", "--json", *args)
    assert result.exit_code == 0, result.output
    return [run["run_id"] for run in json.loads(result.stdout)]


def installed(
    store: Path | None, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """The installed ``surestep`` command in a subprocess."""
    prefix = ["--store", str(store)] if store is not None else []
    return subprocess.run(
        [*surestep_command(), *prefix, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def wait_for_status(store: Path, run_id: str, status: str, timeout: float = 60.0) -> None:
    """Wait (woken by the store's change notices, bounded) until the run has ``status``."""

    async def wait() -> None:
        async with Engine(str(store), execute=False) as engine:
            deadline = time.monotonic() + timeout
            while (await engine.get_run(run_id)).status != status:
                if time.monotonic() > deadline:
                    raise AssertionError(f"run {run_id} did not become {status} in {timeout}s")
                await engine.store.wait_changed(0.2)

    asyncio.run(wait())


def pending_run(store: Path, flows: Path, workflow: str, *args: Any) -> str:
    """A run recorded by a client engine (nobody executes it)."""
    cli.import_target(str(flows))

    async def start() -> str:
        async with Engine(str(store), execute=False) as client:
            handle = await client.start(workflow, *args)
            return handle.run_id

    return asyncio.run(start())


# ---------------------------------------------------------------- --version, --help


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert (
        result.stdout
        == f"surestep {surestep.__version__} (journal format {_core.FORMAT_VERSION})\n"
    )


def test_help_documents_the_exit_codes() -> None:
    for args in ([], ["--help"], ["run", "--help"], ["runs", "--help"]):
        result = invoke(*args)
        assert result.exit_code == 0
        assert "Exit codes:" in result.stdout
        for line in (
            "0    success",
            "1    the workflow failed",
            "2    bad input",
            "3    not found",
            "4    the store failed",
        ):
            assert line in result.stdout
    assert cli.__doc__ is not None and "130" in cli.__doc__ and "not found" in cli.__doc__


def test_the_installed_command_reports_its_version() -> None:
    done = installed(None, "--version")
    assert done.returncode == 0, done.stderr
    assert (
        done.stdout == f"surestep {surestep.__version__} (journal format {_core.FORMAT_VERSION})\n"
    )


# ---------------------------------------------------------------- run


def test_run_shows_each_step_and_prints_the_result(store: Path, flows: Path) -> None:
    result = call(store, "run", f"{flows}:cli_pipeline", "ada", "--input", '{"n": 3}')
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"name": "ada", "total": 12}
    progress = result.stderr
    assert progress.count("✓") == 4  # three steps, then the run
    assert "cli_double" in progress and "completed in" in progress
    assert "run " in progress  # the run id, before the steps


def test_run_json_prints_the_run(store: Path, flows: Path) -> None:
    result = call(store, "run", f"{flows}:cli_add", "2", "3", "--json", "-q")
    assert result.exit_code == 0, result.output
    run = json.loads(result.stdout)
    assert run["status"] == COMPLETED and run["result"] == 5 and run["workflow"] == "cli_add"
    assert result.stderr == ""
    assert run_ids(store) == [run["run_id"]]


def test_run_arguments_are_json_when_they_parse_else_strings(store: Path, flows: Path) -> None:
    result = call(
        store, "run", f"{flows}:cli_echo", "-q", "--", "42", "true", '"42"', "hello", "[1, 2]", "-1"
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "args": [42, True, "42", "hello", [1, 2], -1],
        "kwargs": {},
    }
    result = call(store, "run", f"{flows}:cli_echo", "-q", "--input", '["a", {"b": null}]')
    assert json.loads(result.stdout) == {"args": ["a", {"b": None}], "kwargs": {}}
    result = call(store, "run", f"{flows}:cli_echo", "-q", "x", "--input", '{"k": [1]}')
    assert json.loads(result.stdout) == {"args": ["x"], "kwargs": {"k": [1]}}


def test_run_arguments_follow_the_workflows_annotations(store: Path, flows: Path) -> None:
    result = call(store, "run", f"{flows}:cli_pipeline", "-q", "1001", "1")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"name": "1001", "total": 2}  # str stays a str
    result = call(store, "run", f"{flows}:cli_pipeline", "-q", "o-7", "two")
    assert result.exit_code == 2
    assert "cli_pipeline" in result.stderr and "'n'" in result.stderr
    assert "Traceback" not in result.output


def test_run_by_module_name_and_by_registered_name(
    store: Path, flows: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(flows.parent)  # a module in the current directory, as `python -m` finds it
    result = call(store, "run", "flows_for_cli:cli_add", "1", "1", "-q")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "2"
    result = call(store, "run", "flows_for_cli:cli-custom-name", "-q")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == "by name"


def test_a_failed_workflow_exits_1(store: Path, flows: Path) -> None:
    result = call(store, "run", f"{flows}:cli_failing", "no fuel")
    assert result.exit_code == cli.EXIT_FAILED
    assert "✗ failed" in result.stderr and "exploded: no fuel" in result.stderr
    assert "surestep show" in result.stderr
    assert "Traceback" not in result.output
    result = call(store, "run", f"{flows}:cli_failing", "again", "--json", "-q")
    assert result.exit_code == cli.EXIT_FAILED
    run = json.loads(result.stdout)
    assert run["status"] == FAILED and "exploded: again" in run["error"]["message"]


# ---------------------------------------------------------------- runs, show, logs


@pytest.fixture
def two_runs(store: Path, flows: Path) -> dict[str, str]:
    """One completed pipeline run (with a session and a user), one failed run."""
    assert (
        call(
            store, "run", f"{flows}:cli_pipeline", "ada", "--session", "s-1", "--user", "u-1", "-q"
        ).exit_code
        == 0
    )
    assert call(store, "run", f"{flows}:cli_failing", "boom", "-q").exit_code == 1
    failed, done = run_ids(store)
    return {"done": done, "failed": failed}


def test_runs_lists_newest_first_and_filters(store: Path, two_runs: dict[str, str]) -> None:
    assert run_ids(store) == [two_runs["failed"], two_runs["done"]]
    assert run_ids(store, "--status", "failed") == [two_runs["failed"]]
    assert run_ids(store, "--workflow", "cli_pipeline") == [two_runs["done"]]
    assert run_ids(store, "--limit", "1") == [two_runs["failed"]]
    assert run_ids(store, "--status", "cancelled") == []
    table = call(store, "runs")
    assert table.exit_code == 0
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["RUN", "WORKFLOW", "STATUS"]
    assert two_runs["failed"] in lines[1] and "cli_failing" in lines[1] and "failed" in lines[1]
    assert two_runs["done"] in lines[2] and "s-1 / u-1" in lines[2]
    assert all(line == line.rstrip() for line in lines)
    assert call(store, "runs", "--status", "cancelled").stdout == "no runs matching\n"


def test_show_gives_steps_inputs_outputs_and_the_traceback(
    store: Path, two_runs: dict[str, str]
) -> None:
    done = call(store, "show", two_runs["done"])
    assert done.exit_code == 0
    assert 'cli_pipeline("ada")' in done.stdout and "completed" in done.stdout
    assert '{"name":"ada","total":6}' in done.stdout
    steps = [line for line in done.stdout.splitlines() if " cli_double " in f" {line} "]
    assert (
        len(steps) == 2
        and "(1)" in steps[0]
        and "(2)" in steps[1]
        and steps[1].rstrip().endswith("4")
    )
    failed = call(store, "show", two_runs["failed"][:12])  # a unique prefix is enough
    assert failed.exit_code == 0
    assert two_runs["failed"] in failed.stdout
    assert "step 1 (cli_explode) failed: ValueError: exploded: boom" in failed.stdout
    assert "Traceback (most recent call last)" in failed.stdout  # the step's own
    data = json.loads(call(store, "show", two_runs["failed"], "--json").stdout)
    assert data["status"] == FAILED
    assert [(s["seq"], s["name"], s["status"], s["attempt"]) for s in data["steps"]] == [
        (0, "cli_double", "completed", 1),
        (1, "cli_explode", "failed", 2),
    ]
    first = data["steps"][0]
    assert first["input"] == [[1], {}] and first["output"] == 2
    assert first["finished_at"] >= first["started_at"] > 0
    assert "ValueError" in data["steps"][1]["error"]["traceback"]


def test_logs_merge_the_runs_logger_and_its_journal(store: Path, two_runs: dict[str, str]) -> None:
    result = call(store, "logs", two_runs["done"])
    assert result.exit_code == 0
    text = result.stdout
    assert "run started: workflow cli_pipeline" in text
    assert "step 0 cli_double completed after 1 attempt" in text
    assert "run completed" in text.splitlines()[-1]
    assert "cli_pipeline for ada" in text  # ctx.logger.info(...)
    lines = [
        json.loads(line)
        for line in call(store, "logs", two_runs["failed"], "--json").stdout.splitlines()
    ]
    assert [line["time"] for line in lines] == sorted(line["time"] for line in lines)
    assert any(line["level"] == "ERROR" and "exploded: boom" in line["message"] for line in lines)
    assert len({line["id"] for line in lines}) == len(lines)


def test_logs_follow_prints_lines_until_the_run_finishes(
    store: Path, flows: Path, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    run = Process(store, "run", f"{flows}:cli_held", str(gate), "-q")
    follow = None
    try:
        run_id = pending_or_running(store)
        follow = Process(store, "logs", run_id, "--follow")
        assert "run started" in follow.read_line()  # printed while the run still runs
        gate.touch()
        assert follow.wait() == 0
        assert follow.proc.stdout is not None
        rest = follow.proc.stdout.read()
        assert "step 0 cli_wait_for_file completed" in rest and "run completed" in rest
        assert run.wait() == 0
    finally:
        gate.touch()
        run.close()
        if follow is not None:
            follow.close()


def pending_or_running(store: Path, timeout: float = 60.0) -> str:
    """The id of the store's one run, once it is recorded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if store.exists():
            ids = run_ids(store)
            if ids:
                return ids[0]
        time.sleep(0.02)  # the run's process has not recorded it yet
    raise AssertionError("no run was recorded")


# ---------------------------------------------------------------- cancel, send, worker, ui


def test_cancel_an_unfinished_run(store: Path, flows: Path) -> None:
    run_id = pending_run(store, flows, "cli_add", 1, 2)
    result = call(store, "cancel", run_id)
    assert result.exit_code == 0 and result.stdout == f"cancelled run {run_id}\n"
    assert json.loads(call(store, "show", run_id, "--json").stdout)["status"] == CANCELLED
    again = call(store, "cancel", run_id)
    assert again.exit_code == 0
    assert "had already finished (cancelled)" in again.stdout


def test_send_an_event_to_a_waiting_run(store: Path, flows: Path) -> None:
    run = Process(store, "run", f"{flows}:cli_approval", "-q")
    try:
        run_id = pending_or_running(store)
        wait_for_status(store, run_id, "waiting")
        result = call(store, "send", run_id[:10], "approved", '{"by": "carol"}')
        assert result.exit_code == 0, result.output
        assert result.stdout == f"sent approved to run {run_id}\n"
        first = run.read_line()  # the result, once the event resumed the run
        assert run.wait() == 0
        assert run.proc.stdout is not None
        assert json.loads(first + run.proc.stdout.read()) == {"by": "carol"}
    finally:
        run.close()


def test_a_worker_executes_runs_started_elsewhere(store: Path, flows: Path) -> None:
    run_id = pending_run(store, flows, "cli_pipeline", "from a client")
    worker = Process(store, "worker", str(flows), "--concurrency", "2")
    try:
        wait_for_status(store, run_id, COMPLETED)
    finally:
        worker.proc.send_signal(signal.SIGTERM)  # drains, then exits
        code = worker.wait()
        errors = worker.stderr()
        worker.close()
    assert code == 0, errors
    shown = json.loads(call(store, "show", run_id, "--json").stdout)
    assert shown["result"] == {"name": "from a client", "total": 6}


def test_ui_serves_the_store_until_sigterm(store: Path, flows: Path) -> None:
    assert call(store, "run", f"{flows}:cli_add", "1", "2", "-q").exit_code == 0
    server = Process(store, "ui", "--port", "0")
    try:
        line = server.read_line()
        assert "surestep dashboard: http://127.0.0.1:" in line and "actions allowed" in line
        url = line.split()[2]
        with urllib.request.urlopen(url + "api/runs", timeout=30) as answer:
            assert [run["workflow"] for run in json.load(answer)["runs"]] == ["cli_add"]
        server.proc.send_signal(signal.SIGTERM)
        assert server.wait() == 0
    finally:
        server.close()


def test_ui_refuses_to_serve_beyond_loopback_without_a_token(store: Path, flows: Path) -> None:
    assert call(store, "run", f"{flows}:cli_add", "1", "2", "-q").exit_code == 0
    one_error_line(call(store, "ui", "--host", "0.0.0.0"), cli.EXIT_USAGE, "--token")
    # 192.0.2.0/24 is for documentation: no interface here has it, so binding fails at once.
    one_error_line(
        call(store, "ui", "--host", "192.0.2.1", "--token", "t"),
        cli.EXIT_USAGE,
        "cannot listen on 192.0.2.1",
    )


# ---------------------------------------------------------------- the store


def test_the_store_comes_from_the_option_else_the_environment(tmp_path: Path, flows: Path) -> None:
    env_store, option_store = tmp_path / "env-store", tmp_path / "option-store"
    env = {"SURESTEP_STORE": str(env_store)}
    assert invoke("run", f"{flows}:cli_add", "1", "2", "-q", env=env).exit_code == 0
    assert (
        invoke(
            "run", f"{flows}:cli_add", "3", "4", "-q", "--store", str(option_store), env=env
        ).exit_code
        == 0
    )
    assert (
        invoke(
            "--store", str(option_store), "run", f"{flows}:cli_add", "5", "6", "-q", env=env
        ).exit_code
        == 0
    )

    def results(*args: str) -> list[Any]:
        result = invoke(*args, "--json", env=env)
        assert result.exit_code == 0, result.output
        return [run["result"] for run in json.loads(result.stdout)]

    assert results("runs") == [3]
    assert results("runs", "--store", str(option_store)) == [11, 7]
    assert results("--store", str(option_store), "runs") == [11, 7]
    assert results("--store", str(env_store), "runs", "--store", str(option_store)) == [11, 7]


def test_the_installed_command_lists_real_runs_as_json(store: Path, flows: Path) -> None:
    ok = installed(store, "run", str(flows) + ":cli_pipeline", "ada", "-q")
    assert ok.returncode == 0, ok.stderr
    bad = installed(store, "run", str(flows) + ":cli_failing", "why", "-q")
    assert bad.returncode == 1
    listed = installed(store, "runs", "--json")
    assert listed.returncode == 0, listed.stderr
    runs = json.loads(listed.stdout)
    assert [(r["workflow"], r["status"]) for r in runs] == [
        ("cli_failing", FAILED),
        ("cli_pipeline", COMPLETED),
    ]
    assert runs[1]["result"] == {"name": "ada", "total": 6}
    missing = installed(store, "show", "f" * 32)
    assert missing.returncode == cli.EXIT_NOT_FOUND
    assert missing.stderr.count("\n") == 1 and missing.stderr.startswith("surestep: error: no run")


# ---------------------------------------------------------------- bad input: one line, an exit code


BROKEN_MODULE = "raise RuntimeError('this module is broken')\n"


BAD_INPUT = [
    ("unknown run: show", ["show", "0" * 32], 3, "no run"),
    ("unknown run: logs", ["logs", "0" * 32], 3, "no run"),
    ("unknown run: cancel", ["cancel", "0" * 32], 3, "no run"),
    ("unknown run: not an id", ["show", "zz"], 3, "no run"),
    (
        "bad JSON: --input",
        ["run", "{flows}:cli_add", "--input", "{nope"],
        2,
        "--input is not valid JSON",
    ),
    ("bad JSON: --input scalar", ["run", "{flows}:cli_add", "--input", "3"], 2, "JSON array"),
    ("bad JSON: send", ["send", "{run}", "ev", "{nope"], 2, "payload is not valid JSON"),
    ("unknown workflow", ["run", "{flows}:nope"], 3, "no workflow 'nope'"),
    ("unknown module", ["run", "no_such_module_here:wf"], 3, "no module named"),
    ("unknown file", ["run", "no/such/file.py:wf"], 3, "no such file"),
    ("unknown worker module", ["worker", "no_such_module_here"], 3, "no module named"),
    ("module raises", ["run", "{broken}:wf"], 2, "this module is broken"),
    ("not MODULE:WORKFLOW", ["run", "{flows}"], 2, "MODULE:WORKFLOW"),
    (
        "wrong arguments",
        ["run", "{flows}:cli_add", "1", "2", "3"],
        2,
        "cannot take these arguments",
    ),
    ("arguments twice", ["run", "{flows}:cli_add", "1", "--input", "[1]"], 2, "not both"),
    ("unknown option", ["runs", "--colour"], 2, "No such option"),
    ("bad status", ["runs", "--status", "done"], 2, "--status"),
    ("unknown command", ["launch"], 2, "No such command"),
    ("missing store", ["runs", "--store", "{missing}"], 4, "no surestep store"),
    ("store is a file", ["run", "{flows}:cli_add", "1", "2", "--store", "{flows}"], 4, "store"),
]


@pytest.mark.parametrize(
    ("case", "args", "code", "fragment"), BAD_INPUT, ids=[case[0] for case in BAD_INPUT]
)
def test_bad_input_is_one_line_and_an_exit_code(
    store: Path,
    flows: Path,
    tmp_path: Path,
    case: str,
    args: list[str],
    code: int,
    fragment: str,
) -> None:
    assert call(store, "run", f"{flows}:cli_add", "1", "2", "-q").exit_code == 0
    broken = tmp_path / "broken_module.py"
    broken.write_text(BROKEN_MODULE)
    names = {
        "flows": str(flows),
        "broken": str(broken),
        "missing": str(tmp_path / "missing"),
        "run": run_ids(store)[0],
    }
    for name, value in names.items():
        args = [arg.replace("{" + name + "}", value) for arg in args]
    result = call(store, *args)
    one_error_line(result, code, fragment)


def test_bad_input_from_the_installed_command_is_one_line(store: Path, flows: Path) -> None:
    for args, code in (
        (["run", f"{flows}:cli_add", "--input", "[1,"], 2),
        (["run", f"{flows}:nope"], 3),
        (["run", "no_such_module_here:wf"], 3),
    ):
        done = installed(store, *args)
        assert done.returncode == code, done.stderr
        assert done.stderr.count("\n") == 1 and done.stderr.startswith("surestep: error: ")


def test_dashboard_and_cli_json_agree(store: Path, two_runs: dict[str, str]) -> None:
    shown = json.loads(call(store, "show", two_runs["done"], "--json").stdout)
    listed = json.loads(call(store, "runs", "--json").stdout)
    row = next(run for run in listed if run["run_id"] == two_runs["done"])
    assert shown["children"] == []
    assert {k: v for k, v in shown.items() if k not in ("steps", "children")} == row
    assert "fence" not in row and row["finished"] is True and row["duration"] >= 0


def test_the_module_docstring_is_the_help_of_record() -> None:
    text = textwrap.dedent(cli.__doc__ or "")
    for code in ("0 ", "1 ", "2 ", "3 ", "4 ", "70 ", "130 "):
        assert f"\n{code}" in text, code


# ---------------------------------------------------------------- versions and deploys

VERSIONED = """
from surestep import WorkflowContext, workflow


@workflow(name="cli_versioned", version="1")
async def cli_versioned(ctx: WorkflowContext) -> str:
    first = await ctx.step("{first}", lambda: "a")
    await ctx.wait_for_event("go")
    return first
"""


def _versioned(tmp_path: Path, name: str, first: str) -> Path:
    path = tmp_path / f"{name}.py"
    path.write_text(VERSIONED.replace("{first}", first))
    return path


def test_deploy_and_deployments(store: Path, tmp_path: Path) -> None:
    module = _versioned(tmp_path, "cli_versions_a", "a")
    deployed = call(store, "deploy", str(module), "--json")
    assert deployed.exit_code == 0, deployed.output
    assert [(d["workflow"], d["version"]) for d in json.loads(deployed.stdout)] == [
        ("cli_versioned", "1")
    ]
    assert call(store, "deploy", str(module), "--version", "2").exit_code == 0
    rows = json.loads(call(store, "deployments", "--json").stdout)
    assert [(d["version"], d["in_flight"]) for d in rows] == [("1", 0), ("2", 0)]
    one_error_line(call(store, "deploy", str(module), "-w", "nope"), 3, "no workflow 'nope'")


@pytest.mark.parametrize(
    ("command", "how"),
    [
        ("runs", "`surestep run MODULE:WORKFLOW` starts one"),
        ("schedules", "once a worker serving it starts (`surestep worker MODULE`"),
        ("deployments", "`surestep deploy MODULE` records one"),
    ],
)
def test_an_empty_list_says_so_and_how_its_entries_come_to_exist(
    store: Path, command: str, how: str
) -> None:
    async def make_store() -> None:
        async with Engine(store):
            pass

    asyncio.run(make_store())
    listed = call(store, command)
    assert listed.exit_code == 0, listed.output
    said = " ".join(listed.stdout.split())  # as the terminal's width wrapped it
    assert said.startswith(f"no {command} in this store: ") and how in said, said
    assert json.loads(call(store, command, "--json").stdout) == []


def test_replay_check_gates_an_incompatible_change(store: Path, tmp_path: Path) -> None:
    from surestep import decorators

    old = _versioned(tmp_path, "cli_versions_old", "a")
    cli.import_target(str(old))

    async def start_and_park() -> str:
        async with Engine(str(store)) as engine:
            handle = await engine.start("cli_versioned")
            while (await engine.get_run(handle.run_id)).status != "waiting":
                await engine.store.wait_changed(1.0)
            return handle.run_id

    run_id = asyncio.run(start_and_park())
    same = call(store, "replay", "--check", str(old))
    assert same.exit_code == 0 and "compatible" in same.stdout, same.output
    decorators._workflows.pop("cli_versioned")
    changed = _versioned(tmp_path, "cli_versions_new", "b")
    result = call(store, "replay", "--check", str(changed), "--run", run_id, "--json")
    assert result.exit_code == 1, result.output
    (report,) = json.loads(result.stdout)
    assert report["run_id"] == run_id and not report["compatible"]
    assert "'name': 'a'" in report["problem"] and "'name': 'b'" in report["problem"]
    assert "cli_versions_new.py:" in report["problem"]  # the line that asked


def test_fork_starts_a_new_run_from_a_step(store: Path, flows: Path) -> None:
    result = call(store, "run", f"{flows}:cli_pipeline", "x", "3", "-q")
    assert result.exit_code == 0, result.output
    (source,) = run_ids(store)
    forked = call(store, "fork", source, "--from-step", "2")
    assert forked.exit_code == 0, forked.output
    new_id = forked.stdout.split()[-1]
    assert set(run_ids(store)) == {source, new_id}
    shown = json.loads(call(store, "show", new_id, "--json").stdout)
    assert shown["status"] == "pending"  # for a worker serving the workflow
    assert [step["seq"] for step in shown["steps"]] == [0, 1]
    one_error_line(call(store, "fork", source), 2, "--from-step")


# ---------------------------------------------------------------- every surface tells the truth


def started_run(store: Path, flows: Path, workflow: str, status: str, *args: Any) -> str:
    """A run started and executed here until it has ``status`` (long sleeps give the run
    back at once), then left to its timer."""
    cli.import_target(str(flows))

    async def start() -> str:
        async with Engine(str(store), inline_sleep=0.05) as engine:
            handle = await engine.start(workflow, *args)
            while (await handle.info()).status != status:
                await engine.store.wait_changed(0.2)
            return handle.run_id

    return asyncio.run(start())


def stderr_until(proc: subprocess.Popen[str], fragment: str, timeout: float = 60.0) -> str:
    """What ``proc`` wrote on stderr up to the line holding ``fragment``."""
    assert proc.stderr is not None
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        if fragment in line:
            return "".join(seen)
    raise AssertionError(f"no {fragment!r} on stderr: {''.join(seen)}")


def test_a_durable_sleep_is_shown_as_waiting_until_its_time(store: Path, flows: Path) -> None:
    run_id = started_run(store, flows, "waits_long_sleep", "waiting")
    shown = installed(store, "show", run_id)
    assert shown.returncode == 0, shown.stderr
    with_json = json.loads(installed(store, "show", run_id, "--json").stdout)
    wake_at = with_json["wake_at"]
    until = cli.format_time(wake_at)
    assert f"waiting: sleep until {until[:19]}" in shown.stdout
    (sleep,) = [s for s in with_json["steps"] if s["kind"] == "sleep"]
    assert (sleep["status"], sleep["output"], sleep["wake_at"]) == ("waiting", None, wake_at)
    (row,) = [line for line in shown.stdout.splitlines() if "@sleep" in line]
    assert "waiting" in row and f"until {until}" in row and "completed" not in row
    assert str(int(wake_at)) not in shown.stdout  # no raw epoch
    runs = installed(store, "runs")
    assert f"waiting: sleep until {until[:19]}" in runs.stdout

    logs = installed(store, "logs", run_id, "--json")
    lines = [json.loads(line) for line in logs.stdout.splitlines()]
    assert all(line["time"] <= time.time() for line in lines), lines  # nothing "in the future"
    assert not [line for line in lines if "slept" in line["message"]]
    assert [line["message"] for line in lines if line["seq"] == 1] == [
        f"step 1 sleeps until {until}"
    ]
    # A line its step logged says that step's number, as the journal does.
    (inside,) = [line for line in lines if line["message"] == "inside the step"]
    assert inside["seq"] == 0 == with_json["steps"][0]["seq"]


def test_an_event_wait_says_its_event_and_hides_its_deadline(store: Path, flows: Path) -> None:
    run_id = started_run(store, flows, "waits_for_approval", "waiting")
    shown = installed(store, "show", run_id)
    assert "waiting: event approved (until " in shown.stdout
    assert "@deadline" not in shown.stdout
    assert "@deadline" not in installed(store, "logs", run_id).stdout
    everything = installed(store, "show", run_id, "--internal")
    assert "@deadline" in everything.stdout


def test_run_shows_a_sleep_as_waiting_not_done(store: Path, flows: Path) -> None:
    done = installed(store, "run", f"{flows}:waits_short_sleep")
    assert done.returncode == 0, done.stderr
    (sleep,) = [line for line in done.stderr.splitlines() if "@sleep" in line]
    assert "waiting until" in sleep and "✓" not in sleep
    assert json.loads(done.stdout) == "awake"


def test_run_warns_at_once_when_the_run_waits_for_another_version(store: Path, flows: Path) -> None:
    deployed = installed(store, "deploy", str(flows), "--version", "yesterday")
    assert deployed.returncode == 0, deployed.stderr
    proc = subprocess.Popen(
        [*surestep_command(), "--store", str(store), "run", f"{flows}:waits_child"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        said = stderr_until(proc, "surestep: warning:")
        assert "waits for a worker serving waits_child version yesterday" in said
        assert "deploy it to make it current" in said
        served = said.split("served now: ")[1].splitlines()[0]  # the edited code's versions
        (row,) = json.loads(installed(store, "runs", "--json").stdout)
        assert row["status_text"] == (
            f"waiting: a worker serving waits_child yesterday (served now: {served})"
        )
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        assert proc.stderr is not None
        proc.stderr.close()
        assert proc.stdout is not None
        proc.stdout.close()
    (row,) = json.loads(installed(store, "runs", "--json").stdout)
    assert row["status_text"] == (
        "waiting: a worker serving waits_child yesterday (no live engine serves waits_child)"
    )


def test_send_to_a_finished_run_fails(store: Path, flows: Path) -> None:
    assert call(store, "run", f"{flows}:cli_add", "1", "2", "-q").exit_code == 0
    (run_id,) = run_ids(store)
    done = installed(store, "send", run_id, "approved", "true")
    assert done.returncode == 2, done
    assert done.stdout == ""
    assert done.stderr == (
        f"surestep: error: run {run_id} has finished (completed); it receives no more events\n"
    )


def test_fork_past_the_end_of_the_journal_fails(store: Path, flows: Path) -> None:
    assert call(store, "run", f"{flows}:cli_pipeline", "x", "3", "-q").exit_code == 0
    (source,) = run_ids(store)
    done = installed(store, "fork", source, "--from-step", "99")
    assert done.returncode == 2
    assert done.stderr.startswith("surestep: error: ")
    assert "has 3 step(s) (0 to 2): fork it from a step 0 to 3, not 99" in done.stderr
    assert run_ids(store) == [source]  # nothing created
    assert installed(store, "fork", source, "--from-step", "3").returncode == 0


def test_a_store_path_that_is_a_file_gets_one_message_from_every_command(
    tmp_path: Path, flows: Path
) -> None:
    path = tmp_path / "not-a-store"
    path.write_text("hello")
    some_id = "0" * 32
    for args in (
        ["run", f"{flows}:cli_add", "1", "2"],
        ["runs"],
        ["show", some_id],
        ["logs", some_id],
        ["cancel", some_id],
        ["send", some_id, "e"],
        ["fork", some_id, "--from-step", "0"],
        ["deploy", str(flows)],
        ["deployments"],
    ):
        done = installed(path, *args)
        assert done.returncode == 4, (args, done.stderr)
        assert done.stderr == (
            f"surestep: error: the store path {str(path)!r} is a file, not a surestep store "
            "(a directory); give --store another path or set SURESTEP_STORE\n"
        ), args
    assert path.read_text() == "hello"


def test_a_short_id_shared_by_a_parent_and_its_child_lists_both(store: Path, flows: Path) -> None:
    done = installed(store, "run", f"{flows}:waits_parent", "-q")
    assert done.returncode == 0, done.stderr
    (parent,) = run_ids(store, "--workflow", "waits_parent")
    (child,) = run_ids(store, "--workflow", "waits_child")
    assert parent[:12] == child[:12]
    ambiguous = installed(store, "show", parent[:12])
    assert ambiguous.returncode == 2
    assert "names 2 runs: " in ambiguous.stderr
    assert f"{parent} (waits_parent, completed)" in ambiguous.stderr
    assert f"{child} (waits_child, completed)" in ambiguous.stderr
    assert installed(store, "show", parent[:20], "--json").returncode == 0
    assert json.loads(installed(store, "show", child[:16], "--json").stdout)["run_id"] == child


def test_long_lines_are_not_wrapped_outside_a_terminal(store: Path, flows: Path) -> None:
    words = "a-long-message-" * 12
    done = installed(store, "run", f"{flows}:waits_says_a_lot", words)
    assert done.returncode == 1
    (failed,) = [line for line in done.stderr.splitlines() if "failed:" in line]
    assert failed.endswith(f"ValueError: {words}")


def test_a_worker_of_a_module_without_workflows_refuses(store: Path, tmp_path: Path) -> None:
    empty = tmp_path / "no_workflows.py"
    empty.write_text("X = 1\n")
    done = installed(store, "worker", str(empty))
    assert done.returncode == 2
    assert done.stderr == (
        f"surestep: error: {empty} defines no @workflow: a worker of it would have "
        "nothing to execute\n"
    )


def test_a_worker_says_when_each_run_starts_and_ends(store: Path, flows: Path) -> None:
    done_id = pending_run(store, flows, "cli_add", 1, 2)
    failing_id = pending_run(store, flows, "cli_failing", "no")
    worker = subprocess.Popen(
        [*surestep_command(), "--store", str(store), "worker", str(flows)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        said = stderr_until(worker, f"run {done_id} completed")
        said += stderr_until(worker, f"run {failing_id} failed")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
        assert worker.stderr is not None
        worker.stderr.close()
    assert f"run {done_id} started" in said and f"run {failing_id} started" in said
    assert "ValueError: exploded: no" in said


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (3600, "1h 00m"),
        (3599.9996, "1h 00m"),
        (59.999, "1m 00s"),
        (0.9996, "1.00 s"),
        (119.6, "2m 00s"),
        (7199.0, "2h 00m"),
        (0.0123, "12 ms"),
    ],
)
def test_durations_round_to_what_is_shown(seconds: float, shown: str) -> None:
    assert cli.format_duration(seconds) == shown


def test_help_starts_without_asyncio_rich_or_the_web_server() -> None:
    """`surestep --help` imports only what it needs to answer (measured in the README)."""
    probe = textwrap.dedent(
        """
        import sys
        from surestep.cli import main
        code = main(["--help"], standalone_mode=False)
        heavy = [m for m in ("asyncio", "rich", "uvloop", "surestep.engine",
                             "surestep.web.server", "surestep.web.http") if m in sys.modules]
        print(code, heavy)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert "Exit codes:" in done.stdout
    assert done.stdout.splitlines()[-1] == "0 []"


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory other users may enter (a test's tmp_path is private to its owner)."""
    path = Path(tempfile.mkdtemp(prefix="surestep-shared-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_store_this_user_may_not_write_is_listed_read_only(shared_dir: Path, flows: Path) -> None:
    """Another user's store, readable but not writable: the reading commands work, and
    a command that writes says why it cannot."""
    store = shared_dir / "store"
    assert call(store, "run", f"{flows}:cli_add", "1", "2", "-q").exit_code == 0
    (run_id,) = run_ids(store)
    as_other: list[str] = []
    if os.geteuid() == 0:  # root writes anything: read as nobody instead
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("needs setpriv to read the store as another user")
        as_other = [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
        mode = "go+rX"
    else:
        mode = "a-w"
    subprocess.run(["chmod", "-R", mode, str(store)], check=True)
    before = {p: p.stat().st_mtime_ns for p in store.rglob("*")}

    def surestep_as_other(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*as_other, *surestep_command(), "--store", str(store), *args],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
            cwd=shared_dir,
        )

    try:
        listed = surestep_as_other("runs", "--json")
        assert listed.returncode == 0, listed.stderr
        assert [r["run_id"] for r in json.loads(listed.stdout)] == [run_id]
        shown = surestep_as_other("show", run_id[:8], "--json")
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["result"] == 3
        assert surestep_as_other("logs", run_id).returncode == 0
        refused = surestep_as_other("cancel", run_id)
        assert refused.returncode == 4
        assert "no permission to write there" in refused.stderr
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(store)], check=True)
    assert {p: p.stat().st_mtime_ns for p in store.rglob("*")} == before
