"""The porting suite: programs written the way AGNT5's templates and SDK examples write
them, importing only ``surestep`` / ``surestep.types`` where AGNT5 code imports
``agnt5``. Each runs to completion through an engine on both stores and, awaited
directly, without one; each with steps is killed with SIGKILL between two steps in a
real process and resumed by another with nothing done twice.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from scenarios import PROGRAMS, SCENARIOS, Scenario

from support.processes import kill_when_paused
from surestep import Engine, convert, decorators
from surestep.engine import run_loop

RUNNER = str(Path(__file__).parent / "runner.py")

# The programs' workflows and functions, registered for this module's tests only: other
# tests' engines must not serve them (the digest's schedule, the welcome's trigger).
_before = (dict(decorators._functions), dict(decorators._workflows))
for _scenario in SCENARIOS.values():
    _scenario.function()
PROGRAM_FUNCTIONS = {k: v for k, v in decorators._functions.items() if k not in _before[0]}
PROGRAM_WORKFLOWS = {k: v for k, v in decorators._workflows.items() if k not in _before[1]}
for _name in PROGRAM_FUNCTIONS:
    del decorators._functions[_name]
for _name in PROGRAM_WORKFLOWS:
    del decorators._workflows[_name]


@pytest.fixture(autouse=True)
def _programs_registered() -> None:
    """The programs registered for the test (conftest's fixture restores the registry)."""
    decorators._functions.update(PROGRAM_FUNCTIONS)
    decorators._workflows.update(PROGRAM_WORKFLOWS)


def ledger_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "ledger.jsonl"
    monkeypatch.setenv("COMPAT_LEDGER", str(path))
    monkeypatch.delenv("COMPAT_PAUSE_AT", raising=False)
    return path


def test_programs_import_only_surestep_where_agnt5_code_imports_agnt5() -> None:
    programs = sorted(PROGRAMS.glob("*.py"))
    assert len([p for p in programs if p.name != "world.py"]) >= 15  # world: their world
    for program in programs:
        for node in ast.walk(ast.parse(program.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module is not None:
                modules = [node.module]
            elif isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            else:
                continue
            for module in modules:
                assert not module.startswith("agnt5"), program.name
                if module.startswith("surestep"):
                    assert module in ("surestep", "surestep.types"), (program.name, module)


@pytest.mark.parametrize("name", SCENARIOS)
async def test_runs_to_completion_in_an_engine(name: str, store_url: str, ledger: Path) -> None:
    scenario = SCENARIOS[name]
    async with Engine(store_url) as engine:
        handle = await scenario.start(engine)
        result = await scenario.finish(engine, handle)
        info = await engine.get_run(handle.run_id)
    assert result == scenario.expect
    assert info.status == "completed"
    effects = Counter((e["kind"], e["key"]) for e in ledger_lines(ledger))
    assert all(count == 1 for count in effects.values()), effects


@pytest.mark.parametrize("name", [n for n, s in SCENARIOS.items() if s.direct])
async def test_runs_when_awaited_without_an_engine(
    name: str, ledger: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    value = await SCENARIOS[name].call()
    assert convert.journal_value(value, "the result") == SCENARIOS[name].expect
    assert sorted(os.listdir(tmp_path)) == sorted(p.name for p in [ledger] if p.exists())


def test_a_program_main_awaits_its_workflow_without_an_engine(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(PROGRAMS / "ticket_summary.py")],
        cwd=tmp_path,
        env={**os.environ, "COMPAT_LEDGER": str(tmp_path / "ledger.jsonl")},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout == "summary: Login fails cannot log in works\n"
    assert os.listdir(tmp_path) == ["ledger.jsonl"]  # no store anywhere
    assert [e["kind"] for e in ledger_lines(tmp_path / "ledger.jsonl")] == ["post"]


# ---------------------------------------------------------------- SIGKILL between steps


def start_and_kill(name: str, store: str, env: dict[str, str]) -> str:
    """Start the scenario in a worker process, SIGKILL it when it pauses; its run id."""
    run_id = kill_when_paused([sys.executable, RUNNER, name, store, "start"], env)
    assert run_id, f"{name}: killed before its run was stored"
    return run_id


def resume(name: str, store: str, run_id: str, env: dict[str, str]) -> Any:
    done = subprocess.run(
        [sys.executable, RUNNER, name, store, "recover", run_id],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=True,
    )
    for line in done.stdout.splitlines():
        if line.startswith(f"result {run_id} "):
            return json.loads(line.split(" ", 2)[2])
    raise AssertionError(f"{name}: no result from the resuming process:\n{done.stderr}")


def uninterrupted_effects(scenario: Scenario, tmp_path: Path) -> Counter[tuple[str, str]]:
    """The effects of the scenario run without a crash, in this process."""

    async def complete() -> Any:
        async with Engine(str(tmp_path / "reference")) as engine:
            return await scenario.finish(engine, await scenario.start(engine))

    assert run_loop(complete()) == scenario.expect
    return Counter((e["kind"], e["key"]) for e in ledger_lines(tmp_path / "reference.jsonl"))


CRASHING = [n for n, s in SCENARIOS.items() if s.pause_at is not None]


@pytest.mark.slow
@pytest.mark.parametrize("name", CRASHING)
def test_killed_between_two_steps_and_resumed_with_nothing_done_twice(
    name: str, store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scenario = SCENARIOS[name]
    monkeypatch.setenv("COMPAT_LEDGER", str(tmp_path / "reference.jsonl"))
    reference = uninterrupted_effects(scenario, tmp_path)

    store = store_url
    ledger = tmp_path / "ledger.jsonl"
    env = {**os.environ, "COMPAT_LEDGER": str(ledger)}
    run_id = start_and_kill(name, store, {**env, "COMPAT_PAUSE_AT": str(scenario.pause_at)})
    before = ledger_lines(ledger)
    assert len(before) == scenario.pause_at - 1  # killed before the effect it paused at

    assert resume(name, store, run_id, env) == scenario.expect
    effects = ledger_lines(ledger)
    done = Counter((e["kind"], e["key"]) for e in effects)
    assert done == reference  # every effect once: none lost, none repeated
    assert len({e["pid"] for e in effects}) == 2  # the killed process, then the resuming one
