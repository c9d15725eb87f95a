"""Retention: how long a finished run stays in the store, and the purge that removes it.

A policy is a duration (seconds, a ``timedelta``, or text such as ``"90s"``,
``"12h"``, ``"7d"``, ``"2w"``) or ``"forever"``. It is fixed when a run finishes:
the workflow's own (``@workflow(retention=...)``), else the engine's
(``Engine(retention=...)``), else the store's default, which is decided when a
purge runs: the purging engine's ``retention`` when given, else
:data:`DEFAULT_RETENTION` for a store made by this release, else forever for a
store made by surestep 0.2 (its history is kept until retention is configured).

A purge hides a run whose time is up (with every run it started) in one small
transaction, leaving a tombstone, and then deletes its journal, logs and events
in bounded batches: a huge journal never needs a huge transaction, and a purge
cut short leaves no half-removed run visible.
"""

from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from .errors import ConfigurationError, StoreError
from .store.base import KEEP_DEFAULT, KEEP_FOREVER, Store

log = logging.getLogger("surestep.retention")

# Seven days: as long as a week-long incident takes to look into, and bounded: 2,000 runs
# of ten steps use ~5 MB, so even a service at full speed stays within a disk's reach.
DEFAULT_RETENTION = 7 * 24 * 3600.0
FOREVER = "forever"
# What one purge transaction takes at most: runs hidden, records deleted. Small enough
# that the writer's next group commit is never held up for long.
HIDE_BATCH = 64
SWEEP_BATCH = 512
PURGE_INTERVAL = 60.0

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")


def parse_duration(value: Any, what: str = "retention") -> float:
    """Seconds, from a number of seconds, a ``timedelta`` or text like ``"12h"``;
    ``ConfigurationError`` for anything else (negative, NaN, unknown unit)."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value.lower())):
        seconds = float(match[1]) * _UNITS[match[2] or "s"]
    else:
        raise ConfigurationError(
            f"{what} must be a duration: seconds, a timedelta, or text such as '90s', "
            f"'12h', '7d' or '2w'; not {value!r}"
        )
    if not math.isfinite(seconds) or seconds < 0:
        raise ConfigurationError(f"{what} must be a finite duration >= 0, not {value!r}")
    return seconds


def parse_retention(value: Any) -> int | None:
    """A policy as the store keeps it: milliseconds, :data:`KEEP_FOREVER` for
    ``"forever"``, ``None`` for ``None`` (not set: the next policy down applies)."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lower() == FOREVER:
        return KEEP_FOREVER
    return round(parse_duration(value) * 1000)


def describe_retention(keep: int | None) -> str:
    """A policy as people read it: ``"7d"``, ``"90m"``, ``"forever"``, ``"default"``."""
    if keep is None or keep == KEEP_DEFAULT:
        return "default"
    if keep == KEEP_FOREVER:
        return FOREVER
    if keep == 0:
        return "0s"
    for unit in ("d", "h", "m", "s"):
        size = round(_UNITS[unit] * 1000)
        if keep >= size and keep % size == 0:
            return f"{keep // size}{unit}"
    return f"{keep}ms"


@dataclass
class PurgeReport:
    """What a purge removed (or, for a dry run, would remove): ``runs`` described (left
    empty by a purge that was told not to describe them), ``removed`` counted."""

    dry_run: bool
    runs: list[dict[str, Any]] = field(default_factory=list)
    records: int = 0
    removed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "runs": self.runs, "records": self.records}


async def purge(
    store: Store,
    default_ms: int,
    older_than: float | None = None,
    dry_run: bool = False,
    limit: int | None = None,
    describe: bool = True,
) -> PurgeReport:
    """Remove the finished runs whose retention ran out (``older_than`` seconds given:
    every finished run that finished longer ago than that, whatever its policy), in
    bounded transactions that ride the store's ordinary writes; at most ``limit``
    top-level runs when given. ``dry_run``: only say what would go. ``describe=False``
    only counts the runs removed: what the background purge needs, whose memory then
    stays the same however many runs a round removes."""
    now = time.time()
    cutoff = None if older_than is None else now - older_than
    report = PurgeReport(dry_run=dry_run)
    if dry_run:
        report.runs = await store.expired_runs(now, default_ms, cutoff, limit)
        report.removed = len(report.runs)
        return report
    while limit is None or report.removed < limit:
        batch = HIDE_BATCH if limit is None else min(HIDE_BATCH, limit - report.removed)
        hidden = await store.hide_expired(now, default_ms, cutoff, batch)
        if describe:
            report.runs += hidden
        report.removed += len(hidden)
        if len({r["root"] for r in hidden}) < batch:
            break
    report.records = await sweep(store)
    return report


async def sweep(store: Store) -> int:
    """Delete the records of hidden runs, a bounded batch a transaction; how many."""
    import asyncio  # here, not at the top: the CLI reads policies without the runtime

    total = 0
    while True:
        records, cleared = await store.sweep_hidden(SWEEP_BATCH)
        total += records
        if not records and not cleared:
            return total
        await asyncio.sleep(0)  # a turn for the event loop between two batches


class Purger:
    """An executing engine's gentle background purge: every ``interval`` seconds, the
    runs whose time is up, a bounded batch a transaction."""

    def __init__(self, store: Store, default_ms: int, interval: float) -> None:
        self.store = store
        self.default_ms = default_ms
        self.interval = interval

    async def run(self) -> None:
        import asyncio

        while True:
            await asyncio.sleep(self.interval)
            try:
                report = await purge(self.store, self.default_ms, describe=False)
            except StoreError:
                log.exception("purging finished runs failed; trying again later")
                continue
            if report.removed:
                log.info(
                    "purged %d finished runs (%d records) from %s",
                    report.removed,
                    report.records,
                    self.store.url,
                )
