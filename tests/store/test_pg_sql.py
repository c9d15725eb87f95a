"""The PostgreSQL store's statements keep to Citus's rules for tables distributed by run
id (``store/pg_sql.py``): checked on their text, since CI has no Citus cluster. Plain
PostgreSQL's faster forms (``PLAIN_FORMS``), never issued on Citus, are what the rules
refuse. The statements' behaviour is the contract suite's, on plain PostgreSQL with
either form (its ``citus_forms`` backend)."""

from __future__ import annotations

import re

import pytest

from surestep.store import pg_sql

# Every statement the store issues: the module's string constants and tuples of them,
# filled in for a schema.
SCHEMA = '"surestep"'
STATEMENTS = {
    name: pg_sql.Statements(SCHEMA)[value]
    for name, value in vars(pg_sql).items()
    if name.isupper() and isinstance(value, str) and name != "RUN_COLS"
} | {
    f"{name}[{i}]": pg_sql.Statements(SCHEMA)[text]
    for name, value in vars(pg_sql).items()
    if name.isupper() and isinstance(value, tuple) and all(isinstance(v, str) for v in value)
    for i, text in enumerate(value)
    if name != "SCHEDULE_COLS"
}
NAMES = {value: name for name, value in vars(pg_sql).items() if isinstance(value, str)}
# The forms issued only on plain PostgreSQL, and every statement issued on Citus.
PLAIN = {NAMES[text] for text in pg_sql.PLAIN_FORMS.values()}
CITUS = {name: text for name, text in STATEMENTS.items() if name not in PLAIN}
# Tables Citus keeps whole on every node (reference tables: their row locks are fine).
REFERENCE = ("schedules", "subscriptions", "deployments", "engines", "meta", "schema_version")


def test_the_statements_are_found() -> None:
    assert {"APPEND", "CLAIM", "FINISH_RUN", "SUSPEND", "NOTIFY", "HIDE_RUNS"} <= set(CITUS)
    assert {"APPEND_RUNS", "FINISH_RUNS", "CLAIM_AVAILABLE"} == PLAIN


def test_each_plain_form_stands_for_a_citus_form_of_its_own() -> None:
    citus = [NAMES[text] for text in pg_sql.PLAIN_FORMS]
    assert sorted(citus) == ["APPEND", "CLAIM", "FINISH_RUN"]
    assert set(citus) <= set(CITUS) and len(PLAIN) == len(citus)


def test_the_plain_forms_are_what_citus_refuses() -> None:
    """Each plain form breaks a rule (else it would be the only form): the checks below
    refuse every one of them."""
    for name in sorted(PLAIN):
        CITUS[name] = STATEMENTS[name]
        try:
            with pytest.raises(AssertionError):
                test_row_locks_only_on_one_run_or_a_reference_table()
        finally:
            del CITUS[name]


def test_row_locks_only_on_one_run_or_a_reference_table() -> None:
    wrong = []
    for name, text in CITUS.items():
        if not re.search(r"\bFOR (UPDATE|SHARE|NO KEY UPDATE)\b", text):
            continue
        locked = re.search(r"FROM \"surestep\"\.(\w+)", text)
        # the locked rows are a reference table's, or those of one run (or state scope)
        if locked is None or not (
            locked.group(1) in REFERENCE or re.search(r"\b(run_id|scope) = \$1\b", text)
        ):
            wrong.append(name)
    assert wrong == []


def test_no_function_but_immutable_ones_in_returning() -> None:
    functions = r"\b(now|extract|date_part|coalesce|to_char|pg_notify)\s*\("
    assert [
        name for name, text in CITUS.items() if re.search(functions, text.partition("RETURNING")[2])
    ] == []


def test_a_notify_is_a_statement_of_its_own() -> None:
    notifying = [name for name, text in CITUS.items() if "pg_notify" in text]
    assert notifying == ["NOTIFY"]
    assert "surestep" not in pg_sql.NOTIFY  # it touches no table: it runs on the coordinator


def test_no_subquery_in_limit_nor_recursive_cte() -> None:
    assert [
        name
        for name, text in CITUS.items()
        if re.search(r"LIMIT\s*\(\s*SELECT", text) or "WITH RECURSIVE" in text
    ] == []


def test_now_is_never_chosen_by_a_case() -> None:
    assert [
        name
        for name, text in CITUS.items()
        for case in re.findall(r"CASE\b.*?\bEND\b", text, re.DOTALL)
        if "now()" in case
    ] == []


def test_the_rules_catch_what_citus_refuses() -> None:
    """The checks above refuse the statements Citus refused before the store kept to
    its rules (as they were written then)."""
    old = {
        "lock over several runs": 'INSERT INTO "surestep".journal SELECT x.run_id FROM '
        'unnest($1::text[]) x JOIN "surestep".runs r ON r.run_id = x.run_id FOR SHARE OF r',
        "extract in RETURNING": 'UPDATE "surestep".runs r SET fence = 1 WHERE r.run_id = $1 '
        "RETURNING extract(epoch FROM r.created_at)::float8",
        "subquery in LIMIT": 'SELECT run_id FROM "surestep".runs LIMIT (SELECT $4 - 1)',
        "now() in CASE": 'UPDATE "surestep".runs SET wake_at = CASE WHEN $2 THEN now() '
        "ELSE NULL END WHERE run_id = $1",
    }
    checks = [
        test_row_locks_only_on_one_run_or_a_reference_table,
        test_no_function_but_immutable_ones_in_returning,
        test_no_subquery_in_limit_nor_recursive_cte,
        test_now_is_never_chosen_by_a_case,
    ]
    for (what, text), check in zip(old.items(), checks, strict=True):
        CITUS[what] = text
        try:
            with pytest.raises(AssertionError):
                check()
        finally:
            del CITUS[what]
