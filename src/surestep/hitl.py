"""Waiting for a person: the question ``ctx.wait_for_user`` asks, and the answers it takes.

A question is journaled (``@ask``, its input the question) before the run waits for its
answer, an event named after the answer's own step (``@answer:{seq}``). The engine reads
the question back from the journal to show it and to check an answer against it, so that
the question, its answer and the run's wait are one record each and nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .errors import AnswerError, ConfigurationError
from .store.base import ANSWER_EVENT, WAITING, RunInfo

ASK = "@ask"  # the question's record
ANSWER = "@answer"  # the answer's record
INPUT_TYPES = ("text", "approval", "select", "multiselect")
APPROVAL_OPTIONS = ({"id": "approve", "label": "Approve"}, {"id": "reject", "label": "Reject"})


WAITING_FOR = ("person", "event", "timer")  # what a waiting run may wait for


def waits_for(run: RunInfo) -> str | None:
    """What a waiting run waits for: ``person``, ``event`` or ``timer`` (None otherwise,
    or for a parent waiting for its child's end)."""
    if run.status != WAITING:
        return None
    if answer_seq(run.waiting_for) is not None:
        return "person"
    if run.waiting_for is not None:
        return "event"
    return "timer" if run.wake_at is not None else None


def answer_event(seq: int) -> str:
    """The event that carries the answer recorded at ``seq``."""
    return f"{ANSWER_EVENT}{seq}"


def answer_seq(waiting_for: str | None) -> int | None:
    """The step of the answer a run waits for (its ``waiting_for``), if it waits for one."""
    if waiting_for is None or not waiting_for.startswith(ANSWER_EVENT):
        return None
    number = waiting_for[len(ANSWER_EVENT) :]
    return int(number) if number.isdigit() else None


def question(
    text: object,
    input_type: object,
    options: Sequence[Mapping[str, Any] | str] | None,
    allow_custom: object,
    skippable: object,
) -> dict[str, Any]:
    """The question as journaled; ``ConfigurationError`` for one that cannot be asked."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigurationError(f"a question is a non-empty str, not {text!r}")
    if input_type not in INPUT_TYPES:
        raise ConfigurationError(
            f"input_type is one of {', '.join(INPUT_TYPES)}, not {input_type!r}"
        )
    for name, flag in (("allow_custom", allow_custom), ("skippable", skippable)):
        if not isinstance(flag, bool):
            raise ConfigurationError(f"{name} is a bool, not {flag!r}")
    if input_type == "text":
        if options:
            raise ConfigurationError("a text question takes no options")
        offered: list[dict[str, str]] = []
    elif options is None and input_type == "approval":
        offered = [dict(option) for option in APPROVAL_OPTIONS]
    else:
        offered = _options(options, input_type)
    return {
        "question": text,
        "input_type": input_type,
        "options": offered,
        "allow_custom": allow_custom,
        "skippable": skippable,
    }


def _options(options: object, input_type: object) -> list[dict[str, str]]:
    if not isinstance(options, Sequence) or isinstance(options, str) or not options:
        raise ConfigurationError(
            f"a {input_type} question needs options: a list of {{'id', 'label'}} dicts or strs"
        )
    offered = []
    for option in options:
        if isinstance(option, str):
            option = {"id": option, "label": option}
        if not isinstance(option, Mapping) or not isinstance(option.get("id"), str):
            raise ConfigurationError(
                f"an option is a str or a dict with a str 'id', not {option!r}"
            )
        ident = option["id"]
        label = option.get("label", ident)
        if not ident or "," in ident or not isinstance(label, str):
            raise ConfigurationError(
                f"option {option!r}: its id is a non-empty str without commas (a multiselect "
                "answer joins ids with commas), its label a str"
            )
        offered.append({"id": ident, "label": label})
    ids = [option["id"] for option in offered]
    if len(set(ids)) != len(ids):
        raise ConfigurationError(f"option ids repeat: {ids}")
    return offered


def checked_answer(asked: Mapping[str, Any], answer: object, run_id: str) -> str | None:
    """What the workflow receives for ``answer`` (as AGNT5 hands it over), or
    ``AnswerError`` naming what the question takes.

    ``None`` skips (a skippable question only). A text question takes a str. Approval
    and select take an option's id, or with ``allow_custom`` any other non-empty text.
    Multiselect takes ids as a list or joined by commas (at least one; with
    ``allow_custom`` an entry that is no id is the person's own words) and returns
    them joined by commas."""
    if answer is None:
        if not asked["skippable"]:
            raise AnswerError(f"run {run_id}: the question cannot be skipped; answer it")
        return None
    kind = asked["input_type"]
    if kind == "text":
        if not isinstance(answer, str):
            raise AnswerError(f"run {run_id}: a text question takes a str, not {answer!r}")
        return answer
    ids = [option["id"] for option in asked["options"]]
    if kind == "multiselect":
        chosen = answer.split(",") if isinstance(answer, str) else answer
        if not isinstance(chosen, list) or not all(isinstance(x, str) for x in chosen):
            raise AnswerError(
                f"run {run_id}: a multiselect question takes option ids (a list, or joined "
                f"by commas), not {answer!r}"
            )
        chosen = [x.strip() for x in chosen if x.strip()]
        if not chosen:
            raise AnswerError(f"run {run_id}: choose at least one of {', '.join(ids)}")
        for choice in chosen:
            _offered(choice, ids, asked, run_id)
        return ",".join(dict.fromkeys(chosen))
    if not isinstance(answer, str) or not answer.strip():
        raise AnswerError(f"run {run_id}: a {kind} question takes an option id, not {answer!r}")
    _offered(answer, ids, asked, run_id)
    return answer


def _offered(choice: str, ids: list[str], asked: Mapping[str, Any], run_id: str) -> None:
    if choice not in ids and not asked["allow_custom"]:
        raise AnswerError(
            f"run {run_id}: {choice!r} is not an option of this question (its options: "
            f"{', '.join(ids)}; it takes no answer of the person's own)"
        )
