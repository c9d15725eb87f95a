"""The README's HTTP examples, run as written against ``surestep serve`` of the README's
own ``hello.py``: the ``curl`` block with bash, the client block with Python. The one
change: the address, where the server listens here."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from support.http_server import Served, surestep_command

README = Path(__file__).resolve().parent.parent / "README.md"
ADDRESS = "http://127.0.0.1:8000"


def block(after: str, language: str) -> str:
    """The first ``language`` code block after the line holding ``after``."""
    text = README.read_text()
    start = text.index(after)
    found = re.search(rf"```{language}\n(.*?)```", text[start:], re.S)
    assert found, f"no {language} block after {after!r} in the README"
    return found.group(1)


@pytest.fixture
def hello(tmp_path: Path) -> Served:
    source = block("## HTTP API", "python")
    assert source.startswith("# hello.py")
    (tmp_path / "hello.py").write_text(source)
    command = [*surestep_command(), "--store", str(tmp_path / "store"), "serve"]
    return Served("", argv=[*command, str(tmp_path / "hello.py"), "--port", "0"])


def test_the_curl_examples(hello: Served) -> None:
    script = block("With `surestep serve hello.py` running:", "sh")
    assert script.count("curl ") == 7
    try:
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script.replace(ADDRESS, hello.base)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        assert hello.close() == 0
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    first = json.loads(out[0])
    assert (first["status"], first["result"]) == ("completed", "hello ada")
    status = json.loads(out[1])
    assert (status["workflow"], status["kwargs"]) == ("approve", {"order": "o-7"})
    waiting = json.loads(out[2])
    assert waiting["finished"] is False
    assert json.loads(out[3]) == {"sent": True, "name": "approved"}
    events = [line.removeprefix("event: ") for line in out if line.startswith("event: ")]
    assert events[-1] == "end"
    assert sum(e == "step" for e in events) == 2  # notify, then the event
    ended = [line for line in out if line.startswith("data: ")][-1]
    assert json.loads(ended.removeprefix("data: "))["result"] == {"order": "o-7", "by": "ada"}
    listed = json.loads(out[-1])["runs"]
    assert [run["kwargs"] for run in listed] == [{"order": "o-7"}]


def test_the_client_example(hello: Served) -> None:
    code = block("**Clients.**", "python").replace(ADDRESS, hello.base)
    try:
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
        )
    finally:
        assert hello.close() == 0
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].startswith("end {")
