"""The preference formats people have, and their conversion to explicit (prompt, chosen, rejected) rows.

- explicit: `prompt`, `chosen`, `rejected` strings (the shipped data);
- implicit: `chosen`, `rejected` strings only, each the full conversation (Anthropic HH): the prompt is their
  longest shared prefix that ends at an assistant turn marker (`ASSISTANT_MARKERS`, e.g. "\\n\\nAssistant:");
- conversational: `prompt` a list of {"role", "content"} messages and `chosen` / `rejected` lists holding the
  assistant turn(s) (TRL's conversational format);
- implicit conversational: `chosen` / `rejected` full message lists: the prompt is their shared leading messages,
  up to the first assistant message where they differ.
Messages stay messages until the base's tokenizer is known: `render` turns them into text with its chat template,
or with the plain template of the shipped data (`User: …\\nAssistant:`, see `render_plain_prompt`).
"""
from __future__ import annotations

import os

EXPLICIT, IMPLICIT, CONVERSATIONAL, IMPLICIT_CONVERSATIONAL = (
    "explicit", "implicit", "conversational", "implicit_conversational")
ASSISTANT_MARKERS = ("\n\nAssistant:", "\nAssistant:", "<|im_start|>assistant\n", "[/INST]")
ROLES = {"system": "System", "user": "User", "assistant": "Assistant", "tool": "Tool"}
PLAIN, CHAT_TEMPLATE = "plain", "chat_template"


class RowProblem(ValueError):
    """A row that cannot be read in its file's format: `reason` (a validate reason code name) and a detail."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


def row_format(row: dict) -> str | None:
    """The format a row is written in, judged from its fields (None: it has none of them)."""
    if "prompt" in row:
        return CONVERSATIONAL if isinstance(row["prompt"], list) else EXPLICIT
    if "chosen" in row or "rejected" in row:
        return IMPLICIT_CONVERSATIONAL if isinstance(row.get("chosen", row.get("rejected")), list) else IMPLICIT
    return None


def split_shared_prompt(chosen: str, rejected: str) -> tuple[str, str, str] | None:
    """(prompt, chosen response, rejected response) of two full conversations: the prompt ends at the last
    assistant marker inside their shared prefix; None when they share none."""
    shared = os.path.commonprefix([chosen, rejected])
    end = max((shared.rfind(m) + len(m) for m in ASSISTANT_MARKERS if shared.rfind(m) >= 0), default=-1)
    if end < 0:
        return None
    return chosen[:end], chosen[end:], rejected[end:]


def check_messages(messages: object, field: str, first_role: str | None = None) -> list[dict]:
    """`messages` as a list of {"role", "content"} dicts, or a RowProblem naming what is wrong."""
    if not isinstance(messages, list):
        raise RowProblem("bad_messages", f"field '{field}' must be a list of messages, got {type(messages).__name__}")
    if not messages:
        raise RowProblem("bad_messages", f"field '{field}' has no messages")
    for i, message in enumerate(messages, 1):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise RowProblem("bad_messages", f"{field} message {i} must be an object with a string 'content'")
        if message.get("role") not in ROLES:
            raise RowProblem("bad_messages", f"{field} message {i} has role {message.get('role')!r}; expected one "
                                             f"of {', '.join(ROLES)}")
    if first_role and messages[0]["role"] != first_role:
        article = "an" if first_role[0] in "aeiou" else "a"
        raise RowProblem("bad_messages", f"{field} must start with {article} {first_role} message, got "
                                         f"{messages[0]['role']!r}")
    return messages


def is_message_list(value: object) -> bool:
    """Whether `value` is one list of messages (a single prompt), not text nor a list of prompts."""
    return isinstance(value, list) and bool(value) and isinstance(value[0], dict)


def check_scored_pair(prompt: object, response: object, prompt_field: str = "prompt",
                      response_field: str = "response") -> None:
    """A (prompt, response) to score as training rendered its pairs: two strings, or two message lists with the
    response starting at an assistant turn (as conversational training rows do); RowProblem otherwise (a text
    prompt with a message-list response has no rendering: the plain and chat templates take one kind)."""
    if not isinstance(prompt, list) and not isinstance(response, list):
        return
    if not (isinstance(prompt, list) and isinstance(response, list)):
        messages, text = (prompt_field, response_field) if isinstance(prompt, list) else (response_field, prompt_field)
        raise RowProblem("bad_messages", f"{messages} is a list of messages but {text} is not: send both as text or "
                                         "both as messages")
    check_messages(prompt, prompt_field)
    check_messages(response, response_field, "assistant")


def split_shared_messages(chosen: list[dict], rejected: list[dict]) -> tuple[list, list, list] | None:
    """(prompt, chosen turns, rejected turns) of two full message lists: the shared leading messages, cut back to
    end just before an assistant message; None when nothing before an assistant turn is shared."""
    common = 0
    while common < min(len(chosen), len(rejected)) and chosen[common] == rejected[common]:
        common += 1
    while common > 0 and not (common < len(chosen) and chosen[common]["role"] == "assistant"):
        common -= 1
    if common == 0:
        return None
    return chosen[:common], chosen[common:], rejected[common:]


def explicit_fields(row: dict, fmt: str) -> tuple[object, object, object]:
    """(prompt, chosen, rejected) of a row of `fmt`: strings, or message lists for the conversational formats.
    Raises RowProblem (missing_field, not_a_string, bad_messages, no_shared_prompt)."""
    needed = ("chosen", "rejected") if fmt in (IMPLICIT, IMPLICIT_CONVERSATIONAL) else ("prompt", "chosen",
                                                                                          "rejected")
    missing = [name for name in needed if name not in row]
    if missing:
        raise RowProblem("missing_field", f"missing field(s): {', '.join(missing)}")
    if fmt == IMPLICIT:
        for name in needed:
            if not isinstance(row[name], str):
                raise RowProblem("not_a_string", f"field '{name}' must be a string, got {type(row[name]).__name__}")
        parts = split_shared_prompt(row["chosen"], row["rejected"])
        if parts is None:
            raise RowProblem("no_shared_prompt", "chosen and rejected share no prompt ending in an assistant turn "
                                                 f"({' or '.join(repr(m) for m in ASSISTANT_MARKERS[:2])} ...)")
        return parts
    if fmt == CONVERSATIONAL:
        return (check_messages(row["prompt"], "prompt"), check_messages(row["chosen"], "chosen", "assistant"),
                check_messages(row["rejected"], "rejected", "assistant"))
    chosen, rejected = check_messages(row["chosen"], "chosen"), check_messages(row["rejected"], "rejected")
    parts = split_shared_messages(chosen, rejected)
    if parts is None:
        raise RowProblem("no_shared_prompt", "chosen and rejected share no leading messages before an assistant "
                                             "turn")
    return parts


def render_plain_prompt(messages: object) -> str:
    """A prompt as the shipped data writes it: `User: hi\nAssistant:` (one `Role: content` line a message, then
    the assistant's turn). A string passes through unchanged."""
    if isinstance(messages, str):
        return messages
    return "\n".join(f"{ROLES[m['role']]}: {m['content']}" for m in messages) + "\nAssistant:"


def render_plain_response(messages: object) -> str:
    """A response as the shipped data writes it: ` Hello.` (later turns go on as `\nUser: …`). A string passes
    through unchanged."""
    if isinstance(messages, str):
        return messages
    first, *rest = messages
    return " " + first["content"] + "".join(f"\n{ROLES[m['role']]}: {m['content']}" for m in rest)


def render(prompt: object, response: object, tokenizer=None) -> tuple[str, str]:
    """(prompt text, response text) of one pair. Message lists go through the tokenizer's chat template when it
    is given (prompt with the generation prompt; the response is what the full conversation adds to it), else
    through the plain template; strings pass through."""
    if isinstance(prompt, str):
        return prompt, response
    if tokenizer is None:
        return render_plain_prompt(prompt), render_plain_response(response)
    prompt_text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(prompt + response, tokenize=False)
    if not full.startswith(prompt_text):
        raise ValueError(f"the chat template of {type(tokenizer).__name__} does not render a conversation as its "
                         "prompt followed by the response; set model.chat_template: plain")
    return prompt_text, full[len(prompt_text):]


def renderer_for(rendering: str | None, tokenizer):
    """What `render` takes for a model's recorded `rendering`: its tokenizer for CHAT_TEMPLATE, None (the plain
    template) otherwise."""
    return tokenizer if rendering == CHAT_TEMPLATE else None


def to_explicit_row(row: dict, fmt: str) -> dict:
    """The row with explicit prompt/chosen/rejected fields first and every other field kept."""
    prompt, chosen, rejected = explicit_fields(row, fmt)
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected,
            **{k: v for k, v in row.items() if k not in ("prompt", "chosen", "rejected")}}
