"""OpenTelemetry: a span per run execution and per step, checked with the SDK's
in-memory exporter (``surestep[otel]``)."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("opentelemetry.sdk", reason="the test extra installs opentelemetry-sdk")

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)

from support.polling import until_journaled
from surestep import ConfigurationError, Engine, WorkflowContext, function, workflow

gate: dict[str, asyncio.Event] = {}


@function(retries={"max_attempts": 3, "initial_interval_ms": 1})
async def otel_flaky(n: int) -> int:
    otel_flaky.calls = getattr(otel_flaky, "calls", 0) + 1  # type: ignore[attr-defined]
    if otel_flaky.calls % 2:  # type: ignore[attr-defined]
        raise ConnectionError("once more")
    return n


@workflow
async def otel_traced(ctx: WorkflowContext) -> list:
    first = await ctx.step(otel_flaky, 1)
    second = await ctx.step("second", lambda: 2)
    if "hold" in gate:
        await gate["hold"].wait()
    return [first, second]


def tracing() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


async def test_a_span_per_run_and_per_step(store_url: str) -> None:
    provider, exporter = tracing()
    otel_flaky.calls = 0  # type: ignore[attr-defined]
    async with Engine(store_url, tracing=provider) as engine:
        handle = await engine.start(otel_traced)
        assert await handle.result() == [1, 2]
    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert set(spans) == {
        "surestep.run otel_traced",
        "surestep.step otel_flaky",
        "surestep.step second",
    }
    run = spans["surestep.run otel_traced"]
    assert run.attributes is not None
    assert run.attributes["surestep.run_id"] == handle.run_id
    assert run.attributes["surestep.attempt"] == 0 and run.attributes["surestep.replay"] is False
    step = spans["surestep.step otel_flaky"]
    assert step.attributes is not None and step.parent is not None
    assert step.parent.span_id == run.context.span_id  # steps are children of the run
    assert step.attributes["surestep.step.seq"] == 0
    assert step.attributes["surestep.step.attempts"] == 2
    assert step.attributes["surestep.replay"] is False


async def test_replayed_steps_are_marked(store_url: str) -> None:
    provider, exporter = tracing()
    otel_flaky.calls = 0  # type: ignore[attr-defined]
    gate["hold"] = asyncio.Event()
    first = Engine(store_url, tracing=provider)
    handle = await first.start(otel_traced)
    await until_journaled(first, handle.run_id, 2)
    await first.close()
    del gate["hold"]
    exporter.clear()
    async with Engine(store_url, tracing=provider) as second:
        (resumed,) = await second.recover()
        assert await resumed.result() == [1, 2]
    spans = exporter.get_finished_spans()
    steps = [s for s in spans if s.name.startswith("surestep.step")]
    assert [s.attributes["surestep.replay"] for s in steps if s.attributes] == [True, True]
    (run,) = [s for s in spans if s.name.startswith("surestep.run")]
    assert run.attributes is not None and run.attributes["surestep.attempt"] == 1
    assert run.attributes["surestep.replay"] is True
    assert otel_flaky.calls == 2  # type: ignore[attr-defined]  # not run again on replay


def test_tracing_is_off_by_default_and_typed_when_missing(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert Engine(store_url)._tracer is None
    import sys

    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(ConfigurationError, match=r"surestep\[otel\]"):
        Engine(store_url, tracing=True)
