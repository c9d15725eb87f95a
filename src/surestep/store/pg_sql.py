"""The PostgreSQL store's schema, its versioned migrations, and every statement the store
issues, as named templates. :mod:`surestep.store.postgres` keeps the semantics (which
statement when, in which transaction, what a refusal means).

Every template names the store's schema as ``{s}`` (the quoted schema name), filled in
once per store by :class:`Statements`.

Schema (in its own PostgreSQL schema, ``surestep`` unless configured):

``runs``            one row per run: the :class:`RunInfo` fields (arguments,
                    result and error as ``json``, which keeps the exact text:
                    ``jsonb`` would reorder keys and refuse ``\\u0000``), and
                    the lease: ``fence`` (bigint), ``owner``, ``lease_until``.
``journal``         ``(run_id, seq) -> record bytea``: one encoded record a
                    row, in the format the LMDB store keeps (format 2; rows
                    of format 1, from surestep 0.1, are read as they are).
``events``          events sent to runs and not yet taken (payload ``bytea``).
``state``           ``(scope, key) -> version, value bytea`` (``NULL`` once deleted).
``logs``            ``(run_id, position, idx) -> line bytea``.
``deployments``     every workflow version made current, in order.
``meta``            ``'store'`` -> what made the store (migration 3).
``retention``       ``run_id -> keep, finished_at``: every finished run's policy
                    (milliseconds, or KEEP_FOREVER / KEEP_DEFAULT) and finish time,
                    indexed by both, so that a purge reads each policy's due rows only.
``hidden``          purged runs whose records are still being deleted.
``schedules``       one row per scheduled workflow (:class:`ScheduleInfo`).
``subscriptions``   ``(event, workflow) -> version``: the event triggers.
``attempts``        ``(run_id, seq, attempt) -> body bytea``: a step's failed attempts
                    that were retried (the journal holds one record a step); the run's
                    ``retry`` column says which step is between attempts.
``engines``         the live engines and the versions each serves.
``progress``        ``run_id -> report bytea``: a run's last ``ctx.progress``.
``idempotency_keys`` ``key -> run_id``: the run each idempotency key created.
``schema_version``  the migrations applied (see :data:`MIGRATIONS`).
"""

from __future__ import annotations

from .base import CANCELLED, FINISHED, KEEP_DEFAULT, PENDING, RUNNING, WAITING

_FINISHED_SQL = ", ".join(f"'{s}'" for s in sorted(FINISHED))
UNFINISHED = f"status NOT IN ({_FINISHED_SQL})"
ACTIVE = f"status IN ('{PENDING}', '{RUNNING}')"
_R_UNFINISHED = f"r.{UNFINISHED}"
_R_ACTIVE = f"r.{ACTIVE}"
# a waiting run is claimable once due; any other unfinished run by its lease
_R_DUE = f"(r.status <> '{WAITING}' OR r.wake_at <= now())"


class Statements(dict[str, str]):
    """The templates of this module filled in for one schema, each formatted once."""

    def __init__(self, schema: str) -> None:
        super().__init__()
        self.schema = schema

    def __missing__(self, template: str) -> str:
        text = template.format(s=self.schema)
        self[template] = text
        return text


# -- schema migrations, applied in order under an advisory lock (``postgres._migrate``).
# Append new ones, never edit one that shipped. Those after 2 make what earlier releases
# of this code made where missing without a version: each is idempotent (``IF NOT
# EXISTS``), so a store that already has its tables takes its version and nothing else.

MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        f"""
        CREATE TABLE {{s}}.runs (
            run_id      text COLLATE "C" PRIMARY KEY,
            workflow    text NOT NULL,
            version     text NOT NULL,
            args        json NOT NULL,
            kwargs      json NOT NULL,
            status      text NOT NULL,
            session_id  text,
            user_id     text,
            created_at  timestamptz NOT NULL,
            updated_at  timestamptz NOT NULL,
            attempt     integer NOT NULL DEFAULT 0,
            result      json,
            error       json,
            parent_id   text COLLATE "C",
            wake_at     timestamptz,
            waiting_for text,
            owner       text COLLATE "C",
            lease_until timestamptz,
            fence       bigint NOT NULL DEFAULT 0
        ) WITH (fillfactor = 80);
        -- claims read only these, however many runs have finished
        CREATE INDEX runs_active ON {{s}}.runs (run_id) WHERE {ACTIVE};
        CREATE INDEX runs_timers ON {{s}}.runs (wake_at) WHERE status = '{WAITING}';
        -- the runs held right now, by owner (the dead-owner check on claims)
        CREATE INDEX runs_held ON {{s}}.runs (owner) WHERE owner IS NOT NULL AND {UNFINISHED};
        CREATE INDEX runs_by_status ON {{s}}.runs (status, run_id);
        CREATE INDEX runs_by_workflow ON {{s}}.runs (workflow, run_id);
        CREATE INDEX runs_by_parent ON {{s}}.runs (parent_id) WHERE parent_id IS NOT NULL;
        CREATE TABLE {{s}}.journal (
            run_id  text COLLATE "C" NOT NULL,
            seq     integer NOT NULL,
            record  bytea NOT NULL,
            PRIMARY KEY (run_id, seq)
        );
        CREATE TABLE {{s}}.events (
            id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            run_id   text COLLATE "C" NOT NULL,
            name     text NOT NULL,
            payload  bytea NOT NULL,
            sent_at  timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX events_by_run ON {{s}}.events (run_id, name, id);
        CREATE TABLE {{s}}.state (
            scope    text COLLATE "C" NOT NULL,
            key      text COLLATE "C" NOT NULL,
            version  bigint NOT NULL,
            value    bytea,
            PRIMARY KEY (scope, key)
        );
        CREATE TABLE {{s}}.deployments (
            id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            workflow  text NOT NULL,
            version   text NOT NULL,
            digest    text NOT NULL,
            time      timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE {{s}}.logs (
            run_id    text COLLATE "C" NOT NULL,
            position  integer NOT NULL,
            idx       integer NOT NULL,
            line      bytea NOT NULL,
            PRIMARY KEY (run_id, position, idx)
        );
        """,
    ),
    (
        2,
        """
        -- the run each idempotency key created: a start with a known key finds it here
        CREATE TABLE {s}.idempotency_keys (
            key     text COLLATE "C" PRIMARY KEY,
            run_id  text COLLATE "C" NOT NULL
        );
        """,
    ),
    (
        3,
        # Retention. What made the store is recorded once: a store that has runs by then
        # was made by surestep 0.2, and its finished runs are filed under the store's
        # default policy. Finished runs leave by batched deletes, not by dropping time
        # partitions: each run goes when its own policy says, a run waiting for months
        # sits among runs long gone, and every primary key keeps ``run_id`` first, the
        # column to distribute by on Citus.
        f"""
        CREATE TABLE IF NOT EXISTS {{s}}.meta (
            key    text COLLATE "C" PRIMARY KEY,
            value  json NOT NULL
        );
        CREATE TABLE IF NOT EXISTS {{s}}.retention (
            run_id       text COLLATE "C" PRIMARY KEY,
            keep         bigint NOT NULL,
            finished_at  timestamptz NOT NULL
        );
        CREATE TABLE IF NOT EXISTS {{s}}.hidden (run_id text COLLATE "C" PRIMARY KEY);
        ALTER TABLE {{s}}.deployments ADD COLUMN IF NOT EXISTS retention bigint;
        WITH made AS (
            INSERT INTO {{s}}.meta (key, value) SELECT 'store', json_build_object(
                'made_by', CASE WHEN EXISTS (SELECT 1 FROM {{s}}.runs)
                    THEN 'surestep 0.2' ELSE 'this release' END,
                'at', extract(epoch FROM now()))
            ON CONFLICT (key) DO NOTHING RETURNING 1)
        INSERT INTO {{s}}.retention (run_id, keep, finished_at)
            SELECT run_id, {KEEP_DEFAULT}, updated_at FROM {{s}}.runs
            WHERE status IN ({_FINISHED_SQL}) AND EXISTS (SELECT 1 FROM made);
        -- a purge reads each policy's oldest finished runs
        CREATE INDEX IF NOT EXISTS retention_due ON {{s}}.retention (keep, finished_at);
        """,
    ),
    (
        4,
        """
        -- a start that follows deployments reads its workflow's newest one: an index
        -- scan, not a scan of every deployment ever made
        CREATE INDEX IF NOT EXISTS deployments_by_workflow ON {s}.deployments (workflow, id);
        -- a purged run's idempotency key goes with it
        CREATE INDEX IF NOT EXISTS idempotency_keys_by_run ON {s}.idempotency_keys (run_id);
        """,
    ),
    (
        5,
        """
        -- the live engines and the versions they serve
        CREATE TABLE IF NOT EXISTS {s}.engines (
            owner        text COLLATE "C" PRIMARY KEY,
            served       jsonb NOT NULL,
            alive_until  timestamptz NOT NULL
        );
        -- a run's progress (ctx.progress), one row a run, apart from the runs' rows
        -- that claims and leases rewrite
        CREATE TABLE IF NOT EXISTS {s}.progress (
            run_id  text COLLATE "C" PRIMARY KEY,
            report  bytea NOT NULL
        );
        """,
    ),
    (
        6,
        """
        -- schedules, one row per scheduled workflow, and event subscriptions
        CREATE TABLE IF NOT EXISTS {s}.schedules (
            workflow    text COLLATE "C" PRIMARY KEY,
            version     text NOT NULL,
            cron        text,
            every       float8,
            timezone    text NOT NULL,
            catchup     text NOT NULL,
            paused      boolean NOT NULL,
            last_tick   float8,
            since       float8 NOT NULL,
            revision    bigint NOT NULL,
            updated_at  float8 NOT NULL
        );
        CREATE TABLE IF NOT EXISTS {s}.subscriptions (
            event     text COLLATE "C" NOT NULL,
            workflow  text COLLATE "C" NOT NULL,
            version   text NOT NULL,
            PRIMARY KEY (event, workflow)
        );
        """,
    ),
    (
        7,
        """
        -- durable retries: a step's failed attempts, and the run's step between attempts
        CREATE TABLE IF NOT EXISTS {s}.attempts (
            run_id   text COLLATE "C" NOT NULL,
            seq      integer NOT NULL,
            attempt  integer NOT NULL,
            body     bytea NOT NULL,
            PRIMARY KEY (run_id, seq, attempt)
        );
        ALTER TABLE {s}.runs ADD COLUMN IF NOT EXISTS retry json;
        """,
    ),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]

# -- migrating

MIGRATION_LOCK = "SELECT pg_advisory_xact_lock($1)"
SCHEMA_VERSION_NOW = "SELECT max(version) FROM {s}.schema_version"
SCHEMA_VERSION_TABLE = """
    CREATE SCHEMA IF NOT EXISTS {s};
    CREATE TABLE IF NOT EXISTS {s}.schema_version (
        version     integer PRIMARY KEY,
        applied_at  timestamptz NOT NULL DEFAULT now())"""
SCHEMA_VERSION_APPLIED = "SELECT coalesce(max(version), 0) FROM {s}.schema_version"
SCHEMA_VERSION_RECORD = "INSERT INTO {s}.schema_version (version) VALUES ($1)"

# -- runs

# The columns of a RunInfo, from a ``runs`` row aliased ``r`` (see postgres._run_of).
RUN_COLS = (
    "r.run_id, r.workflow, r.version, r.args, r.kwargs, r.status, r.session_id, r.user_id, "
    "extract(epoch FROM r.created_at)::float8, extract(epoch FROM r.updated_at)::float8, "
    "r.attempt, r.result, r.error, r.parent_id, extract(epoch FROM r.wake_at)::float8, "
    "r.waiting_for, r.owner, coalesce(extract(epoch FROM r.lease_until)::float8, 0), r.fence, "
    "r.retry"
)
AFTER_RUN_COLS = 20  # the index of a column selected after RUN_COLS

NOTIFY = "SELECT pg_notify($1, 'changed')"

# Insert a batch of runs (claimed for their owner where one is given), one row each.
# base.TRANSITIONS: create, none -> pending (no owner, or following a deployment of
# another version) and none -> running (claimed for its owner).
CREATE_RUNS = f"""
    WITH i AS (
        INSERT INTO {{s}}.runs AS r (run_id, workflow, version, args, kwargs, status,
            session_id, user_id, created_at, updated_at, attempt, result, error,
            parent_id, wake_at, waiting_for, owner, lease_until, fence)
        SELECT x.run_id, x.workflow, COALESCE(d.version, x.version), x.args::json,
            x.kwargs::json, CASE WHEN d.version IS NULL THEN x.status ELSE '{PENDING}' END,
            x.session_id, x.user_id, to_timestamp(x.created_at), now(),
            x.attempt - (d.version IS NOT NULL AND x.owner IS NOT NULL)::int,
            x.result::json, x.error::json, x.parent_id, to_timestamp(x.wake_at),
            x.waiting_for, CASE WHEN d.version IS NULL THEN x.owner END,
            CASE WHEN x.owner IS NULL OR d.version IS NOT NULL THEN NULL
                ELSE now() + make_interval(secs => x.lease_s) END,
            x.fence - (d.version IS NOT NULL AND x.owner IS NOT NULL)::int
        FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
            $6::text[], $7::text[], $8::text[], $9::float8[], $10::int[], $11::text[],
            $12::text[], $13::text[], $14::float8[], $15::text[], $16::text[],
            $17::float8[], $18::bigint[], $20::bool[])
            AS x(run_id, workflow, version, args, kwargs, status, session_id, user_id,
                created_at, attempt, result, error, parent_id, wake_at, waiting_for,
                owner, lease_s, fence, follow)
        -- follow_deployment: the workflow's last deployed version, when another
        LEFT JOIN LATERAL (
            SELECT dep.version FROM {{s}}.deployments dep
            WHERE x.follow AND dep.workflow = x.workflow ORDER BY dep.id DESC LIMIT 1
        ) d ON d.version <> x.version
        ON CONFLICT (run_id) DO NOTHING
        RETURNING {RUN_COLS})
    SELECT i.*, pg_notify($19, 'changed') FROM i"""

# base.TRANSITIONS: finish, running -> completed / failed. Finish a batch of runs, each
# if its fence matches, and file them for retention. Rows
# are locked in run_id order, as every multi-row statement here locks them.
FINISH_RUNS = """
    WITH x AS (
        SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[],
            $7::bigint[]) AS x(run_id, fence, status, result, error, keep)),
    held AS (
        SELECT r.run_id FROM {s}.runs r JOIN x ON r.run_id = x.run_id AND r.fence = x.fence
        ORDER BY r.run_id FOR NO KEY UPDATE OF r),
    u AS (
        UPDATE {s}.runs r SET status = x.status, result = x.result::json,
            error = x.error::json, owner = NULL, lease_until = NULL, updated_at = now()
        FROM x JOIN held ON held.run_id = x.run_id
        WHERE r.run_id = x.run_id AND r.fence = x.fence
        RETURNING r.run_id),
    k AS (
        INSERT INTO {s}.retention (run_id, keep, finished_at)
        SELECT u.run_id, x.keep, now() FROM u JOIN x ON x.run_id = u.run_id
        ON CONFLICT (run_id) DO UPDATE
            SET keep = EXCLUDED.keep, finished_at = EXCLUDED.finished_at)
    SELECT u.run_id, pg_notify($6, 'changed') FROM u"""

RUNS_EXISTING = "SELECT run_id FROM {s}.runs WHERE run_id = ANY($1::text[])"
RUN_FENCE = "SELECT r.fence FROM {s}.runs r WHERE r.run_id = $1"
RUN_STATUS_LOCKED = "SELECT status FROM {s}.runs WHERE run_id = $1 FOR NO KEY UPDATE"
RUN_FENCE_SHARE = "SELECT fence FROM {s}.runs WHERE run_id = $1 FOR SHARE"
RUN_FENCE_NO_KEY_UPDATE = "SELECT fence FROM {s}.runs WHERE run_id = $1 FOR NO KEY UPDATE"

# Owners on this host ($1 <= owner < $2) holding unexpired leases.
HOST_OWNERS = f"""
    SELECT DISTINCT r.owner FROM {{s}}.runs r
    WHERE r.owner IS NOT NULL AND {_R_UNFINISHED}
      AND r.owner >= $1 AND r.owner < $2 AND r.lease_until > now()"""

# The claim (base.TRANSITIONS: claim, pending / running / waiting -> running): $2 the
# owner, $3 the lease in seconds.
_TAKE = f"""
    fence = r.fence + 1, attempt = r.attempt + 1, owner = $2, status = '{RUNNING}',
    lease_until = now() + make_interval(secs => $3), updated_at = now(),
    wake_at = NULL, waiting_for = NULL"""
# The claim's conditions (base.claimable): unfinished, due, the lease free ($4: owners
# known dead).
_FREE = "(r.owner IS NULL OR r.lease_until <= now() OR r.owner = ANY($4::text[]))"
CLAIM = f"""
    UPDATE {{s}}.runs r SET {_TAKE}
    WHERE r.run_id = $1 AND {_R_UNFINISHED} AND {_R_DUE} AND {_FREE}
    RETURNING {RUN_COLS}"""
# The owner of a due, unfinished run whose lease has not run out.
CLAIM_HOLDER = f"""
    SELECT r.owner FROM {{s}}.runs r
    WHERE r.run_id = $1 AND {_R_UNFINISHED} AND {_R_DUE} AND r.lease_until > now()"""

# Claim up to $4 runs of the served (workflow, version) pairs ($1, $6), due timers
# first, then pending and abandoned runs; $5: owners known dead.
_FREE_5 = "(r.owner IS NULL OR r.lease_until <= now() OR r.owner = ANY($5::text[]))"
_SERVED = "(r.workflow, r.version) IN (SELECT * FROM unnest($1::text[], $6::text[]))"
_DUE_RUNS = f"""(SELECT r.run_id FROM {{s}}.runs r
    WHERE r.status = '{WAITING}' AND r.wake_at <= now() AND {_SERVED} AND {_FREE_5}
    ORDER BY r.wake_at LIMIT $4 FOR UPDATE SKIP LOCKED)"""
_ACTIVE_RUNS = f"""(SELECT r.run_id FROM {{s}}.runs r
    WHERE {_R_ACTIVE} AND {_SERVED} AND {_FREE_5}
    ORDER BY r.run_id LIMIT (SELECT $4 - count(*) FROM due) FOR UPDATE SKIP LOCKED)"""
CLAIM_DUE = f"""
    WITH picked AS {_DUE_RUNS}
    UPDATE {{s}}.runs r SET {_TAKE}
    FROM picked WHERE r.run_id = picked.run_id
    RETURNING {RUN_COLS}"""
CLAIM_AVAILABLE = f"""
    WITH due AS {_DUE_RUNS}, active AS {_ACTIVE_RUNS},
    picked AS (SELECT run_id FROM due UNION ALL SELECT run_id FROM active)
    UPDATE {{s}}.runs r SET {_TAKE}
    FROM picked WHERE r.run_id = picked.run_id
    RETURNING {RUN_COLS}"""

# base.TRANSITIONS: suspend and record_attempt, running -> waiting (the caller checked
# the fence, holding the row). Give the run back, waiting for $2 (an event name, or
# NULL) until $3 (epoch seconds, or NULL); due at once when the event is there already.
SUSPEND = f"""
    WITH i AS (
        UPDATE {{s}}.runs r SET status = '{WAITING}', owner = NULL,
            lease_until = NULL, updated_at = now(), waiting_for = $2::text,
            wake_at = CASE WHEN $2::text IS NOT NULL AND EXISTS (
                    SELECT 1 FROM {{s}}.events e
                    WHERE e.run_id = $1 AND e.name = $2::text)
                THEN now() ELSE to_timestamp($3::float8) END
        WHERE r.run_id = $1 RETURNING r.run_id)
    SELECT i.*, pg_notify($4, 'changed') FROM i"""

RECORD_ATTEMPT = """
    INSERT INTO {s}.attempts (run_id, seq, attempt, body) VALUES ($1, $2, $3, $4)
    ON CONFLICT (run_id, seq, attempt) DO UPDATE SET body = EXCLUDED.body"""
SET_RETRY = "UPDATE {s}.runs SET retry = $2::json WHERE run_id = $1"
CLEAR_RETRY = "UPDATE {s}.runs SET retry = NULL WHERE run_id = $1 AND (retry->>'seq')::integer = $2"

NEXT_WAKE = f"""
    SELECT extract(epoch FROM min(r.wake_at))::float8 FROM {{s}}.runs r
    WHERE r.status = '{WAITING}'
      AND (r.workflow, r.version) IN (SELECT * FROM unnest($1::text[], $2::text[]))"""

# Extend the leases ($1 runs, $2 fences) that $3 holds by $4 seconds; rows locked in
# run_id order, as the append batch locks them: no deadlock.
RENEW = f"""
    WITH held AS (
        SELECT r.run_id FROM {{s}}.runs r
        JOIN unnest($1::text[], $2::bigint[]) AS x(run_id, fence)
          ON r.run_id = x.run_id AND r.fence = x.fence
        WHERE r.owner = $3 AND {_R_UNFINISHED}
        ORDER BY r.run_id
        FOR NO KEY UPDATE OF r)
    UPDATE {{s}}.runs r SET lease_until = now() + make_interval(secs => $4)
    FROM held WHERE r.run_id = held.run_id
    RETURNING r.run_id"""

# base.TRANSITIONS: release, running -> pending. Give the run back unfinished ($1 run,
# $2 fence, $3 channel); a finished run stays finished (a release racing its own finish
# changes nothing).
RELEASE = f"""
    WITH i AS (
        UPDATE {{s}}.runs r SET owner = NULL, lease_until = NULL,
            status = CASE WHEN {_R_UNFINISHED} THEN '{PENDING}' ELSE r.status END
        WHERE r.run_id = $1 AND r.fence = $2 RETURNING r.run_id)
    SELECT i.*, pg_notify($3, 'changed') FROM i"""

# base.TRANSITIONS: cancel, pending / running / waiting -> cancelled, filed for retention.
CANCEL = f"""
    WITH c AS (
        UPDATE {{s}}.runs r SET status = '{CANCELLED}', fence = r.fence + 1,
            owner = NULL, lease_until = NULL, updated_at = now()
        WHERE r.run_id = $1 AND {_R_UNFINISHED} RETURNING r.run_id),
    k AS (
        INSERT INTO {{s}}.retention (run_id, keep, finished_at)
        SELECT c.run_id, $3, now() FROM c
        ON CONFLICT (run_id) DO UPDATE
            SET keep = EXCLUDED.keep, finished_at = EXCLUDED.finished_at)
    SELECT c.run_id, pg_notify($2, 'changed') FROM c"""

_WITH_PROGRESS = "LEFT JOIN {s}.progress p ON p.run_id = r.run_id"
GET_RUN = f"SELECT {RUN_COLS}, p.report FROM {{s}}.runs r {_WITH_PROGRESS} WHERE r.run_id = $1"
# LIST_RUNS, then " WHERE " and the LIST_RUNS_* filters given joined by " AND ", then
# LIST_RUNS_END; each fragment takes its parameter's number by ``%``.
LIST_RUNS = f"SELECT {RUN_COLS}, p.report FROM {{s}}.runs r {_WITH_PROGRESS}"
LIST_RUNS_BEFORE = "r.run_id < $%d"
LIST_RUNS_STATUS = "r.status = $%d"
LIST_RUNS_WORKFLOW = "r.workflow = $%d"
LIST_RUNS_END = " ORDER BY r.run_id DESC LIMIT $%d::bigint"

SET_PROGRESS = """
    INSERT INTO {s}.progress (run_id, report)
    SELECT r.run_id, $2 FROM {s}.runs r WHERE r.run_id = $1 AND r.fence = $3
    ON CONFLICT (run_id) DO UPDATE SET report = excluded.report RETURNING 1"""

# -- idempotency keys

TAKE_IDEMPOTENCY_KEY = """
    INSERT INTO {s}.idempotency_keys (key, run_id) VALUES ($1, $2)
    ON CONFLICT (key) DO NOTHING RETURNING run_id"""
RUN_OF_IDEMPOTENCY_KEY = f"""
    SELECT {RUN_COLS} FROM {{s}}.runs r JOIN {{s}}.idempotency_keys k ON k.run_id = r.run_id
    WHERE k.key = $1"""
IDEMPOTENCY_KEYS = """
    SELECT key, run_id FROM {s}.idempotency_keys
    WHERE key >= $1 AND left(key, length($1)) = $1 ORDER BY key"""

# -- live engines

ANNOUNCE = """
    INSERT INTO {s}.engines (owner, served, alive_until)
    VALUES ($1, $2::jsonb, now() + make_interval(secs => $3))
    ON CONFLICT (owner) DO UPDATE
    SET served = excluded.served, alive_until = excluded.alive_until"""
WITHDRAW = "DELETE FROM {s}.engines WHERE owner = $1"
LIVE_ENGINES = """
    SELECT owner, served::text, extract(epoch FROM alive_until)::float8
    FROM {s}.engines WHERE alive_until > now() ORDER BY owner"""

# -- deployments

RECORD_DEPLOYMENT = """
    INSERT INTO {s}.deployments (workflow, version, digest, retention) VALUES ($1, $2, $3, $4)"""
DEPLOYMENTS = """
    SELECT workflow, version, digest, extract(epoch FROM time)::float8, retention
    FROM {s}.deployments ORDER BY id"""
DEPLOYED_VERSION = """
    SELECT d.version FROM {s}.deployments d WHERE d.workflow = $1 ORDER BY d.id DESC LIMIT 1"""

# -- schedules and event triggers

# Registrations of one workflow ($1 names it with the schema) queue on this lock,
# present row or not.
REGISTRATION_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))"
SCHEDULE_COLS = (
    "workflow",
    "version",
    "cron",
    "every",
    "timezone",
    "catchup",
    "paused",
    "last_tick",
    "since",
    "revision",
    "updated_at",
)
_SCHEDULE_COLS = ", ".join(SCHEDULE_COLS)
SCHEDULE_LOCKED = f"SELECT {_SCHEDULE_COLS} FROM {{s}}.schedules WHERE workflow = $1 FOR UPDATE"
WRITE_SCHEDULE = (
    f"INSERT INTO {{s}}.schedules ({_SCHEDULE_COLS}) "
    f"VALUES ({', '.join(f'${i}' for i in range(1, len(SCHEDULE_COLS) + 1))}) "
    f"ON CONFLICT (workflow) DO UPDATE SET ({_SCHEDULE_COLS}) = "
    f"ROW({', '.join('EXCLUDED.' + c for c in SCHEDULE_COLS)})"
)
DELETE_SCHEDULE = "DELETE FROM {s}.schedules WHERE workflow = $1"
SCHEDULES = f"SELECT {_SCHEDULE_COLS} FROM {{s}}.schedules ORDER BY workflow"
SCHEDULE_TICKED = "UPDATE {s}.schedules SET last_tick = $2 WHERE workflow = $1"

SUBSCRIPTIONS_OF = "SELECT event, version FROM {s}.subscriptions WHERE workflow = $1 ORDER BY event"
DELETE_SUBSCRIPTIONS = "DELETE FROM {s}.subscriptions WHERE workflow = $1"
ADD_SUBSCRIPTION = "INSERT INTO {s}.subscriptions (event, workflow, version) VALUES ($1, $2, $3)"
SUBSCRIBED = (
    "SELECT workflow, version FROM {s}.subscriptions WHERE event = $1 ORDER BY workflow FOR SHARE"
)
SUBSCRIPTIONS = "SELECT event, workflow, version FROM {s}.subscriptions ORDER BY event, workflow"

# -- events

# Keep the event for the run, and make the run due if it waits for it (no transition:
# the claim of a due run is, see base.TRANSITIONS).
SEND_EVENT = f"""
    WITH sent AS (
        INSERT INTO {{s}}.events (run_id, name, payload) VALUES ($1, $2, $3)),
    woken AS (
        UPDATE {{s}}.runs r SET wake_at = now()
        WHERE r.run_id = $1 AND r.status = '{WAITING}' AND r.waiting_for = $2)
    SELECT pg_notify($4, 'changed')"""
TAKE_EVENT = """
    DELETE FROM {s}.events WHERE id = (
        SELECT id FROM {s}.events WHERE run_id = $1 AND name = $2
        ORDER BY id LIMIT 1 FOR UPDATE)
    RETURNING payload"""

# -- journal, logs, state

_NOT_HIDDEN = "NOT EXISTS (SELECT 1 FROM {s}.hidden h WHERE h.run_id = $1)"

# Append a batch of records ($1 runs, $2 sequence numbers, $3 records, $4 fences), each
# if its run's fence matches, locking those runs FOR SHARE in run_id order: a claim
# that bumps a fence waits for the batch, or the batch sees the new fence.
APPEND = """
    INSERT INTO {s}.journal (run_id, seq, record)
    SELECT x.run_id, x.seq, x.rec
    FROM unnest($1::text[], $2::int[], $3::bytea[], $4::bigint[])
        AS x(run_id, seq, rec, fence)
    JOIN {s}.runs r ON r.run_id = x.run_id AND r.fence = x.fence
    ORDER BY x.run_id
    FOR SHARE OF r
    ON CONFLICT (run_id, seq) DO UPDATE SET record = EXCLUDED.record
    RETURNING run_id, seq"""
# One record, in a transaction holding the run's row.
JOURNAL_ONE = """
    INSERT INTO {s}.journal (run_id, seq, record) VALUES ($1, $2, $3)
    ON CONFLICT (run_id, seq) DO UPDATE SET record = EXCLUDED.record"""
JOURNAL = f"SELECT record FROM {{s}}.journal WHERE run_id = $1 AND {_NOT_HIDDEN} ORDER BY seq"
ATTEMPTS = (
    f"SELECT body FROM {{s}}.attempts WHERE run_id = $1 AND {_NOT_HIDDEN} ORDER BY seq, attempt"
)

APPEND_LOG = """
    INSERT INTO {s}.logs (run_id, position, idx, line) VALUES ($1, $2, $3, $4)
    ON CONFLICT (run_id, position, idx) DO UPDATE SET line = EXCLUDED.line"""
LOGS = f"SELECT line FROM {{s}}.logs WHERE run_id = $1 AND {_NOT_HIDDEN} ORDER BY position, idx"

STATE_READ = "SELECT value, version FROM {s}.state WHERE scope = $1 AND key = $2"
# A version-0 row with no value is the same as no row; it gives concurrent writers of
# a new key one row to lock.
STATE_PLACEHOLDER = """
    INSERT INTO {s}.state (scope, key, version, value) VALUES ($1, $2, 0, NULL)
    ON CONFLICT (scope, key) DO NOTHING"""
STATE_VERSION_LOCKED = "SELECT version FROM {s}.state WHERE scope = $1 AND key = $2 FOR UPDATE"
STATE_WRITE = "UPDATE {s}.state SET version = $3, value = $4 WHERE scope = $1 AND key = $2"
STATE_ITEMS = "SELECT key, value FROM {s}.state WHERE scope = $1 AND value IS NOT NULL ORDER BY key"

# -- retention

MADE_BY = "SELECT value->>'made_by' FROM {s}.meta WHERE key = 'store'"
# The policies in use: a skip scan of the retention index, not a read of every row.
RETENTION_POLICIES = """
    WITH RECURSIVE p(keep) AS (
        SELECT min(keep) FROM {s}.retention
        UNION ALL
        SELECT (SELECT min(k.keep) FROM {s}.retention k WHERE k.keep > p.keep)
        FROM p WHERE p.keep IS NOT NULL)
    SELECT keep FROM p WHERE keep IS NOT NULL"""
# Finished runs of policy $1 finished by $2 (epoch seconds) whose parent is gone or
# absent, oldest first, at most $3.
DUE_ROOTS = """
    SELECT k.run_id FROM {s}.retention k JOIN {s}.runs r ON r.run_id = k.run_id
    WHERE k.keep = $1 AND k.finished_at <= to_timestamp($2)
        AND (r.parent_id IS NULL OR NOT EXISTS (
            SELECT 1 FROM {s}.runs p WHERE p.run_id = r.parent_id))
    ORDER BY k.finished_at LIMIT $3"""
# Run $1 and every run it started, recursively, with their retention.
RUN_TREE = """
    WITH RECURSIVE tree(run_id, depth) AS (
        SELECT run_id, 0 FROM {s}.runs WHERE run_id = $1
        UNION ALL
        SELECT c.run_id, t.depth + 1 FROM {s}.runs c JOIN tree t ON c.parent_id = t.run_id)
    SELECT t.run_id, t.depth, r.workflow, r.status,
        extract(epoch FROM r.updated_at)::float8, k.keep,
        extract(epoch FROM k.finished_at)::float8
    FROM tree t JOIN {s}.runs r ON r.run_id = t.run_id
    LEFT JOIN {s}.retention k ON k.run_id = t.run_id
    ORDER BY t.depth, t.run_id"""
# The root of a tree to purge, unless another purge holds it.
LOCK_ROOT = "SELECT 1 FROM {s}.runs WHERE run_id = $1 FOR UPDATE SKIP LOCKED"
POSTPONE_RETENTION = (
    "UPDATE {s}.retention SET keep = $2, finished_at = to_timestamp($3) WHERE run_id = $1"
)
# Hide the runs $1: every index of runs by id goes here with the row (their records go
# in SWEEP_HIDDEN).
HIDE_RUNS = """
    WITH t AS (SELECT unnest($1::text[]) AS run_id),
    r AS (DELETE FROM {s}.runs WHERE run_id IN (SELECT run_id FROM t)),
    k AS (DELETE FROM {s}.retention WHERE run_id IN (SELECT run_id FROM t)),
    p AS (DELETE FROM {s}.progress WHERE run_id IN (SELECT run_id FROM t)),
    i AS (DELETE FROM {s}.idempotency_keys WHERE run_id IN (SELECT run_id FROM t))
    INSERT INTO {s}.hidden (run_id) SELECT run_id FROM t
    ON CONFLICT (run_id) DO NOTHING"""
HIDDEN_RUNS = "SELECT run_id FROM {s}.hidden LIMIT $1"
# Up to $2 records of hidden run $1, one statement a table; the count deleted.
SWEEP_HIDDEN = tuple(
    f"""WITH d AS (DELETE FROM {{s}}.{table} WHERE (run_id, {key}) IN (
        SELECT run_id, {key} FROM {{s}}.{table} WHERE run_id = $1 LIMIT $2)
        RETURNING 1)
    SELECT count(*) FROM d"""
    for table, key in (
        ("journal", "seq"),
        ("logs", "position, idx"),
        ("events", "id"),
        ("attempts", "seq, attempt"),
    )
)
UNHIDE = "DELETE FROM {s}.hidden WHERE run_id = $1"

# -- stats

TABLE_SIZES = """
    SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = $1 AND c.relkind = 'r' ORDER BY c.relname"""
RUNS_BY_STATUS = "SELECT status, count(*) FROM {s}.runs GROUP BY status"
OLDEST_FINISHED = (
    "SELECT extract(epoch FROM min(updated_at))::float8 FROM {s}.runs "
    f"WHERE status IN ({_FINISHED_SQL})"
)
HIDDEN_COUNT = "SELECT count(*) FROM {s}.hidden"
