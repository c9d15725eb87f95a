"""Security basics: store files are private to their user; reading a store runs no code;
the HTTP surface answers only whom it should, with its security headers on every answer.

The server's binding (127.0.0.1 by default, a token elsewhere) is tested with the CLI
(``test_cli.py``), its API's rules in ``test_http.py`` and ``tests/e2e``.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import os
import pickle
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import surestep
from support.http_server import Served
from support.store_edit import rewrite_record, with_body
from surestep import Engine, WorkflowContext, _core, workflow
from surestep.web.access import ACT, READ, Access
from surestep.web.app import SECURITY_HEADERS

SRC = Path(surestep.__file__).resolve().parent
EXT = SRC.parent.parent / "ext"

FORBIDDEN_MODULES = {
    "pickle",
    "_pickle",
    "cPickle",
    "marshal",
    "shelve",
    "dill",
    "cloudpickle",
    "jsonpickle",
    "yaml",
}
FORBIDDEN_CALLS = {"eval", "exec"}


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _alive(path: Path) -> bool:
    """A socket that is still there (an entry of a closed listener may name a gone one)."""
    try:
        return stat.S_ISSOCK(path.lstat().st_mode)
    except FileNotFoundError:
        return False


# ---------------------------------------------------------------- file permissions


async def test_store_files_are_private_even_under_a_permissive_umask(tmp_path: Path) -> None:
    @workflow
    async def one(ctx: WorkflowContext) -> int:
        return 1

    store = tmp_path / "store"
    with umask(0):
        async with Engine(store) as engine:
            assert await engine.run(one) == 1
            await engine.store.wait_changed(0)  # registers a wake-up entry
            entries = list((store / "wake").iterdir())
            assert entries, "no wake-up entry was registered"
            assert _mode(store) == 0o700
            assert _mode(store / "wake") == 0o700
            for name in ("data.mdb", "lock.mdb"):
                assert _mode(store / name) == 0o600, name
            # Entries are symlinks (their own mode means nothing); what they name must not
            # be writable by others.
            targets = [Path(os.readlink(e)) for e in entries]
            sockets = [t for t in targets if _alive(t)]
            assert sockets, "no live wake-up socket"
            weak = [
                f"{s}: {oct(_mode(s))}"
                for s in sockets
                if _mode(s) & 0o077 and _mode(s.parent) & 0o077
            ]
    assert not weak, f"a wake-up socket other users can reach: {weak}"


def test_the_store_directory_mode_does_not_depend_on_the_umask(tmp_path: Path) -> None:
    """The same with the common umask: nothing beyond the owner either way."""

    async def main() -> None:
        async with Engine(tmp_path / "store"):
            pass

    with umask(0o022):
        asyncio.run(main())
    assert _mode(tmp_path / "store") == 0o700
    assert _mode(tmp_path / "store" / "data.mdb") == 0o600


# ---------------------------------------------------------------- no code from stored data


def _python_sources() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def test_the_package_sources_are_found() -> None:
    names = {p.name for p in _python_sources()}
    assert {"engine.py", "context.py", "serde.py", "lmdb.py"} <= names


@pytest.mark.parametrize("path", _python_sources(), ids=lambda p: str(p.relative_to(SRC)))
def test_no_pickle_marshal_shelve_or_eval(path: Path) -> None:
    """The journal and the run rows are JSON only: nothing in the package can turn stored
    bytes into code (no pickle/marshal/shelve/yaml, no eval/exec)."""
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] in FORBIDDEN_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in FORBIDDEN_MODULES:
                found.append(node.module)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id in FORBIDDEN_CALLS:
                found.append(f"{node.func.id}() at line {node.lineno}")
        elif isinstance(node, ast.Attribute) and node.attr in ("loads", "load"):
            base = node.value
            if isinstance(base, ast.Name) and base.id in FORBIDDEN_MODULES:
                found.append(f"{base.id}.{node.attr} at line {node.lineno}")
    assert found == [], f"{path.name}: {found}"


def test_the_compiled_core_imports_no_deserializer() -> None:
    if not EXT.is_dir():
        pytest.skip("the Cython sources are not in this tree (an installed wheel)")
    for path in sorted(EXT.glob("*.p[yx]*")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            words = line.split()
            if words[:1] in (["import"], ["from"], ["cimport"]) and len(words) > 1:
                assert words[1].split(".")[0] not in FORBIDDEN_MODULES, f"{path.name}:{number}"


def test_core_objects_refuse_to_be_pickled() -> None:
    record = _core.decode_record(
        _core.encode_record(_core.KIND_STEP, 0, 1, "s", None, None, b"null", True, None, None)
    )
    for obj in (record, _core.ReplayIndex()):
        with pytest.raises(TypeError):
            pickle.dumps(obj)


class _Trap:
    """Unpickling this creates ``marker``: proof that a pickle was loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


async def test_a_pickle_planted_in_the_store_is_never_loaded(tmp_path: Path) -> None:
    @workflow
    async def stepped(ctx: WorkflowContext) -> int:
        return int(await ctx.step("s", lambda: 1))

    store, marker = tmp_path / "store", tmp_path / "pwned"
    async with Engine(store) as engine:
        handle = await engine.start(stepped)
        await handle.result()
    planted = pickle.dumps(_Trap(marker))
    rewrite_record(store, handle.run_id, 0, lambda record: with_body(record, planted))
    async with Engine(store) as engine:
        with pytest.raises(ValueError):  # not JSON: refused, not executed
            await engine.journal(handle.run_id)
    assert not marker.exists()


# ---------------------------------------------------------------- the HTTP surface


def test_tokens_grant_their_scope_only() -> None:
    both = Access(token="act-token", read_token="read-token")
    assert both.scope("Bearer act-token") == ACT
    assert both.scope("bearer  read-token ") == READ
    for refused in (None, "", "Bearer", "Bearer act-tokeN", "Basic act-token", "act-token"):
        assert both.scope(refused) is None, refused
    assert Access().scope(None) == ACT  # no token configured: loopback only, by the CLI
    assert Access(read_token="r").scope("Bearer r") == READ


def test_a_loopback_server_answers_loopback_host_names_only() -> None:
    local = Access(host="127.0.0.1")
    for name in ("localhost", "localhost:8000", "127.0.0.1:1", "[::1]:8000", "[::1]", "LOCALHOST"):
        assert local.host_allowed(name), name
    for name in (None, "attacker.example", "attacker.example:8000", "127.0.0.1.nip.io"):
        assert not local.host_allowed(name), name
    assert Access(host="0.0.0.0", token="t").host_allowed("anything.example")


def test_every_answer_carries_the_security_headers(tmp_path: Path) -> None:
    server = Served(str(tmp_path / "store"), "--token", "tok")
    auth = {"Authorization": "Bearer tok"}
    try:
        run = httpx.post(
            server.base + "/api/runs?wait=30",
            json={"workflow": "add", "args": [1, 2]},
            headers={**auth, "Content-Type": "application/json"},
            timeout=60,
        ).json()["run_id"]
        answers = [
            httpx.get(server.base + "/"),
            httpx.get(server.base + "/static/app.js"),
            httpx.get(server.base + "/static/missing.js"),
            httpx.get(server.base + "/api/runs", headers=auth),
            httpx.get(server.base + "/api/runs"),  # 401
            httpx.get(server.base + "/api/runs", headers={"Host": "evil.example"}),  # 403
            httpx.delete(server.base + "/api/runs", headers=auth),  # 405
            httpx.get(f"{server.base}/api/runs/{run}/stream", headers=auth, timeout=30),
            httpx.post(server.base + "/webhooks/add", content=b"{}"),  # 404
        ]
        assert [a.status_code for a in answers] == [200, 200, 404, 200, 401, 403, 405, 200, 404]
        for answer in answers:
            for name, value in SECURITY_HEADERS.items():
                assert answer.headers[name] == value, (answer.url, name)
            assert "server" not in answer.headers  # no version banner
    finally:
        assert server.close() == 0
