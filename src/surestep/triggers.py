"""Event triggers: workflows started by a named event.

``@workflow(triggers=[event("user.created")])`` (``event`` from ``surestep`` or
``surestep.types``) subscribes the workflow to the event. An executing engine
stores the subscriptions of the workflows it serves when it opens, and so does
``engine.deploy`` (the last deployed version's subscriptions win, as for
schedules), so a process that emits an event needs only the store, not the
workflow's code.

``await engine.emit("user.created", {"user_id": "u-1"}, id="evt-42")`` starts one
run of every subscribed workflow, in one transaction of the store: each run is
pending (for a worker serving the workflow's current version) and keyed by
``event:<name>:<id>:<workflow>``, so emitting the same id again starts nothing
new and returns the same runs. An emit that returned is durable: its runs are
stored. As in AGNT5, the payload is a JSON object whose keys are the
workflow's keyword arguments (``async def welcome(ctx, user_id: str)``).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from . import serde
from .errors import ConfigurationError
from .store.base import RunInfo, Store

if TYPE_CHECKING:
    from .decorators import WorkflowSpec

log = logging.getLogger("surestep.triggers")

MAX_KEY_BYTES = 255  # an idempotency key, in UTF-8 (an LMDB key holds 511 at most)


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip() or "\x00" in name:
        raise ConfigurationError(f"an event name is a non-empty str without NUL, not {name!r}")
    return name


def event_key(name: str, event_id: str, workflow: str) -> str:
    """The idempotency key of the run that event ``event_id`` starts of ``workflow``;
    ``ConfigurationError`` when the name and id make it too long."""
    key = f"event:{quote(name, safe='.')}:{quote(event_id, safe='.')}:{quote(workflow, safe='')}"
    if len(key.encode()) > MAX_KEY_BYTES:
        raise ConfigurationError(
            f"event {name!r} with id {event_id!r} makes a run key of {len(key.encode())} "
            f"bytes for workflow {workflow!r}, over {MAX_KEY_BYTES}: use a shorter name or id"
        )
    return key


def event_id_of(event_id: Any) -> str:
    """``emit``'s ``id=``: a non-empty str, or a new random one for ``None``."""
    if event_id is None:
        return uuid.uuid4().hex
    if not isinstance(event_id, str) or not event_id or "\x00" in event_id:
        raise ConfigurationError(f"an event id is a non-empty str without NUL, not {event_id!r}")
    return event_id


def payload_kwargs(name: str, payload: Any) -> dict[str, Any]:
    """The keyword arguments that ``payload`` gives the runs of event ``name``: a JSON
    object's keys (``None``: none)."""
    if payload is None:
        return {}
    value = serde.loads(serde.dumps(payload, f"the payload of event {name!r}"))
    if not isinstance(value, dict):
        raise ConfigurationError(
            f"the payload of event {name!r} is a JSON object (its keys are the workflow's "
            f"keyword arguments), not {type(payload).__name__}"
        )
    return value


async def register(store: Store, specs: Sequence[WorkflowSpec], force: bool = False) -> None:
    """Store the event triggers ``specs`` declare (and drop those they no longer
    declare); only what differs from the store is written, unless ``force`` (a deploy)."""
    held: dict[str, tuple[list[str], str]] = {}
    for name, workflow, version in await store.subscriptions():
        held.setdefault(workflow, ([], version))[0].append(name)
    for spec in specs:
        want = sorted(set(spec.events))
        have = held.get(spec.name, ([], spec.version))
        if not force and (sorted(have[0]), have[1]) == (want, spec.version):
            continue
        names = await store.register_subscriptions(spec.name, spec.version, want)
        log.info("event triggers of %s: %s", spec.name, ", ".join(names) or "none")


async def emit(store: Store, name: str, payload: Any, event_id: Any) -> list[RunInfo]:
    """Start the runs of event ``name`` (see the module docstring)."""
    check_name(name)
    kwargs = payload_kwargs(name, payload)
    key_id = event_id_of(event_id)
    return await store.emit_event(name, kwargs, lambda workflow: event_key(name, key_id, workflow))
