--
-- PostgreSQL database dump
--

\restrict WEO49LcaMycO9IcnXosb1f9nbixTLeNFw2ey8eQrUPIAHQhISyVYyhbfrru5exB

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

INSERT INTO upgrade_v0_2.deployments OVERRIDING SYSTEM VALUE VALUES (1, 'v02_order', '1', 'code-135c277613ab', '2026-12-07 17:41:06.260133+00');


--
-- Data for Name: events; Type: TABLE DATA; Schema: upgrade_v0_2; Owner: -
--



--
-- Data for Name: journal; Type: TABLE DATA; Schema: upgrade_v0_2; Owner: -
--

INSERT INTO upgrade_v0_2.journal VALUES ('01a251984f8d08e12df86d999c13b952', 0, '\x022b013c0001b0d5ddd7ebc198031e0b7630325f726573657276650a5b5b2261225d2c7b7d5d227265732d612210c04953');
INSERT INTO upgrade_v0_2.journal VALUES ('01a251984f8d08e12df86d999c13b952', 1, '\x0231013c0101de81dfd7ebc1980320087630325f736869700e5b5b227265732d61225d2c7b7d5d22736869702d7265732d6122cf2f39ef');
INSERT INTO upgrade_v0_2.journal VALUES ('01a251984fd7dc6c2f0bc56fc68dba52', 0, '\x02a303021c0001eaf7dfd7ebc19803a2060b7630325f6578706c6f64650a5b5b2278225d2c7b7d5d7b2265223a7b2274797065223a2256616c75654572726f72222c226d657373616765223a226e6f2073746f636b20666f722078222c2274726163656261636b223a2254726163656261636b20286d6f737420726563656e742063616c6c206c617374293a5c6e202046696c65205c222f73757265737465702d302e322f7372632f73757265737465702f636f6e746578742e70795c222c206c696e65203437392c20696e205f72756e5c6e202020206f7574707574203d206177616974206f75747075745c6e202020202020202020202020205e5e5e5e5e5e5e5e5e5e5e5e5c6e202046696c65205c222f73757265737465702d302e322f74657374732f757067726164652f666c6f77735f76305f322e70795c222c206c696e652033392c20696e207630325f6578706c6f64655c6e2020202072616973652056616c75654572726f7228665c226e6f2073746f636b20666f72207b736b757d5c22295c6e56616c75654572726f723a206e6f2073746f636b20666f7220785c6e227d7d35f4a613');
INSERT INTO upgrade_v0_2.journal VALUES ('01a251984fe76cedf52b581577254d22', 0, '\x022b013c00018aeee0d7ebc198031a0b7630325f726573657276650a5b5b2270225d2c7b7d5d227265732d7022928920d5');
INSERT INTO upgrade_v0_2.journal VALUES ('01a251984fe76cedf52b581577254d22', 1, '\x0231013c010188bce1d7ebc198031e087630325f736869700e5b5b227265732d70225d2c7b7d5d22736869702d7265732d70228059f0cb');
INSERT INTO upgrade_v0_2.journal VALUES ('01a251984fe77554011052c8488025d7', 0, '\x028a010604000010406368696c643a7630325f6f726465720a5b5b2270225d2c7b7d5d7b226368696c64223a223031613235313938346665373663656466353262353831353737323534643232222c226f223a7b22736b75223a2270222c227265736572766174696f6e223a227265732d70222c22747261636b696e67223a22736869702d7265732d70227d7d797d0a72');
INSERT INTO upgrade_v0_2.journal VALUES ('01a251984fe77554011052c8488025d7', 2, '\x022d0520020006407575696434223865656131313635303439353433323061613332646333333637633461616537226eedd744');
INSERT INTO upgrade_v0_2.journal VALUES ('01a251984fe77554011052c8488025d7', 1, '\x021b0520010004406e6f77313739363636353236362e3138323731323359ded7a4');
INSERT INTO upgrade_v0_2.journal VALUES ('01a251985011e6427b541df422f12d85', 0, '\x022b013c0001adb5e3d7ebc19803180b7630325f726573657276650a5b5b226e225d2c7b7d5d227265732d6e2204eea4ef');
INSERT INTO upgrade_v0_2.journal VALUES ('01a251985017fae916dcf35fc8ca14d5', 0, '\x022b013c000194d2e3d7ebc19803160b7630325f726573657276650a5b5b2271225d2c7b7d5d227265732d712242d42224');
INSERT INTO upgrade_v0_2.journal VALUES ('01a251985011e6427b541df422f12d85', 1, '\x022503280100b4f0e4d7ebc198030640736c656570313739363636353236382e3232333134333692444b61');
INSERT INTO upgrade_v0_2.journal VALUES ('01a251985017fae916dcf35fc8ca14d5', 1, '\x021a072401000a4073746174652e736574072261736b656422227122ad9adeb0');
INSERT INTO upgrade_v0_2.journal VALUES ('01a2519851397218675efab6062deae5', 0, '\x022b013c000195c1f7d7ebc19803200b7630325f726573657276650a5b5b2262225d2c7b7d5d227265732d62227037ba51');
INSERT INTO upgrade_v0_2.journal VALUES ('01a2519851600bbd61b23a2f54686321', 0, '\x022b013c0001bfdbf7d7ebc19803140b7630325f726573657276650a5b5b2263225d2c7b7d5d227265732d6322be45c0ec');


--
-- Data for Name: logs; Type: TABLE DATA; Schema: upgrade_v0_2; Owner: -
--



--
-- Data for Name: runs; Type: TABLE DATA; Schema: upgrade_v0_2; Owner: -
--

INSERT INTO upgrade_v0_2.runs VALUES ('01a251984f8d08e12df86d999c13b952', 'v02_order', '1', '["a"]', '{}', 'completed', NULL, NULL, '2026-12-07 17:41:06.0616+00', '2026-12-07 17:41:06.131027+00', 1, '{"sku":"a","reservation":"res-a","tracking":"ship-res-a"}', NULL, NULL, NULL, NULL, NULL, NULL, 1);
INSERT INTO upgrade_v0_2.runs VALUES ('01a251984fd7dc6c2f0bc56fc68dba52', 'v02_failing', '1', '["x"]', '{}', 'failed', NULL, NULL, '2026-12-07 17:41:06.135187+00', '2026-12-07 17:41:06.147726+00', 1, NULL, '{"type":"surestep.errors.StepFailedError","message":"step 0 (v02_explode) failed after 1 attempt(s): ValueError: no stock for x","traceback":"Traceback (most recent call last):\n  File \"/surestep-0.2/src/surestep/context.py\", line 479, in _run\n    output = await output\n             ^^^^^^^^^^^^\n  File \"/surestep-0.2/tests/upgrade/flows_v0_2.py\", line 39, in v02_explode\n    raise ValueError(f\"no stock for {sku}\")\nValueError: no stock for x\n\nThe above exception was the direct cause of the following exception:\n\nTraceback (most recent call last):\n  File \"/surestep-0.2/src/surestep/engine.py\", line 474, in _execute\n    value = await spec.fn(ctx, *run.args, **run.kwargs)\n            ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n  File \"/surestep-0.2/tests/upgrade/flows_v0_2.py\", line 58, in v02_failing\n    return await ctx.step(v02_explode, sku)\n           ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n  File \"/surestep-0.2/src/surestep/context.py\", line 488, in _run\n    raise error from failed.error\nsurestep.errors.StepFailedError: step 0 (v02_explode) failed after 1 attempt(s): ValueError: no stock for x\n"}', NULL, NULL, NULL, NULL, NULL, 1);
INSERT INTO upgrade_v0_2.runs VALUES ('01a251984fe76cedf52b581577254d22', 'v02_order', '1', '["p"]', '{}', 'completed', '01a251984fe77554011052c8488025d7', NULL, '2026-12-07 17:41:06.155415+00', '2026-12-07 17:41:06.171146+00', 1, '{"sku":"p","reservation":"res-p","tracking":"ship-res-p"}', NULL, '01a251984fe77554011052c8488025d7', NULL, NULL, NULL, NULL, 1);
INSERT INTO upgrade_v0_2.runs VALUES ('01a251984fe77554011052c8488025d7', 'v02_parent', '1', '["p"]', '{}', 'completed', NULL, NULL, '2026-12-07 17:41:06.151748+00', '2026-12-07 17:41:06.187178+00', 1, '{"child":{"sku":"p","reservation":"res-p","tracking":"ship-res-p"},"stamp":"2026-12-07T17:41:06.182712+00:00","token":"8eea1165-0495-4320-aa32-dc3367c4aae7"}', NULL, NULL, NULL, NULL, NULL, NULL, 1);
INSERT INTO upgrade_v0_2.runs VALUES ('01a251985011e6427b541df422f12d85', 'v02_napper', '1', '["n"]', '{}', 'waiting', NULL, NULL, '2026-12-07 17:41:06.193581+00', '2026-12-07 17:41:06.235805+00', 1, NULL, NULL, NULL, '2026-12-07 17:41:08.223144+00', NULL, NULL, NULL, 1);
INSERT INTO upgrade_v0_2.runs VALUES ('01a251985017fae916dcf35fc8ca14d5', 'v02_approver', '1', '["q"]', '{}', 'waiting', 'sess-1', 'u-1', '2026-12-07 17:41:06.199186+00', '2026-12-07 17:41:06.247849+00', 1, NULL, NULL, NULL, NULL, 'approval', NULL, NULL, 1);
INSERT INTO upgrade_v0_2.runs VALUES ('01a2519851397218675efab6062deae5', 'v02_order', '1', '["b"]', '{}', 'running', NULL, NULL, '2026-12-07 17:41:06.48976+00', '2026-12-07 17:41:06.516523+00', 1, NULL, NULL, NULL, NULL, NULL, 'vm:18272:c0f67b15', '2026-12-07 17:41:21.516523+00', 1);
INSERT INTO upgrade_v0_2.runs VALUES ('01a2519851600bbd61b23a2f54686321', 'v02_digest_order', 'code-4c89b916697c', '["c"]', '{}', 'running', NULL, NULL, '2026-12-07 17:41:06.52826+00', '2026-12-07 17:41:06.528688+00', 1, NULL, NULL, NULL, NULL, NULL, 'vm:18272:c0f67b15', '2026-12-07 17:41:21.528688+00', 1);


--
-- Data for Name: schema_version; Type: TABLE DATA; Schema: upgrade_v0_2; Owner: -
--

INSERT INTO upgrade_v0_2.schema_version VALUES (1, '2026-12-07 17:41:05.952554+00');


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

\unrestrict WEO49LcaMycO9IcnXosb1f9nbixTLeNFw2ey8eQrUPIAHQhISyVYyhbfrru5exB

