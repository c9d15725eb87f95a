--
-- PostgreSQL database dump
--

\restrict q2IUUBCivBPI4qeX020JlmGfHtKPTWt2QdKgrT8uB0GEPeI8N6fF4pGruNAcNY3

-- Dumped from database version 15.18 (Debian 15.18-0+deb12u1)
-- Dumped by pg_dump version 15.18 (Debian 15.18-0+deb12u1)

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

--
-- Name: upgrade_v0_2; Type: SCHEMA; Schema: -; Owner: -
--

CREATE SCHEMA upgrade_v0_2;


SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: deployments; Type: TABLE; Schema: upgrade_v0_2; Owner: -
--

CREATE TABLE upgrade_v0_2.deployments (
    id bigint NOT NULL,
    workflow text NOT NULL,
    version text NOT NULL,
    digest text NOT NULL,
    "time" timestamp with time zone DEFAULT now() NOT NULL
);


--
-- Name: deployments_id_seq; Type: SEQUENCE; Schema: upgrade_v0_2; Owner: -
--

ALTER TABLE upgrade_v0_2.deployments ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME upgrade_v0_2.deployments_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: events; Type: TABLE; Schema: upgrade_v0_2; Owner: -
--

CREATE TABLE upgrade_v0_2.events (
    id bigint NOT NULL,
    run_id text NOT NULL COLLATE pg_catalog."C",
    name text NOT NULL,
    payload bytea NOT NULL,
    sent_at timestamp with time zone DEFAULT now() NOT NULL
);


--
-- Name: events_id_seq; Type: SEQUENCE; Schema: upgrade_v0_2; Owner: -
--

ALTER TABLE upgrade_v0_2.events ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME upgrade_v0_2.events_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: journal; Type: TABLE; Schema: upgrade_v0_2; Owner: -
--

CREATE TABLE upgrade_v0_2.journal (
    run_id text NOT NULL COLLATE pg_catalog."C",
    seq integer NOT NULL,
    record bytea NOT NULL
);


--
-- Name: logs; Type: TABLE; Schema: upgrade_v0_2; Owner: -
--

CREATE TABLE upgrade_v0_2.logs (
    run_id text NOT NULL COLLATE pg_catalog."C",
    "position" integer NOT NULL,
    idx integer NOT NULL,
    line bytea NOT NULL
);


--
-- Name: runs; Type: TABLE; Schema: upgrade_v0_2; Owner: -
--

CREATE TABLE upgrade_v0_2.runs (
    run_id text NOT NULL COLLATE pg_catalog."C",
    workflow text NOT NULL,
    version text NOT NULL,
    args json NOT NULL,
    kwargs json NOT NULL,
    status text NOT NULL,
    session_id text,
    user_id text,
    created_at timestamp with time zone NOT NULL,
    updated_at timestamp with time zone NOT NULL,
    attempt integer DEFAULT 0 NOT NULL,
    result json,
    error json,
    parent_id text COLLATE pg_catalog."C",
    wake_at timestamp with time zone,
    waiting_for text,
    owner text COLLATE pg_catalog."C",
    lease_until timestamp with time zone,
    fence bigint DEFAULT 0 NOT NULL
)
WITH (fillfactor='80');


--
-- Name: schema_version; Type: TABLE; Schema: upgrade_v0_2; Owner: -
--

CREATE TABLE upgrade_v0_2.schema_version (
    version integer NOT NULL,
    applied_at timestamp with time zone DEFAULT now() NOT NULL
);


--
-- Name: state; Type: TABLE; Schema: upgrade_v0_2; Owner: -
--

CREATE TABLE upgrade_v0_2.state (
    scope text NOT NULL COLLATE pg_catalog."C",
    key text NOT NULL COLLATE pg_catalog."C",
    version bigint NOT NULL,
    value bytea
);


--
-- Data for Name: deployments; Type: TABLE DATA; Schema: upgrade_v0_2; Owner: -
--

INSERT INTO upgrade_v0_2.deployments OVERRIDING SYSTEM VALUE VALUES (1, 'order', '1', 'code-4897d8f2911c', '2026-12-07 15:15:49.283044+00');


--
-- Data for Name: events; Type: TABLE DATA; Schema: upgrade_v0_2; Owner: -
--



--
-- Data for Name: journal; Type: TABLE DATA; Schema: upgrade_v0_2; Owner: -
--

INSERT INTO upgrade_v0_2.journal VALUES ('01a251134cbf82fc708adcbb30f2bffc', 0, '\x0227013c0001f0f2919bcbc198031e07726573657276650a5b5b2261225d2c7b7d5d227265732d612234df0fe5');
INSERT INTO upgrade_v0_2.journal VALUES ('01a251134cbf82fc708adcbb30f2bffc', 1, '\x022d013c0101d188939bcbc198032204736869700e5b5b227265732d61225d2c7b7d5d22736869702d7265732d61222e3c69e6');
INSERT INTO upgrade_v0_2.journal VALUES ('01a251134d07a9521a1df1f491ec7af6', 0, '\x029b03021c0001e2e6949bcbc19803ce05076578706c6f64650a5b5b2278225d2c7b7d5d7b2265223a7b2274797065223a2256616c75654572726f72222c226d657373616765223a226e6f2073746f636b20666f722078222c2274726163656261636b223a2254726163656261636b20286d6f737420726563656e742063616c6c206c617374293a5c6e202046696c65205c222f776f726b2f6d61696e2f7372632f73757265737465702f636f6e746578742e70795c222c206c696e65203437392c20696e205f72756e5c6e202020206f7574707574203d206177616974206f75747075745c6e202020202020202020202020205e5e5e5e5e5e5e5e5e5e5e5e5c6e202046696c65205c222f776f726b2f77742d757067726164652f74657374732f757067726164652f666c6f77735f76305f322e70795c222c206c696e652033392c20696e206578706c6f64655c6e2020202072616973652056616c75654572726f7228665c226e6f2073746f636b20666f72207b736b757d5c22295c6e56616c75654572726f723a206e6f2073746f636b20666f7220785c6e227d7d9d6bbec3');
INSERT INTO upgrade_v0_2.journal VALUES ('01a251134d24037a193180872422a952', 0, '\x0227013c0001bf8e969bcbc198031c07726573657276650a5b5b2270225d2c7b7d5d227265732d7022a8f055cf');
INSERT INTO upgrade_v0_2.journal VALUES ('01a251134d24037a193180872422a952', 1, '\x022d013c010198bf969bcbc198031a04736869700e5b5b227265732d70225d2c7b7d5d22736869702d7265732d70221f0be98f');
INSERT INTO upgrade_v0_2.journal VALUES ('01a251134d24f7f7dcc34b8bd56985dd', 0, '\x028601060400000c406368696c643a6f726465720a5b5b2270225d2c7b7d5d7b226368696c64223a223031613235313133346432343033376131393331383038373234323261393532222c226f223a7b22736b75223a2270222c227265736572766174696f6e223a227265732d70222c22747261636b696e67223a22736869702d7265732d70227d7d11adf85b');
INSERT INTO upgrade_v0_2.journal VALUES ('01a251134d24f7f7dcc34b8bd56985dd', 2, '\x022d052002000640757569643422643538323637303663336361343430336234393830663031623331663462386122cd49e22e');
INSERT INTO upgrade_v0_2.journal VALUES ('01a251134d24f7f7dcc34b8bd56985dd', 1, '\x021b0520010004406e6f77313739363635363534392e313939323439371fb57dac');
INSERT INTO upgrade_v0_2.journal VALUES ('01a251134d5a2a76ccd640150f894ebd', 0, '\x0227013c0001bcec989bcbc198031c07726573657276650a5b5b226e225d2c7b7d5d227265732d6e22e40e1667');
INSERT INTO upgrade_v0_2.journal VALUES ('01a251134d5d0efe8e2351b91e2228e6', 0, '\x0227013c0001fcdb999bcbc198031e07726573657276650a5b5b2271225d2c7b7d5d227265732d71228cc51e3b');
INSERT INTO upgrade_v0_2.journal VALUES ('01a251134d5a2a76ccd640150f894ebd', 1, '\x02240328010083929b9bcbc198030640736c656570313739363635363535312e323531333139b58b408d');
INSERT INTO upgrade_v0_2.journal VALUES ('01a251134d5d0efe8e2351b91e2228e6', 1, '\x021a072401000a4073746174652e736574072261736b656422227122ad9adeb0');
INSERT INTO upgrade_v0_2.journal VALUES ('01a251134f3e59e7ad3d1ddbabc03b30', 0, '\x0227013c0001c082bb9bcbc198032007726573657276650a5b5b2262225d2c7b7d5d227265732d6222fdcf3259');
INSERT INTO upgrade_v0_2.journal VALUES ('01a251134f8d5defa8273cd6ea532ca5', 0, '\x0227013c0001aff0bb9bcbc198031c07726573657276650a5b5b2263225d2c7b7d5d227265732d63229733c230');


--
-- Data for Name: logs; Type: TABLE DATA; Schema: upgrade_v0_2; Owner: -
--



--
-- Data for Name: runs; Type: TABLE DATA; Schema: upgrade_v0_2; Owner: -
--

INSERT INTO upgrade_v0_2.runs VALUES ('01a251134cbf82fc708adcbb30f2bffc', 'order', '1', '["a"]', '{}', 'completed', NULL, NULL, '2026-12-07 15:15:49.055441+00', '2026-12-07 15:15:49.123143+00', 1, '{"sku":"a","reservation":"res-a","tracking":"ship-res-a"}', NULL, NULL, NULL, NULL, NULL, NULL, 1);
INSERT INTO upgrade_v0_2.runs VALUES ('01a251134d07a9521a1df1f491ec7af6', 'failing', '1', '["x"]', '{}', 'failed', NULL, NULL, '2026-12-07 15:15:49.127634+00', '2026-12-07 15:15:49.150695+00', 1, NULL, '{"type":"surestep.errors.StepFailedError","message":"step 0 (explode) failed after 1 attempt(s): ValueError: no stock for x","traceback":"Traceback (most recent call last):\n  File \"/work/main/src/surestep/context.py\", line 479, in _run\n    output = await output\n             ^^^^^^^^^^^^\n  File \"/work/wt-upgrade/tests/upgrade/flows_v0_2.py\", line 39, in explode\n    raise ValueError(f\"no stock for {sku}\")\nValueError: no stock for x\n\nThe above exception was the direct cause of the following exception:\n\nTraceback (most recent call last):\n  File \"/work/main/src/surestep/engine.py\", line 474, in _execute\n    value = await spec.fn(ctx, *run.args, **run.kwargs)\n            ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n  File \"/work/wt-upgrade/tests/upgrade/flows_v0_2.py\", line 58, in failing\n    return await ctx.step(explode, sku)\n           ^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n  File \"/work/main/src/surestep/context.py\", line 488, in _run\n    raise error from failed.error\nsurestep.errors.StepFailedError: step 0 (explode) failed after 1 attempt(s): ValueError: no stock for x\n"}', NULL, NULL, NULL, NULL, NULL, 1);
INSERT INTO upgrade_v0_2.runs VALUES ('01a251134d24037a193180872422a952', 'order', '1', '["p"]', '{}', 'completed', '01a251134d24f7f7dcc34b8bd56985dd', NULL, '2026-12-07 15:15:49.163729+00', '2026-12-07 15:15:49.179172+00', 1, '{"sku":"p","reservation":"res-p","tracking":"ship-res-p"}', NULL, '01a251134d24f7f7dcc34b8bd56985dd', NULL, NULL, NULL, NULL, 1);
INSERT INTO upgrade_v0_2.runs VALUES ('01a251134d24f7f7dcc34b8bd56985dd', 'parent', '1', '["p"]', '{}', 'completed', NULL, NULL, '2026-12-07 15:15:49.156406+00', '2026-12-07 15:15:49.203009+00', 1, '{"child":{"sku":"p","reservation":"res-p","tracking":"ship-res-p"},"stamp":"2026-12-07T15:15:49.199250+00:00","token":"d5826706-c3ca-4403-b498-0f01b31f4b8a"}', NULL, NULL, NULL, NULL, NULL, NULL, 1);
INSERT INTO upgrade_v0_2.runs VALUES ('01a251134d5a2a76ccd640150f894ebd', 'napper', '1', '["n"]', '{}', 'waiting', NULL, NULL, '2026-12-07 15:15:49.210279+00', '2026-12-07 15:15:49.256831+00', 1, NULL, NULL, NULL, '2026-12-07 15:15:51.251319+00', NULL, NULL, NULL, 1);
INSERT INTO upgrade_v0_2.runs VALUES ('01a251134d5d0efe8e2351b91e2228e6', 'approver', '1', '["q"]', '{}', 'waiting', 'sess-1', 'u-1', '2026-12-07 15:15:49.213722+00', '2026-12-07 15:15:49.267931+00', 1, NULL, NULL, NULL, NULL, 'approval', NULL, NULL, 1);
INSERT INTO upgrade_v0_2.runs VALUES ('01a251134f3e59e7ad3d1ddbabc03b30', 'order', '1', '["b"]', '{}', 'running', NULL, NULL, '2026-12-07 15:15:49.694641+00', '2026-12-07 15:15:49.764451+00', 1, NULL, NULL, NULL, NULL, NULL, 'vm:17007:27e1b2d8', '2026-12-07 15:16:04.764451+00', 1);
INSERT INTO upgrade_v0_2.runs VALUES ('01a251134f8d5defa8273cd6ea532ca5', 'digest_order', 'code-6ed69d5d7698', '["c"]', '{}', 'running', NULL, NULL, '2026-12-07 15:15:49.773439+00', '2026-12-07 15:15:49.781242+00', 1, NULL, NULL, NULL, NULL, NULL, 'vm:17007:27e1b2d8', '2026-12-07 15:16:04.781242+00', 1);


--
-- Data for Name: schema_version; Type: TABLE DATA; Schema: upgrade_v0_2; Owner: -
--

INSERT INTO upgrade_v0_2.schema_version VALUES (1, '2026-12-07 15:15:48.904402+00');


--
-- Data for Name: state; Type: TABLE DATA; Schema: upgrade_v0_2; Owner: -
--



--
-- Name: deployments_id_seq; Type: SEQUENCE SET; Schema: upgrade_v0_2; Owner: -
--

SELECT pg_catalog.setval('upgrade_v0_2.deployments_id_seq', 1, true);


--
-- Name: events_id_seq; Type: SEQUENCE SET; Schema: upgrade_v0_2; Owner: -
--

SELECT pg_catalog.setval('upgrade_v0_2.events_id_seq', 1, false);


--
-- Name: deployments deployments_pkey; Type: CONSTRAINT; Schema: upgrade_v0_2; Owner: -
--

ALTER TABLE ONLY upgrade_v0_2.deployments
    ADD CONSTRAINT deployments_pkey PRIMARY KEY (id);


--
-- Name: events events_pkey; Type: CONSTRAINT; Schema: upgrade_v0_2; Owner: -
--

ALTER TABLE ONLY upgrade_v0_2.events
    ADD CONSTRAINT events_pkey PRIMARY KEY (id);


--
-- Name: journal journal_pkey; Type: CONSTRAINT; Schema: upgrade_v0_2; Owner: -
--

ALTER TABLE ONLY upgrade_v0_2.journal
    ADD CONSTRAINT journal_pkey PRIMARY KEY (run_id, seq);


--
-- Name: logs logs_pkey; Type: CONSTRAINT; Schema: upgrade_v0_2; Owner: -
--

ALTER TABLE ONLY upgrade_v0_2.logs
    ADD CONSTRAINT logs_pkey PRIMARY KEY (run_id, "position", idx);


--
-- Name: runs runs_pkey; Type: CONSTRAINT; Schema: upgrade_v0_2; Owner: -
--

ALTER TABLE ONLY upgrade_v0_2.runs
    ADD CONSTRAINT runs_pkey PRIMARY KEY (run_id);


--
-- Name: schema_version schema_version_pkey; Type: CONSTRAINT; Schema: upgrade_v0_2; Owner: -
--

ALTER TABLE ONLY upgrade_v0_2.schema_version
    ADD CONSTRAINT schema_version_pkey PRIMARY KEY (version);


--
-- Name: state state_pkey; Type: CONSTRAINT; Schema: upgrade_v0_2; Owner: -
--

ALTER TABLE ONLY upgrade_v0_2.state
    ADD CONSTRAINT state_pkey PRIMARY KEY (scope, key);


--
-- Name: deployments_by_workflow; Type: INDEX; Schema: upgrade_v0_2; Owner: -
--

CREATE INDEX deployments_by_workflow ON upgrade_v0_2.deployments USING btree (workflow, id);


--
-- Name: events_by_run; Type: INDEX; Schema: upgrade_v0_2; Owner: -
--

CREATE INDEX events_by_run ON upgrade_v0_2.events USING btree (run_id, name, id);


--
-- Name: runs_active; Type: INDEX; Schema: upgrade_v0_2; Owner: -
--

CREATE INDEX runs_active ON upgrade_v0_2.runs USING btree (run_id) WHERE (status = ANY (ARRAY['pending'::text, 'running'::text]));


--
-- Name: runs_by_parent; Type: INDEX; Schema: upgrade_v0_2; Owner: -
--

CREATE INDEX runs_by_parent ON upgrade_v0_2.runs USING btree (parent_id) WHERE (parent_id IS NOT NULL);


--
-- Name: runs_by_status; Type: INDEX; Schema: upgrade_v0_2; Owner: -
--

CREATE INDEX runs_by_status ON upgrade_v0_2.runs USING btree (status, run_id);


--
-- Name: runs_by_workflow; Type: INDEX; Schema: upgrade_v0_2; Owner: -
--

CREATE INDEX runs_by_workflow ON upgrade_v0_2.runs USING btree (workflow, run_id);


--
-- Name: runs_held; Type: INDEX; Schema: upgrade_v0_2; Owner: -
--

CREATE INDEX runs_held ON upgrade_v0_2.runs USING btree (owner) WHERE ((owner IS NOT NULL) AND (status <> ALL (ARRAY['cancelled'::text, 'completed'::text, 'failed'::text])));


--
-- Name: runs_timers; Type: INDEX; Schema: upgrade_v0_2; Owner: -
--

CREATE INDEX runs_timers ON upgrade_v0_2.runs USING btree (wake_at) WHERE (status = 'waiting'::text);


--
-- PostgreSQL database dump complete
--

\unrestrict q2IUUBCivBPI4qeX020JlmGfHtKPTWt2QdKgrT8uB0GEPeI8N6fF4pGruNAcNY3

