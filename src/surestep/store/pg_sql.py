"""The PostgreSQL store's schema, its versioned migrations, and every statement the store
issues, as named templates. :mod:`surestep.store.postgres` keeps the semantics (which
statement when, in which transaction, what a refusal means).

Every template names the store's schema as ``{s}`` (the quoted schema name), filled in
once per store by :class:`Statements`.

The statements keep to Citus's rules for tables distributed by run id (migration 9
distributes them when the ``citus`` extension is there), except the few of
:data:`PLAIN_FORMS`, issued on plain PostgreSQL instead of their Citus forms; each
says where a rule shaped it: no ``FOR UPDATE`` / ``FOR SHARE`` / ``SKIP
LOCKED`` over several runs' rows (a batch is one statement a run, sent as one
pipeline); a NOTIFY as a statement of its own (in a statement that touches one run,
it would run on the worker holding that run, unheard by the coordinator's
listeners); no non-immutable function in ``RETURNING`` or chosen by a ``CASE``
(times are returned as stored and converted by the client); no subquery in
``LIMIT``; no recursive CTE and no join of distributed tables on another column
than the one they are distributed by; every primary key holds that column.

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
    (
        8,
        # Every primary key holds the column its table is distributed by on Citus:
        # events by run_id (its id alone is unique too, from its identity).
        """
        ALTER TABLE {s}.events DROP CONSTRAINT IF EXISTS events_pkey;
        ALTER TABLE {s}.events ADD CONSTRAINT events_pkey PRIMARY KEY (run_id, id);
        """,
    ),
    (
        9,
        # On Citus (the extension present in this database, the coordinator): a run's rows
        # on one node, the tables distributed by run_id and co-located with runs; state by
        # its scope; idempotency keys by key; the small tables that every node reads,
        # reference tables. Without Citus, nothing.
        """
        DO $$
        DECLARE
            name text;
        BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
                RETURN;
            END IF;
            FOREACH name IN ARRAY ARRAY['schema_version', 'meta', 'deployments', 'engines',
                    'schedules', 'subscriptions'] LOOP
                IF NOT EXISTS (SELECT 1 FROM pg_dist_partition
                        WHERE logicalrelid = format('%s.%I', '{s}', name)::regclass) THEN
                    PERFORM create_reference_table(format('%s.%I', '{s}', name));
                END IF;
            END LOOP;
            FOREACH name IN ARRAY ARRAY['runs', 'journal', 'events', 'logs', 'attempts',
                    'progress', 'retention', 'hidden', 'idempotency_keys', 'state'] LOOP
                IF NOT EXISTS (SELECT 1 FROM pg_dist_partition
                        WHERE logicalrelid = format('%s.%I', '{s}', name)::regclass) THEN
                    PERFORM create_distributed_table(
                        format('%s.%I', '{s}', name),
                        CASE name WHEN 'state' THEN 'scope'
                            WHEN 'idempotency_keys' THEN 'key' ELSE 'run_id' END,
                        colocate_with => CASE WHEN name IN ('state', 'idempotency_keys')
                            THEN 'none' WHEN name = 'runs' THEN 'default'
                            ELSE format('%s.runs', '{s}') END);
                END IF;
            END LOOP;
        END
        $$;
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

# Whether this database is a Citus coordinator: the store then issues the statements
# below as Citus's rules shape them; on plain PostgreSQL, those of PLAIN_FORMS instead
# (a batch of several runs in one statement, measured two times faster there).
CITUS_PRESENT = "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')"

# Wake-ups. Citus: a NOTIFY inside a statement that touches one run runs on the worker
# holding that run's shard, where the coordinator's listeners never hear it; sent as a
# statement of its own (no distributed table), it runs where the client is connected.
NOTIFY = "SELECT pg_notify($1, 'changed')"

# -- runs

# The columns of a RunInfo, from a ``runs`` row aliased ``r`` (see postgres._run_of).
# Citus: times are returned as they are stored (timestamptz) and converted to epoch
# seconds by the client: no non-immutable function (extract) in RETURNING.
RUN_COLS = (
    "r.run_id, r.workflow, r.version, r.args, r.kwargs, r.status, r.session_id, r.user_id, "
    "r.created_at, r.updated_at, r.attempt, r.result, r.error, r.parent_id, r.wake_at, "
    "r.waiting_for, r.owner, r.lease_until, r.fence, r.retry"
)
AFTER_RUN_COLS = 20  # the index of a column selected after RUN_COLS

# Insert a batch of runs (claimed for their owner where one is given), one row each.
# base.TRANSITIONS: create, none -> pending (no owner, or following a deployment of
# another version) and none -> running (claimed for its owner). Citus: now() outside
# any CASE (a NULL lease time makes a NULL lease); the NOTIFY is the caller's.
CREATE_RUNS = f"""
    INSERT INTO {{s}}.runs AS r (run_id, workflow, version, args, kwargs, status,
        session_id, user_id, created_at, updated_at, attempt, result, error,
        parent_id, wake_at, waiting_for, owner, lease_until, fence)
    SELECT x.run_id, x.workflow, COALESCE(d.version, x.version), x.args::json,
        x.kwargs::json, CASE WHEN d.version IS NULL THEN x.status ELSE '{PENDING}' END,
        x.session_id, x.user_id, to_timestamp(x.created_at), now(),
        x.attempt - (d.version IS NOT NULL AND x.owner IS NOT NULL)::int,
        x.result::json, x.error::json, x.parent_id, to_timestamp(x.wake_at),
        x.waiting_for, CASE WHEN d.version IS NULL THEN x.owner END,
        now() + CASE WHEN x.owner IS NULL OR d.version IS NOT NULL THEN NULL
            ELSE x.lease_s END * interval '1 second',
        x.fence - (d.version IS NOT NULL AND x.owner IS NOT NULL)::int
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
        $6::text[], $7::text[], $8::text[], $9::float8[], $10::int[], $11::text[],
        $12::text[], $13::text[], $14::float8[], $15::text[], $16::text[],
        $17::float8[], $18::bigint[], $19::bool[])
        AS x(run_id, workflow, version, args, kwargs, status, session_id, user_id,
            created_at, attempt, result, error, parent_id, wake_at, waiting_for,
            owner, lease_s, fence, follow)
    -- follow_deployment: the workflow's last deployed version, when another
    LEFT JOIN LATERAL (
        SELECT dep.version FROM {{s}}.deployments dep
        WHERE x.follow AND dep.workflow = x.workflow ORDER BY dep.id DESC LIMIT 1
    ) d ON d.version <> x.version
    ON CONFLICT (run_id) DO NOTHING
    RETURNING {RUN_COLS}"""

# base.TRANSITIONS: finish, running -> completed / failed, if the fence ($2) matches and the
# run is running (else postgres._write_finishes tells a refusal from a write sent again); the
# run filed for retention. Citus: one run a statement (every row it touches is on that
# run's node), the batch sent as one pipeline in run_id order (postgres._fetch, many);
# on plain PostgreSQL, FINISH_RUNS.
FINISH_RUN = f"""
    WITH u AS (
        UPDATE {{s}}.runs r SET status = $3, result = $4::json, error = $5::json,
            owner = NULL, lease_until = NULL, updated_at = now()
        WHERE r.run_id = $1 AND r.fence = $2 AND r.status = '{RUNNING}'
        RETURNING r.run_id, r.updated_at)
    INSERT INTO {{s}}.retention (run_id, keep, finished_at)
    SELECT u.run_id, $6, u.updated_at FROM u
    ON CONFLICT (run_id) DO UPDATE
        SET keep = EXCLUDED.keep, finished_at = EXCLUDED.finished_at
    RETURNING run_id"""

RUNS_EXISTING = "SELECT run_id FROM {s}.runs WHERE run_id = ANY($1::text[])"
RUNS_OUTCOME = "SELECT run_id, status, fence FROM {s}.runs WHERE run_id = ANY($1::text[])"
RUN_FENCE = "SELECT r.fence FROM {s}.runs r WHERE r.run_id = $1"
# Citus: row locks only on one run's row (these are filtered by run_id).
RUN_STATUS_LOCKED = "SELECT status FROM {s}.runs WHERE run_id = $1 FOR NO KEY UPDATE"
RUN_FENCE_SHARE = "SELECT fence FROM {s}.runs WHERE run_id = $1 FOR SHARE"
RUN_FENCE_NO_KEY_UPDATE = "SELECT fence FROM {s}.runs WHERE run_id = $1 FOR NO KEY UPDATE"

# Owners on this host ($1 <= owner < $2) holding unexpired leases.
HOST_OWNERS = f"""
    SELECT DISTINCT r.owner FROM {{s}}.runs r
    WHERE r.owner IS NOT NULL AND {_R_UNFINISHED}
      AND r.owner >= $1 AND r.owner < $2 AND r.lease_until > now()"""

# The claim (base.TRANSITIONS: claim, pending / running / waiting -> running) of run $1
# for owner $2 with a lease of $3 seconds, when the claim's conditions hold (base.claimable:
# unfinished, due, the lease free; $4: owners known dead), checked again on the row as
# it is when the UPDATE takes it. Citus: one run a statement; claim_available sends one
# a candidate (postgres._fetch, many) instead of locking candidates with SKIP LOCKED (as
# CLAIM_AVAILABLE does on plain PostgreSQL).
CLAIM = f"""
    UPDATE {{s}}.runs r SET
        fence = r.fence + 1, attempt = r.attempt + 1, owner = $2, status = '{RUNNING}',
        lease_until = now() + make_interval(secs => $3), updated_at = now(),
        wake_at = NULL, waiting_for = NULL
    WHERE r.run_id = $1 AND {_R_UNFINISHED} AND {_R_DUE}
      AND (r.owner IS NULL OR r.lease_until <= now() OR r.owner = ANY($4::text[]))
    RETURNING {RUN_COLS}"""
# The owner of a due, unfinished run whose lease has not run out.
CLAIM_HOLDER = f"""
    SELECT r.owner FROM {{s}}.runs r
    WHERE r.run_id = $1 AND {_R_UNFINISHED} AND {_R_DUE} AND r.lease_until > now()"""

# Candidates for claim_available, read without locks: up to $3 runs of the served
# (workflow, version) pairs ($1, $2) whose lease is free ($4: owners known dead). Citus:
# two statements (due timers first, then pending and abandoned runs up to what is left)
# rather than a subquery in LIMIT.
_FREE = "(r.owner IS NULL OR r.lease_until <= now() OR r.owner = ANY($4::text[]))"
_SERVED = "(r.workflow, r.version) IN (SELECT * FROM unnest($1::text[], $2::text[]))"
DUE_CANDIDATES = f"""
    SELECT r.run_id FROM {{s}}.runs r
    WHERE r.status = '{WAITING}' AND r.wake_at <= now() AND {_SERVED} AND {_FREE}
    ORDER BY r.wake_at LIMIT $3"""
ACTIVE_CANDIDATES = f"""
    SELECT r.run_id FROM {{s}}.runs r
    WHERE {_R_ACTIVE} AND {_SERVED} AND {_FREE}
    ORDER BY r.run_id LIMIT $3"""

# base.TRANSITIONS: suspend and record_attempt, running -> waiting (the caller holds the
# row and checked the fence): waiting for $2 (an event name, or NULL) until $3 (epoch
# seconds, or NULL), or due at once (SUSPEND_DUE) when the event is there already
# (EVENT_WAITING). Citus: two statements, as now() may not be chosen by a CASE.
EVENT_WAITING = "SELECT 1 FROM {s}.events WHERE run_id = $1 AND name = $2 LIMIT 1"
_SUSPEND = f"""
    UPDATE {{s}}.runs r SET status = '{WAITING}', owner = NULL, lease_until = NULL,
        updated_at = now(), waiting_for = $2::text, wake_at = %s
    WHERE r.run_id = $1"""
SUSPEND = _SUSPEND % "to_timestamp($3::float8)"
SUSPEND_DUE = _SUSPEND % "now()"

RECORD_ATTEMPT = """
    INSERT INTO {s}.attempts (run_id, seq, attempt, body) VALUES ($1, $2, $3, $4)
    ON CONFLICT (run_id, seq, attempt) DO UPDATE SET body = EXCLUDED.body"""
SET_RETRY = "UPDATE {s}.runs SET retry = $2::json WHERE run_id = $1"
CLEAR_RETRY = "UPDATE {s}.runs SET retry = NULL WHERE run_id = $1 AND (retry->>'seq')::integer = $2"

NEXT_WAKE = f"""
    SELECT min(r.wake_at) FROM {{s}}.runs r
    WHERE r.status = '{WAITING}'
      AND (r.workflow, r.version) IN (SELECT * FROM unnest($1::text[], $2::text[]))"""

# Extend the lease of run $1 held by $3 with fence $2 by $4 seconds. Citus: one run a
# statement, the batch one pipeline in run_id order (no lock over several runs' rows).
RENEW = f"""
    UPDATE {{s}}.runs r SET lease_until = now() + make_interval(secs => $4)
    WHERE r.run_id = $1 AND r.fence = $2 AND r.owner = $3 AND {_R_UNFINISHED}
    RETURNING r.run_id"""

# base.TRANSITIONS: release, running -> pending, if the fence ($2) matches; a run not running
# stays as it is (a waiting run keeps its timer; a release racing its own finish changes
# nothing).
RELEASE = f"""
    UPDATE {{s}}.runs r SET owner = NULL, lease_until = NULL, status = '{PENDING}'
    WHERE r.run_id = $1 AND r.fence = $2 AND r.status = '{RUNNING}'
    RETURNING r.run_id"""

# base.TRANSITIONS: cancel, pending / running / waiting -> cancelled, filed for retention
# with policy $2. Citus: one run's rows (runs and retention are co-located).
CANCEL = f"""
    WITH c AS (
        UPDATE {{s}}.runs r SET status = '{CANCELLED}', fence = r.fence + 1,
            owner = NULL, lease_until = NULL, updated_at = now()
        WHERE r.run_id = $1 AND {_R_UNFINISHED} RETURNING r.run_id, r.updated_at)
    INSERT INTO {{s}}.retention (run_id, keep, finished_at)
    SELECT c.run_id, $2, c.updated_at FROM c
    ON CONFLICT (run_id) DO UPDATE
        SET keep = EXCLUDED.keep, finished_at = EXCLUDED.finished_at
    RETURNING run_id"""

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
# Citus: the keys are distributed by key, the runs by run_id: the run is read apart.
RUN_OF_IDEMPOTENCY_KEY = "SELECT run_id FROM {s}.idempotency_keys WHERE key = $1"
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
    SELECT owner, served::text, alive_until FROM {s}.engines
    WHERE alive_until > now() ORDER BY owner"""

# -- deployments

RECORD_DEPLOYMENT = """
    INSERT INTO {s}.deployments (workflow, version, digest, retention) VALUES ($1, $2, $3, $4)"""
DEPLOYMENTS = "SELECT workflow, version, digest, time, retention FROM {s}.deployments ORDER BY id"
DEPLOYED_VERSION = """
    SELECT d.version FROM {s}.deployments d WHERE d.workflow = $1 ORDER BY d.id DESC LIMIT 1"""

# -- schedules and event triggers (reference tables on Citus: their row locks are fine)

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

# Keep the event for run $1, and make the run due if it waits for it (no transition:
# the claim of a due run is, see base.TRANSITIONS). Citus: one run's rows; the NOTIFY
# is the caller's.
SEND_EVENT = f"""
    WITH sent AS (
        INSERT INTO {{s}}.events (run_id, name, payload) VALUES ($1, $2, $3))
    UPDATE {{s}}.runs r SET wake_at = now()
    WHERE r.run_id = $1 AND r.status = '{WAITING}' AND r.waiting_for = $2"""
# Citus: both the DELETE and its subquery filtered by run_id (one shard).
TAKE_EVENT = """
    DELETE FROM {s}.events WHERE run_id = $1 AND id = (
        SELECT id FROM {s}.events WHERE run_id = $1 AND name = $2
        ORDER BY id LIMIT 1 FOR UPDATE)
    RETURNING payload"""

# -- journal, logs, state

_NOT_HIDDEN = "NOT EXISTS (SELECT 1 FROM {s}.hidden h WHERE h.run_id = $1)"

# Append records ($3 sequence numbers, $4 records) to run $1 if its fence is $2, holding
# the run's row FOR SHARE: a claim that bumps the fence waits for the append, or the
# append sees the new fence. Citus: one run a statement (a row lock on one run only),
# a batch of appends one pipeline in run_id order (postgres._fetch, many); on plain
# PostgreSQL, APPEND_RUNS.
APPEND = """
    INSERT INTO {s}.journal (run_id, seq, record)
    SELECT r.run_id, x.seq, x.rec
    FROM {s}.runs r, unnest($3::int[], $4::bytea[]) AS x(seq, rec)
    WHERE r.run_id = $1 AND r.fence = $2
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
# The next policy in use after $1: called from the lowest up, a skip scan of the
# retention index. Citus: no recursive CTE.
NEXT_POLICY = "SELECT min(keep) FROM {s}.retention WHERE keep > $1"
# Finished runs of policy $1 finished by $2 (epoch seconds), oldest first, after
# ($4, $5) (finish time, run id), at most $3; with their parent. Citus: whether the
# parent is there is read apart (runs joined by parent_id are not co-located).
DUE_RUNS = """
    SELECT k.run_id, r.parent_id, k.finished_at FROM {s}.retention k
    JOIN {s}.runs r ON r.run_id = k.run_id
    WHERE k.keep = $1 AND k.finished_at <= to_timestamp($2)
        AND (k.finished_at, k.run_id) > ($4::timestamptz, $5::text)
    ORDER BY k.finished_at, k.run_id LIMIT $3"""
# The runs started by the runs $1, with their parent. Citus: the trees walked a level a
# statement, no recursive CTE.
CHILDREN = "SELECT run_id, parent_id FROM {s}.runs WHERE parent_id = ANY($1::text[])"
# The runs $1 as a purge describes them, with their retention.
PURGE_VIEW = """
    SELECT r.run_id, r.workflow, r.status, r.updated_at, k.keep, k.finished_at
    FROM {s}.runs r LEFT JOIN {s}.retention k ON k.run_id = r.run_id
    WHERE r.run_id = ANY($1::text[])"""
# The roots $1 take the policies $2 and finish times $3 (epoch seconds) of their
# descendants that may go last. Citus: one statement over the runs $1, each row's
# values found by its position.
POSTPONE_RETENTION = """
    UPDATE {s}.retention SET keep = ($2::bigint[])[array_position($1::text[], run_id)],
        finished_at = to_timestamp(($3::float8[])[array_position($1::text[], run_id)])
    WHERE run_id = ANY($1::text[])"""
# Hide the runs $1, those still finished and here: the condition re-checked by the
# DELETE takes the place of a lock (a run another purge hid meanwhile is not returned).
# Citus: a multi-row DELETE by = ANY, no row lock over several runs.
HIDE_RUNS = f"""
    DELETE FROM {{s}}.runs WHERE run_id = ANY($1::text[]) AND status IN ({_FINISHED_SQL})
    RETURNING run_id"""
# With HIDE_RUNS: every other row keyed by a run that a read checks goes, and the run is
# filed as hidden (its records go in SWEEP_HIDDEN). Citus: a statement a table.
HIDE_RECORDS = (
    *(
        f"DELETE FROM {{s}}.{table} WHERE run_id = ANY($1::text[])"
        for table in ("retention", "progress", "idempotency_keys")
    ),
    "INSERT INTO {s}.hidden (run_id) SELECT unnest($1::text[]) ON CONFLICT (run_id) DO NOTHING",
)
HIDDEN_RUNS = "SELECT run_id FROM {s}.hidden LIMIT $1"
_RECORDS = (
    ("journal", "seq"),
    ("logs", "position, idx"),
    ("events", "id"),
    ("attempts", "seq, attempt"),
)
# Up to $2 records of the hidden runs $1, a statement a table (the count is in its
# status).
SWEEP_HIDDEN = tuple(
    f"""DELETE FROM {{s}}.{table} WHERE run_id = ANY($1::text[]) AND (run_id, {key}) IN (
        SELECT run_id, {key} FROM {{s}}.{table} WHERE run_id = ANY($1::text[]) LIMIT $2)"""
    for table, key in _RECORDS
)
# The tombstones of the hidden runs $1 that have no record left. Citus: the tables
# joined on run_id (co-located).
UNHIDE_SWEPT = "DELETE FROM {s}.hidden h WHERE h.run_id = ANY($1::text[])" + "".join(
    f"\n    AND NOT EXISTS (SELECT 1 FROM {{s}}.{table} x WHERE x.run_id = h.run_id)"
    for table, _ in _RECORDS
)

# -- stats

TABLE_SIZES = """
    SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = $1 AND c.relkind = 'r' ORDER BY c.relname"""
# Counted on the runs_by_status index.
RUNS_BY_STATUS = "SELECT status, count(*) FROM {s}.runs GROUP BY status"
# The oldest finish time of policy $1: one end of a retention index range (called for each
# policy NEXT_POLICY finds), not a read of every finished run.
OLDEST_FINISHED = "SELECT min(finished_at) FROM {s}.retention WHERE keep = $1"
HIDDEN_COUNT = "SELECT count(*) FROM {s}.hidden"


# -- plain PostgreSQL's forms of the batched writes (no Citus: see CITUS_PRESENT)

# Where Citus's rules make a batch one statement a run, plain PostgreSQL takes the whole
# batch in one statement that locks the rows of its runs in run_id order (as every
# statement and pipeline here takes them: they cannot deadlock one another). Each
# takes as arrays the columns of what its Citus form takes a row at a time (APPEND_RUNS:
# a row a record).
APPEND_RUNS = """
    INSERT INTO {s}.journal (run_id, seq, record)
    SELECT x.run_id, x.seq, x.rec
    FROM unnest($1::text[], $2::bigint[], $3::int[], $4::bytea[]) AS x(run_id, fence, seq, rec)
    JOIN {s}.runs r ON r.run_id = x.run_id AND r.fence = x.fence
    ORDER BY x.run_id
    FOR SHARE OF r
    ON CONFLICT (run_id, seq) DO UPDATE SET record = EXCLUDED.record
    RETURNING run_id, seq"""
FINISH_RUNS = f"""
    WITH x AS (
        SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[],
            $6::bigint[]) AS x(run_id, fence, status, result, error, keep)),
    held AS (
        SELECT r.run_id FROM {{s}}.runs r JOIN x ON r.run_id = x.run_id AND r.fence = x.fence
        WHERE r.status = '{RUNNING}'
        ORDER BY r.run_id FOR NO KEY UPDATE OF r),
    u AS (
        UPDATE {{s}}.runs r SET status = x.status, result = x.result::json,
            error = x.error::json, owner = NULL, lease_until = NULL, updated_at = now()
        FROM x JOIN held ON held.run_id = x.run_id
        WHERE r.run_id = x.run_id AND r.fence = x.fence AND r.status = '{RUNNING}'
        RETURNING r.run_id, r.updated_at, x.keep)
    INSERT INTO {{s}}.retention (run_id, keep, finished_at)
    SELECT u.run_id, u.keep, u.updated_at FROM u
    ON CONFLICT (run_id) DO UPDATE
        SET keep = EXCLUDED.keep, finished_at = EXCLUDED.finished_at
    RETURNING run_id"""
# claim_available in one statement: the candidates of DUE_CANDIDATES and
# ACTIVE_CANDIDATES ($1 to $4; the latter none when $7, due_only) locked as read,
# skipping those another transaction holds, and claimed as CLAIM claims ($5 the owner,
# $6 the lease's seconds).
CLAIM_AVAILABLE = f"""
    WITH due AS (
        SELECT r.run_id FROM {{s}}.runs r
        WHERE r.status = '{WAITING}' AND r.wake_at <= now() AND {_SERVED} AND {_FREE}
        ORDER BY r.wake_at LIMIT $3 FOR UPDATE SKIP LOCKED),
    active AS (
        SELECT r.run_id FROM {{s}}.runs r
        WHERE NOT $7::bool AND {_R_ACTIVE} AND {_SERVED} AND {_FREE}
        ORDER BY r.run_id LIMIT (SELECT $3 - count(*) FROM due) FOR UPDATE SKIP LOCKED),
    picked AS (SELECT run_id FROM due UNION ALL SELECT run_id FROM active)
    UPDATE {{s}}.runs r SET
        fence = r.fence + 1, attempt = r.attempt + 1, owner = $5, status = '{RUNNING}',
        lease_until = now() + make_interval(secs => $6), updated_at = now(),
        wake_at = NULL, waiting_for = NULL
    FROM picked WHERE r.run_id = picked.run_id
    RETURNING {RUN_COLS}"""

# Each statement of Citus's form above -> plain PostgreSQL's, which does in one
# execution what the former does in one a run.
PLAIN_FORMS = {
    APPEND: APPEND_RUNS,
    FINISH_RUN: FINISH_RUNS,
    CLAIM: CLAIM_AVAILABLE,
}
