"""Webhooks: signed deliveries to ``surestep serve`` start one run each, on both backends;
bad signatures, stale timestamps, oversized and non-JSON bodies start nothing."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import orjson
import pytest

from support.http_server import Served
from surestep import ConfigurationError, WorkflowContext, workflow
from surestep.web.webhooks import TOLERANCE, problem, sign

SECRET = "whsec-test-0123456789"  # as tests/support/http_flows.py declares it


def deliver(
    base: str,
    body: bytes,
    *,
    secret: str = SECRET,
    at: float | None = None,
    delivery: str | None = None,
    name: str = "paid",
) -> httpx.Response:
    headers = {"Content-Type": "application/json", **sign(secret, int(at or time.time()), body)}
    if delivery is not None:
        headers["X-Surestep-Delivery"] = delivery
    return httpx.post(f"{base}/webhooks/{name}", content=body, headers=headers, timeout=60)


def runs(base: str) -> list[dict[str, object]]:
    listed: list[dict[str, object]] = httpx.get(base + "/api/runs").json()["runs"]
    return listed


def test_a_signed_delivery_starts_one_run_per_delivery_id(served: Served) -> None:
    body = orjson.dumps({"order": "o-1", "amount": 1200})
    first = deliver(served.base, body, delivery="evt_1")
    assert first.status_code == 202, first.text
    run_id = first.json()["run_id"]
    again = deliver(served.base, body, delivery="evt_1")  # the provider retries
    assert (again.status_code, again.json()["run_id"]) == (202, run_id)
    result = httpx.get(f"{served.base}/api/runs/{run_id}/result", params={"timeout": 60})
    assert result.json()["result"] == {"order": "o-1", "amount": 1200}
    user = deliver(served.base, orjson.dumps({"order": "o-9", "amount": 1, "user_id": "u-7"}))
    assert user.status_code == 202  # names the run's user
    status = httpx.get(f"{served.base}/api/runs/{user.json()['run_id']}").json()
    assert (status["user_id"], status["kwargs"]) == ("u-7", {"order": "o-9", "amount": 1})
    keyed = deliver(served.base, orjson.dumps({"order": "o", "amount": 1, "idempotency_key": "k"}))
    assert keyed.status_code == 422
    other = deliver(served.base, body, delivery="evt_2")
    assert other.json()["run_id"] != run_id
    assert len(runs(served.base)) == 3


def test_bad_deliveries_start_nothing(served: Served) -> None:
    body = orjson.dumps({"order": "o-2", "amount": 5})
    base = served.base
    assert deliver(base, body, secret="another-secret").status_code == 401
    stale = deliver(base, body, at=time.time() - TOLERANCE - 60)
    assert stale.status_code == 401 and "signature" in stale.json()["error"]
    assert deliver(base, body, at=time.time() + TOLERANCE + 60).status_code == 401
    unsigned = httpx.post(f"{base}/webhooks/paid", content=body)
    assert unsigned.status_code == 401
    tampered = sign(SECRET, int(time.time()), body)
    assert (
        httpx.post(f"{base}/webhooks/paid", content=body + b" ", headers=tampered).status_code
        == 401
    )
    assert deliver(base, b"{not json").status_code == 400
    assert deliver(base, b"[1, 2]").status_code == 400
    assert deliver(base, b'{"order": "o-3"}').status_code == 422  # no amount
    huge = b'{"order": "' + b"x" * (1024 * 1024) + b'", "amount": 1}'
    assert deliver(base, huge).status_code == 413
    assert deliver(base, body, name="add").status_code == 404  # not a webhook workflow
    assert deliver(base, body, name="missing").status_code == 404
    assert runs(base) == []
    assert served.close() == 0
    # The answer says only that the check failed; the log says why.
    assert served.errors.count("the signature does not match") == 2
    assert served.errors.count("from this server's clock") == 2
    assert "no x-surestep-timestamp header" in served.errors


def test_signatures_rotate_and_reasons_are_named() -> None:
    body, now = b'{"a": 1}', time.time()
    headers = sign("new-secret", int(now), body)
    old = sign("old-secret", int(now), body)["X-Surestep-Signature"]
    both = {
        "x-surestep-timestamp": headers["X-Surestep-Timestamp"],
        "x-surestep-signature": f"{old}, {headers['X-Surestep-Signature']}",
    }
    assert problem("new-secret", both, body, now) is None
    assert problem("old-secret", both, body, now) is None
    assert problem("third", both, body, now) == "the signature does not match"
    assert "more than" in (problem("new-secret", both, body, now + TOLERANCE + 1) or "")
    assert "no x-surestep-timestamp" in (problem("new-secret", {}, body, now) or "")
    no_v1 = {"x-surestep-timestamp": str(int(now)), "x-surestep-signature": "sha256=00"}
    assert "no v1=" in (problem("new-secret", no_v1, body, now) or "")


def test_webhook_options_are_checked() -> None:
    async def target(ctx: WorkflowContext) -> None: ...

    with pytest.raises(ConfigurationError, match="needs webhook_secret"):
        workflow(webhook=True)(target)
    with pytest.raises(ConfigurationError, match="goes with webhook=True"):
        workflow(webhook_secret="s")(target)
    with pytest.raises(ConfigurationError, match="non-empty"):
        workflow(webhook=True, webhook_secret="")(target)


def test_webhooks_need_no_token(tmp_path: Path) -> None:
    server = Served(str(tmp_path / "store"), "--token", "api-token")
    try:
        body = orjson.dumps({"order": "o-4", "amount": 7})
        started = deliver(server.base, body, delivery="evt_9")
        assert started.status_code == 202
        assert httpx.get(server.base + "/api/runs").status_code == 401  # the rest needs it
        # A host name other than localhost reaches the webhooks only (a tunnel, a proxy).
        foreign = {"Host": "hooks.example.com"}
        assert httpx.get(server.base + "/api/runs", headers=foreign).status_code == 403
        hooked = httpx.post(
            f"{server.base}/webhooks/paid",
            content=body,
            headers={**foreign, **sign(SECRET, int(time.time()), body)},
        )
        assert hooked.status_code == 202
    finally:
        assert server.close() == 0
