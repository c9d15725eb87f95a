"""Durable state: the run's own (``ctx.state``) and a session's or a user's
(``ctx.session.state``, ``ctx.user.state``), each read and write journaled."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import journal, serde
from .errors import ConfigurationError, StateConflictError
from .journal import NO_INPUT, Body
from .recorder import Encode, Recorder


class RunState:
    """``ctx.state``: the run's own durable state (synchronous, as in the AGNT5 SDK).

    Writes are journaled, and replay rebuilds the state from them, so a resumed
    run sees what it had. Values are JSON.
    """

    def __init__(self, recorder: Recorder) -> None:
        self._recorder = recorder
        self._values: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self._values.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self._values[key] = self._write(key, value, delete=False)

    def delete(self, key: str) -> None:
        self._write(key, None, delete=True)
        self._values.pop(key, None)

    def clear(self) -> None:
        for key in list(self._values):
            self.delete(key)

    async def set_async(self, key: str, value: Any) -> None:
        """:meth:`set`, for code that awaits its state writes (as AGNT5 code may)."""
        self.set(key, value)

    async def delete_async(self, key: str) -> None:
        """:meth:`delete`, for code that awaits its state writes."""
        self.delete(key)

    def items(self) -> list[tuple[str, Any]]:
        return list(self._values.items())

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def _write(self, key: str, value: Any, delete: bool) -> Any:
        """Journal a write (its input is the key); the value as the journal holds it."""
        if not isinstance(key, str):
            raise ConfigurationError(f"a state key is a str, not {key!r}")
        recorder = self._recorder
        seq = recorder.take_seq()
        return recorder.value(
            seq,
            journal.STATE,
            "@state.delete" if delete else "@state.set",
            serde.dumps(key, "a state key"),
            lambda: journal.output(
                NO_INPUT if delete else serde.dumps(value, f"the value of state key {key!r}")
            ),
            _output,
        )


class SharedState:
    """The durable state of a session or a user, shared by their runs (``await`` it).

    Reads are journaled, so replay sees the value the run saw even if another run
    changed it since. A ``set`` after a ``get`` of the same key writes only if no
    other run wrote that key in between; otherwise it raises
    ``StateConflictError`` (journaled too). ``update(key, fn)`` retries for you:
    concurrent runs of one session never lose each other's updates.
    """

    def __init__(self, recorder: Recorder, scope: str) -> None:
        self._recorder = recorder
        self.scope = scope
        self._versions: dict[str, int] = {}

    async def get(self, key: str, default: Any = None) -> Any:
        recorder = self._recorder
        seq = recorder.take_seq()

        async def read(seq: int, encode: Encode) -> Body:
            value, version = await recorder.store.state_read(
                recorder.run_id,
                recorder.fence,
                seq,
                self.scope,
                key,
                lambda value, version: encode(journal.state_read(value, version)),
            )
            return journal.state_read(value, version)

        fields = await recorder.operation(
            seq,
            journal.STATE,
            "@state.get",
            serde.canonical([self.scope, key], "a state key"),
            read,
            _as_is,
        )
        self._versions[key] = fields["v"]
        return default if fields["o"] is None else fields["o"]

    async def set(self, key: str, value: Any) -> None:
        await self._write(key, serde.dumps(value, f"the value of state key {key!r}"))

    async def delete(self, key: str) -> None:
        await self._write(key, None)

    async def keys(self) -> list[str]:
        """The keys of this session's or user's state, sorted; journaled, so replay sees
        the keys this run saw."""
        recorder = self._recorder

        async def read(seq: int, encode: Encode) -> Body:
            keys = sorted(await recorder.store.state_items(self.scope))
            return journal.output(serde.dumps(keys, "state keys"))

        keys: list[str] = await recorder.operation(
            recorder.take_seq(),
            journal.STATE,
            "@state.keys",
            serde.canonical(self.scope, "a state scope"),
            read,
            _output,
        )
        return keys

    async def clear(self) -> None:
        """Delete every key of this session's or user's state (each delete journaled)."""
        for key in await self.keys():
            await self.delete(key)

    async def update(self, key: str, fn: Callable[[Any], Any], default: Any = None) -> Any:
        """Read, apply ``fn``, write; again on a conflict. Returns the value written."""
        for _ in range(100):
            value = fn(await self.get(key, default))
            try:
                await self.set(key, value)
            except StateConflictError:
                continue
            return value
        raise StateConflictError(
            f"{self.scope}: key {key!r} kept changing; gave up after 100 tries"
        )

    async def _write(self, key: str, value: bytes | None) -> None:
        """Compare-and-set ``key`` against the version this run read (``None`` deletes)."""
        recorder = self._recorder
        seq = recorder.take_seq()
        input_json = b"[%b,%b]" % (
            serde.canonical([self.scope, key], "a state key"),
            value or NO_INPUT,
        )

        async def write(seq: int, encode: Encode) -> Body:
            version = await recorder.store.state_write(
                recorder.run_id,
                recorder.fence,
                seq,
                self.scope,
                key,
                value,
                self._versions.get(key),
                lambda version: encode(journal.state_written(version)),
            )
            return journal.state_written(version)

        scope_key = [self.scope, key]  # the input is [[scope, key], value]

        def same_write(recorded_input: Any) -> bool:
            # A write is its scope, key and position: the value written the first time
            # (a time, an id) stands, and the store holds it.
            return type(recorded_input) is list and recorded_input[0] == scope_key

        fields = await recorder.operation(
            seq, journal.STATE, "@state.set", input_json, write, _as_is, same_write
        )
        if fields["v"] is None:
            self._versions.pop(key, None)
            raise StateConflictError(
                f"{self.scope}: key {key!r} changed since this run read it (step {seq}); "
                "read it again"
            )
        self._versions[key] = fields["v"]


class Scope:
    """``ctx.session`` / ``ctx.user``: an id and its shared ``state``."""

    def __init__(self, recorder: Recorder, kind: str, ident: str) -> None:
        self.id = ident
        self.state = SharedState(recorder, f"{kind}:{ident}")


def _output(fields: dict[str, Any]) -> Any:
    return fields["o"]


def _as_is(fields: dict[str, Any]) -> dict[str, Any]:
    return fields
