"""The names and options code written for the AGNT5 SDK uses, where it imports them:
``Context``, ``BackoffType``, ``event``, ``webhook``, ``surestep.types``, the
``@workflow`` options, keyword log attributes, ``FunctionContext.log``, synchronous
steps off the event loop, and ``session_id`` / ``user_id`` as workflow parameters."""

from __future__ import annotations

import asyncio
import contextvars
import importlib.util
import logging
import sys
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from surestep import (
    BackoffPolicy,
    BackoffType,
    ConfigurationError,
    Context,
    Engine,
    FunctionContext,
    WorkflowContext,
    decorators,
    event,
    function,
    webhook,
    workflow,
)
from surestep import types as surestep_types

# ---------------------------------------------------------------- names


def test_names_import_where_agnt5_code_imports_them() -> None:
    from surestep.types import BackoffPolicy as TypesBackoffPolicy
    from surestep.types import BackoffType as TypesBackoffType
    from surestep.types import RetryPolicy
    from surestep.types import event as types_event
    from surestep.types import webhook as types_webhook

    assert TypesBackoffType is BackoffType and types_event is event
    assert types_webhook is webhook and TypesBackoffPolicy is BackoffPolicy
    assert RetryPolicy().max_attempts == 3
    assert BackoffType("linear") is BackoffType.LINEAR and BackoffType.LINEAR == "linear"
    assert BackoffPolicy(type=BackoffType.CONSTANT).type == "constant"
    assert event("user.created") == surestep_types.EventTrigger("user.created")
    trigger = webhook("stripe", event="payment_intent.succeeded")
    assert trigger.event_type == "stripe.payment_intent.succeeded"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: event(""), "non-empty event name"),
        (lambda: webhook("mailgun"), "standard, sentry, stripe, github, slack"),
        (lambda: webhook("github", event=""), "non-empty string"),
    ],
)
def test_triggers_are_checked(make: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        make()


async def test_context_is_what_steps_and_workflows_receive(store_url: str) -> None:
    @function(backoff=BackoffType.LINEAR, retries=1)
    async def annotated(ctx: Context, x: int) -> list:
        ctx.log("priced", sku="a-1")  # FunctionContext.log, as AGNT5 has it
        return [isinstance(ctx, Context), type(ctx).__name__, x]

    @workflow
    async def uses_context(ctx: Context) -> list:
        inner = await ctx.step(annotated, 4)  # type: ignore[attr-defined]
        return [isinstance(ctx, Context), *inner]

    async with Engine(store_url) as engine:
        handle = await engine.start(uses_context)
        assert await handle.result() == [True, True, "FunctionContext", 4]
        logs = await engine.logs(handle.run_id)
    assert [(line["message"], line["attributes"]) for line in logs] == [("priced", {"sku": "a-1"})]
    assert isinstance(FunctionContext, type) and issubclass(WorkflowContext, Context)


# ---------------------------------------------------------------- @workflow options


async def test_chat_workflow_names_its_conversation(store_url: str) -> None:
    @workflow(chat=True)
    async def support(ctx: WorkflowContext, message: str) -> dict:
        turns = await ctx.session.state.get("turns", 0)
        await ctx.session.state.set("turns", turns + 1)
        return {"session": ctx.session_id, "turns": turns + 1, "echo": message}

    spec = decorators.find_workflow(support)
    assert spec.chat is True and decorators.find_workflow("support").chat
    async with Engine(store_url) as engine:
        first = await engine.start(support, "hi")
        one = await first.result()
        again = await engine.run(support, "more", session_id=one["session"])
        info = await engine.get_run(first.run_id)
    assert one == {"session": first.run_id, "turns": 1, "echo": "hi"}
    assert info.session_id == first.run_id  # recorded: the next turn can name it
    assert again == {"session": first.run_id, "turns": 2, "echo": "more"}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"cron": "every day"}, "a cron expression has 5 fields"),
        ({"cron": "0 9 * *"}, "a cron expression has 5 fields"),
        ({"cron": "0 9 * * *", "timezone": "Mars/Olympus"}, "IANA name"),
        ({"timezone": "Europe/Paris"}, "timezone= goes with cron="),
        ({"triggers": ["user.created"]}, "made by surestep.types.event"),
        ({"triggers": "user.created"}, "must be a list"),
        ({"triggers": [webhook("sentry", event="issue")]}, r"webhook\(\.\.\.\) triggers are not"),
        ({"webhook": "yes"}, "webhook must be True or False"),
        ({"webhook_secret": "s3cr3t-value"}, "webhook_secret= goes with webhook=True"),
        ({"webhook": True, "webhook_secret": 42}, "webhook_secret must be a non-empty"),
        ({"webhook": True}, "webhook=True needs webhook_secret"),
        ({"chat": "yes"}, "chat must be True or False"),
    ],
)
def test_workflow_options_are_checked_and_not_ignored(options: dict, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as refused:

        @workflow(**options)
        async def scheduled(ctx: WorkflowContext) -> None:
            return None

    assert "s3cr3t-value" not in str(refused.value)  # a secret is never echoed
    assert "scheduled" not in decorators._workflows


# ---------------------------------------------------------------- versions


BODY = """
from surestep import WorkflowContext, function, workflow

calls = []


@function
async def first_half(x: int) -> int:
    calls.append(x)
    return x + 1


{decorator}
async def resumable(ctx: WorkflowContext, x: int) -> list:
    a = await ctx.step(first_half, x)
    sent = await ctx.wait_for_event("go")
    return [a, sent]
"""


def load(path: Path, decorator: str) -> ModuleType:
    """(Re)write the module at ``path`` with ``decorator`` on its workflow, and import it
    afresh, as a new process of the changed code would."""
    path.write_text(BODY.format(decorator=decorator))
    name = path.stem
    sys.modules.pop(name, None)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def module_path(tmp_path: Path) -> Any:
    path = tmp_path / "resumable_flow.py"
    yield path
    sys.modules.pop(path.stem, None)


def test_decorator_options_do_not_change_the_version(module_path: Path) -> None:
    bare = decorators.find_workflow(load(module_path, "@workflow").resumable).versions
    chat = decorators.find_workflow(
        load(module_path, "@workflow(\n    chat=True,\n)").resumable
    ).versions
    assert bare[0] == chat[0] and bare[0].startswith("code-")
    assert bare[1] != chat[1]  # 0.2's digest covered the decorator
    pinned = decorators.find_workflow(load(module_path, '@workflow(version="7")').resumable)
    assert pinned.versions == ("7",)


async def test_a_run_resumes_after_a_decorator_option_is_added(
    store_url: str, module_path: Path
) -> None:
    old = load(module_path, "@workflow")
    engine = Engine(store_url)
    handle = await engine.start(old.resumable, 1)
    while (await engine.get_run(handle.run_id)).status != "waiting":  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    await engine.close()  # the process is gone; its code changes
    new = load(module_path, "@workflow(chat=True)")
    async with Engine(store_url) as engine:
        await engine.send_event(handle.run_id, "go", "sent")
        await engine.recover()  # or the engine's wake-up loop claims it first
        assert await engine.handle(handle.run_id).result() == [2, "sent"]
        assert (await engine.get_run(handle.run_id)).attempt == 2
    assert old.calls == [1] and new.calls == []  # the step was not run again


async def test_runs_stored_under_the_0_2_digest_keep_resuming(
    store_url: str, module_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = load(module_path, "@workflow")
    # 0.2 digested the source with its decorator lines: start the run under that rule.
    monkeypatch.setattr(decorators, "code_digest", decorators.legacy_code_digest)
    engine = Engine(store_url)
    handle = await engine.start(old.resumable, 5)
    while (await engine.get_run(handle.run_id)).status != "waiting":  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    await engine.close()
    monkeypatch.undo()
    new = load(module_path, "@workflow")
    spec = decorators.find_workflow(new.resumable)
    stored = (await _get_run(store_url, handle.run_id)).version
    assert stored == spec.versions[1] != spec.version
    async with Engine(store_url) as engine:
        await engine.send_event(handle.run_id, "go", "late")
        await engine.recover()  # or the engine's wake-up loop claims it first
        assert await engine.handle(handle.run_id).result() == [6, "late"]
        assert (await engine.get_run(handle.run_id)).attempt == 2


async def _get_run(store_url: str, run_id: str) -> Any:
    async with Engine(store_url, execute=False) as engine:
        return await engine.get_run(run_id)


# ---------------------------------------------------------------- logging


async def test_logger_takes_keyword_attributes(
    store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    @workflow
    async def logs_with_attributes(ctx: WorkflowContext) -> None:
        ctx.logger.warning("low stock", order_id="o-1", count=2)
        ctx.logger.info("odd values", name="clashes-with-LogRecord", when=object)
        ctx.logger.debug("not stored", order_id="o-2")

    caplog.set_level(logging.DEBUG, logger="surestep.workflow")
    async with Engine(store_url) as engine:
        handle = await engine.start(logs_with_attributes)
        await handle.result()
        lines = await engine.logs(handle.run_id)
    assert [(line["level"], line["message"], line["attributes"]) for line in lines] == [
        ("WARNING", "low stock", {"order_id": "o-1", "count": 2}),
        ("INFO", "odd values", {"name": "clashes-with-LogRecord", "when": repr(object)}),
    ]
    records = [r for r in caplog.records if r.name.startswith("surestep.workflow")]
    assert records[0].order_id == "o-1" and records[0].count == 2  # type: ignore[attr-defined]
    assert records[1].name == "surestep.workflow.logs_with_attributes"  # not overwritten
    assert records[2].order_id == "o-2"  # type: ignore[attr-defined]


# ---------------------------------------------------------------- synchronous steps

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


async def test_a_synchronous_step_does_not_hold_up_other_runs(store_url: str) -> None:
    events: list[str] = []
    released = threading.Event()

    @function
    def blocking(tag: str) -> list:
        events.append("blocking started")
        time.sleep(0.5)  # blocks its thread, not the loop
        waited = released.wait(timeout=10)  # set by the other run, which must get to run
        events.append("blocking done")
        return [
            tag,
            request_id.get(),
            threading.current_thread() is threading.main_thread(),
            waited,
        ]

    @function
    async def quick() -> None:
        events.append("quick ran")
        released.set()

    @workflow
    async def slow_run(ctx: WorkflowContext) -> list:
        request_id.set("req-7")  # context variables reach the step's thread
        return await ctx.step(blocking, "b")

    @workflow
    async def fast_run(ctx: WorkflowContext) -> None:
        while "blocking started" not in events:  # noqa: ASYNC110 - set by a thread
            await asyncio.sleep(0.001)
        await ctx.step(quick)

    async with Engine(store_url) as engine:
        slow = await engine.start(slow_run)
        fast = await engine.start(fast_run)
        await fast.result()
        assert await slow.result() == ["b", "req-7", False, True]
    assert events == ["blocking started", "quick ran", "blocking done"]


# ---------------------------------------------------------------- session_id / user_id


async def test_session_and_user_parameters_take_the_keywords(store_url: str) -> None:
    @workflow
    async def personal(ctx: WorkflowContext, user_id: str, item: str) -> list:
        return [user_id, ctx.user_id, ctx.session_id, item]

    @workflow
    async def by_session(ctx: WorkflowContext, session_id: str) -> list:
        return [session_id, ctx.session_id]

    @workflow
    async def anonymous(ctx: WorkflowContext, workflow: str) -> list:
        return [workflow, ctx.user_id]

    async with Engine(store_url) as engine:
        one = await engine.start(personal, user_id="u-1", item="book", session_id="s-1")
        assert await one.result() == ["u-1", "u-1", "s-1", "book"]
        # An argument to the workflow's own user_id parameter names the run's user.
        two = await engine.start(personal, "u-2", "pen")
        assert (await engine.get_run(two.run_id)).user_id == "u-2"
        assert (await two.result())[:2] == ["u-2", "u-2"]
        assert await engine.run(by_session, session_id="s-9") == ["s-9", "s-9"]
        three = await engine.start(by_session, "s-8")
        assert (await engine.get_run(three.run_id)).session_id == "s-8"
        # The workflow argument is positional-only: "workflow" is free for the workflow.
        assert await engine.run(anonymous, workflow="w", user_id="u-3") == ["w", "u-3"]
