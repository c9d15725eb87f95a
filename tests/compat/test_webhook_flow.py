"""The webhook-triggered porting program, delivered to ``surestep serve``: a signed POST
starts it and it runs to completion; with the server SIGKILLed between two steps, the
server started again resumes it, and a redelivery of the same event starts nothing new."""

from __future__ import annotations

import json
import selectors
import signal
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from scenarios import PROGRAMS

from support.http_server import Served, surestep_command
from surestep.web.webhooks import sign

PROGRAM = PROGRAMS / "payment_webhook.py"
SECRET = "whsec-compat-0123456789"  # the program's default
BODY = json.dumps({"order_id": "o-42", "amount_cents": 1999, "status": "succeeded"}).encode()
EXPECT = {
    "order_id": "o-42",
    "status": "shipped",
    "receipt": "receipt-o-42",
    "tracking": "trk-o-42",
}


def serve(store: str) -> Served:
    return Served(
        store, argv=[*surestep_command(), "--store", store, "serve", str(PROGRAM), "--port", "0"]
    )


def deliver(base: str, delivery: str) -> str:
    headers = {"Content-Type": "application/json", "X-Surestep-Delivery": delivery}
    headers.update(sign(SECRET, int(time.time()), BODY))
    answer = httpx.post(f"{base}/webhooks/on_payment", content=BODY, headers=headers, timeout=60)
    assert answer.status_code == 202, answer.text
    run_id: str = answer.json()["run_id"]
    return run_id


def result(base: str, run_id: str) -> object:
    answer = httpx.get(f"{base}/api/runs/{run_id}/result", params={"timeout": 60}, timeout=90)
    assert answer.json()["status"] == "completed", answer.text
    return answer.json()["result"]


def effects(ledger: Path) -> Counter[tuple[str, str]]:
    lines = [json.loads(line) for line in ledger.read_text().splitlines()]
    return Counter((line["kind"], line["key"]) for line in lines)


@pytest.fixture
def world_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    ledger = tmp_path / "ledger.jsonl"
    monkeypatch.setenv("COMPAT_LEDGER", str(ledger))
    monkeypatch.setenv("PYTHONPATH", str(PROGRAMS))  # the program imports world.py
    monkeypatch.delenv("COMPAT_PAUSE_AT", raising=False)
    return ledger


def test_a_signed_delivery_runs_the_flow_to_completion(tmp_path: Path, world_env: Path) -> None:
    server = serve(str(tmp_path / "store"))
    try:
        run_id = deliver(server.base, "evt_1")
        assert result(server.base, run_id) == EXPECT
        assert deliver(server.base, "evt_1") == run_id  # the provider retries: same run
    finally:
        assert server.close() == 0
    assert effects(world_env) == Counter({("paid", "o-42"): 1, ("ship", "o-42"): 1})


@pytest.mark.slow
def test_the_server_killed_between_two_steps_resumes_the_flow_once(
    tmp_path: Path, world_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = str(tmp_path / "store")
    monkeypatch.setenv("COMPAT_PAUSE_AT", "2")  # after mark_paid, before ship_order
    server = serve(store)
    run_id = deliver(server.base, "evt_9")
    assert server.proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(server.proc.stdout, selectors.EVENT_READ)
        assert selector.select(timeout=60), "the server never paused"
        assert server.proc.stdout.readline().startswith("paused ")
    server.proc.send_signal(signal.SIGKILL)
    assert server.proc.wait(timeout=30) == -signal.SIGKILL
    server.close()

    monkeypatch.delenv("COMPAT_PAUSE_AT")
    again = serve(store)  # resumes the unfinished runs of its workflows as it starts
    try:
        assert result(again.base, run_id) == EXPECT
        assert deliver(again.base, "evt_9") == run_id
    finally:
        assert again.close() == 0
    assert effects(world_env) == Counter({("paid", "o-42"): 1, ("ship", "o-42"): 1})
