"""The HTTP API of waiting for a person: the runs waiting for one, the question, and the
answer (``POST /api/runs/{id}/answer``), through ``surestep serve`` on both stores."""

from __future__ import annotations

import time
from typing import Any

import httpx

from test_http import JSON, start


def test_a_question_is_listed_shown_and_answered_over_http(served: Any) -> None:
    base = served.base
    run_id = start(base, {"workflow": "pick_size", "args": ["o-5"]}).json()["run_id"]
    deadline = time.monotonic() + 60
    while True:
        listed = httpx.get(base + "/api/runs", params={"waiting_for": "person"}).json()["runs"]
        if listed:
            break
        assert time.monotonic() < deadline, "the run never waited for a person"
        time.sleep(0.05)
    assert [run["run_id"] for run in listed] == [run_id]
    run = httpx.get(f"{base}/api/runs/{run_id}").json()
    assert run["waits_for"] == "person"
    assert run["status_text"] == "waiting: a person: Which size for o-5?"
    assert run["question"]["options"] == [{"id": "s", "label": "s"}, {"id": "m", "label": "m"}]
    assert httpx.get(base + "/api/runs", params={"waiting_for": "godot"}).status_code == 400

    answer = f"{base}/api/runs/{run_id}/answer"
    refused = httpx.post(answer, json={"answer": "xl"}, headers=JSON)
    assert refused.status_code == 400
    assert refused.json()["type"] == "AnswerError" and "'xl'" in refused.json()["error"]
    assert httpx.post(answer, json={"size": "m"}, headers=JSON).status_code == 400
    assert httpx.get(f"{base}/api/runs/{run_id}").json()["status"] == "waiting"  # nothing sent

    answered = httpx.post(answer, json={"answer": "m"}, headers=JSON)
    assert answered.status_code == 200 and answered.json()["answered"] is True
    done = httpx.get(f"{base}/api/runs/{run_id}/result", params={"timeout": 60}, timeout=90)
    assert done.json()["result"] == {"order": "o-5", "size": "m"}
    again = httpx.post(answer, json={"answer": "s"}, headers=JSON)
    assert again.status_code == 400 and "waits for no person" in again.json()["error"]
