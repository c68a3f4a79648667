"""Text helpers shared by the data stages, scoring and the dataset generator (standard library only)."""
from __future__ import annotations


def normalise(text: str) -> str:
    """Whitespace runs collapsed to one space, ends stripped, casefolded: the key of near-duplicates,
    contradictions and prompt groups."""
    return " ".join(text.split()).casefold()


def json_kind(value: object) -> str:
    """The JSON type of a parsed value with its article, for messages: "null", "a bool", "an object", ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a bool"
    return {int: "a number", float: "a number", str: "a string", list: "a list", dict: "an object"}[type(value)]
