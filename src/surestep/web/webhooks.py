"""Webhooks: signed POSTs to ``/webhooks/<workflow>`` that start a run of the workflow.

A workflow declared ``@workflow(webhook=True, webhook_secret=SECRET)`` takes
deliveries with these headers::

    X-Surestep-Timestamp: 1767225600            when it was signed (Unix seconds)
    X-Surestep-Signature: v1=<hex>              HMAC-SHA256(SECRET, "<timestamp>." + raw body);
                                                several v1= (comma-separated) while a
                                                secret is rotated: any one may match
    X-Surestep-Delivery:  <id>                  optional: the provider's delivery id

A delivery is refused (401) when its signature does not match (compared in
constant time) or its timestamp is more than :data:`TOLERANCE` seconds away
from this server's clock, so that a captured delivery cannot be replayed
later. The delivery id is the run's idempotency key: a provider that sends a
delivery again gets the run the first one started. The body, a JSON object,
is the workflow's keyword arguments.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

TIMESTAMP = "x-surestep-timestamp"
SIGNATURE = "x-surestep-signature"
DELIVERY = "x-surestep-delivery"
#: How far a delivery's timestamp may be from this server's clock, in seconds.
TOLERANCE = 300.0


def signature(secret: str, timestamp: int | str, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``body`` signed at ``timestamp`` (what follows ``v1=``)."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The headers that sign ``body`` at ``timestamp``: for senders, and for tests."""
    return {
        "X-Surestep-Timestamp": str(timestamp),
        "X-Surestep-Signature": f"v1={signature(secret, timestamp, body)}",
    }


def problem(secret: str, headers: Mapping[str, str], body: bytes, now: float) -> str | None:
    """Why the delivery must be refused, or ``None`` when it is signed and fresh."""
    stamp = headers.get(TIMESTAMP, "")
    if not stamp.isdigit():
        return f"no {TIMESTAMP} header of Unix seconds"
    if abs(now - int(stamp)) > TOLERANCE:
        return f"timestamp {stamp} is more than {TOLERANCE:g} s from this server's clock"
    given = [
        part.strip()[3:]
        for part in headers.get(SIGNATURE, "").split(",")
        if part.strip().startswith("v1=")
    ]
    if not given:
        return f"no v1= signature in {SIGNATURE}"
    expected = signature(secret, stamp, body).encode()
    matched = False
    for candidate in given:  # every candidate compared, in constant time
        matched |= hmac.compare_digest(candidate.encode(), expected)
    return None if matched else "the signature does not match"
