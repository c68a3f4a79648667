"""Rows with several answers per side, as the benchmarks ship them: RM-Bench (`chosen` and `rejected` each a list of
3 answers, the same content in three styles) and RewardBench 2 (`chosen` a list of 1 answer, or several in its Ties
subset, and `rejected` a list of 3 or more).

An answer is a string, or a list of messages in the conversational formats; a side with a list of answers is a list
of strings or a list of message lists (a list of message dicts is one answer). A row expands to every chosen x
rejected pair, in order (chosen answer i, then rejected answer j), each an ordinary row carrying `expanded_from`
{"row", "chosen", "rejected"} (the source row's 0-based index in its file and the two answers' indexes) and every
other field of the row. The pairs share the row's prompt, so the split keeps them in one prompt group.
"""
from __future__ import annotations

EXPANDED_FROM = "expanded_from"
SIDES = ("chosen", "rejected")


def is_answer_list(value: object) -> bool:
    """A side holding several answers: a list of strings, or a list of message lists."""
    return (type(value) is list and bool(value)
            and (all(type(a) is str for a in value) or all(type(a) is list for a in value)))


def has_answer_lists(row: object) -> bool:
    """True when the row's chosen or rejected side is a list of answers."""
    return isinstance(row, dict) and (is_answer_list(row.get("chosen")) or is_answer_list(row.get("rejected")))


def answers(row: dict, side: str) -> list:
    """The answers of one side: its list, or its single answer as a list of one."""
    value = row[side]
    return value if is_answer_list(value) else [value]


def expanded_rows(row: dict) -> list[dict]:
    """One row per chosen x rejected pair, chosen-major, each with `expanded_from` and the row's other fields."""
    chosen, rejected = answers(row, "chosen"), answers(row, "rejected")
    head = {"prompt": row["prompt"]} if "prompt" in row else {}
    rest = {k: v for k, v in row.items() if k not in ("prompt", *SIDES, EXPANDED_FROM)}
    return [{**head, "chosen": c, "rejected": r, **rest, EXPANDED_FROM: {"chosen": i, "rejected": j}}
            for i, c in enumerate(chosen) for j, r in enumerate(rejected)]
