"""Property-based checks (hypothesis) of the input boundaries: validate, split, the score CLI's input check and the
server's request models. Strategies and checks live here; tests/unit/test_properties.py runs them with a small
example budget (fast tier), tests/e2e/test_properties_long.py with a large one."""
from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LONG = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BOM = b"\xef\xbb\xbf"
MAX_LINE_BYTES = 400  # small, so "huge" lines are cheap to generate
ENDINGS = re.compile(rb"\r\n|\n|\r")

# ------------------------------------------------------------------------------------------------ strategies
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)
texts = st.text(max_size=40) | st.sampled_from(["", " ", "same", "Same ", "\n\nHuman: hi", "\ud800"])
messages = st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system", "bot"]),
                                           "content": texts}), max_size=3)
explicit_rows = st.fixed_dictionaries(
    {"prompt": texts, "chosen": texts, "rejected": texts},
    optional={"id": st.text(max_size=5) | st.integers(), "margin": json_values, "source": texts})
implicit_rows = st.builds(lambda p, c, r: {"chosen": f"\n\nHuman: {p}\n\nAssistant: {c}",
                                           "rejected": f"\n\nHuman: {p}\n\nAssistant: {r}"}, texts, texts, texts)
conversational_rows = st.fixed_dictionaries({"prompt": messages, "chosen": messages, "rejected": messages})
rows = explicit_rows | implicit_rows | conversational_rows | st.dictionaries(st.text(max_size=8), json_values,
                                                                             max_size=4)


def dumped(value: object, ascii_only: bool) -> bytes:
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


def no_endings(data: bytes) -> bytes:
    return data.replace(b"\r", b"").replace(b"\n", b"")


lines = st.one_of(
    st.binary(max_size=60).map(no_endings),  # any bytes
    st.builds(dumped, json_values, st.booleans()),  # any JSON value
    st.builds(dumped, rows, st.booleans()),  # the formats, valid or not
    st.builds(dumped, rows, st.booleans()).map(lambda b: b"  " + b + b"\t"),  # padded
    st.builds(dumped, rows, st.booleans()).map(lambda b: b[: len(b) // 2]),  # cut off
    st.integers(MAX_LINE_BYTES - 20, 3 * MAX_LINE_BYTES).map(
        lambda n: dumped({"prompt": "p", "chosen": "c" * n, "rejected": "r"}, True)),  # around the size limit
    st.sampled_from([b"", b"   ", b"\t"]))


@st.composite
def files(draw) -> tuple[bytes, list[bytes]]:
    """(file bytes, its lines as a reader must see them): lines ended by LF, CRLF or a lone CR, maybe a BOM, maybe
    no ending after the last line."""
    body = draw(st.lists(lines, max_size=12))
    endings = draw(st.lists(st.sampled_from([b"\n", b"\r\n", b"\r"]), min_size=len(body), max_size=len(body)))
    if body and draw(st.booleans()):
        endings[-1] = b""
    data = b"".join(line + end for line, end in zip(body, endings))
    if draw(st.booleans()):
        data = BOM + data
    return data, body


# ------------------------------------------------------------------------------------------------ checks
def read_back(data: bytes) -> list[bytes]:
    """The lines of `data` by the spec (BOM dropped; LF, CRLF, lone CR), independently of rewardkit.data.lines."""
    data = data.removeprefix(BOM)
    pieces = ENDINGS.split(data)
    return pieces[:-1] if pieces and pieces[-1] == b"" else pieces


def check_validate(data: bytes) -> dict:
    """validate on any file: no exception but a UserError when nothing is kept; kept + rejected = read; every
    rejected line named once; in an explicit file the kept lines are the input lines byte-exact, in order."""
    from rewardkit.config import ValidateConfig
    from rewardkit.data.formats import EXPLICIT
    from rewardkit.data.validation import ValidateOutputs, validate_files
    from rewardkit.errors import UserError

    with tempfile.TemporaryDirectory() as tmp:
        source, out = Path(tmp) / "pairs.jsonl", ValidateOutputs(*(Path(tmp) / n for n in (
            "validated.jsonl", "rejects.jsonl", "validate.json")))
        source.write_bytes(data)
        try:
            metrics = validate_files(source, out, ValidateConfig(max_line_bytes=MAX_LINE_BYTES,
                                                                 max_reject_fraction=1.0), workers=1)
        except UserError as e:
            # the only refusals with max_reject_fraction 1: an empty file, a BOM alone, or no row kept
            assert str(e).startswith(("data file is empty", "data file has no lines", "no valid pairs",
                                      f"{source} looks like UTF-16")), str(e)
            event("refused")
            return {"outcome": "refused"}
        rejects = [json.loads(x) for x in out.rejects.read_bytes().splitlines()]
        kept = out.validated.read_bytes().splitlines(keepends=True)
    expected = read_back(data)
    assert metrics["lines_read"] == len(expected) == metrics["kept"] + metrics["rejected"]
    assert len(kept) == metrics["kept"] and len(rejects) == metrics["rejected"]
    rejected_lines = [r["line"] for r in rejects]
    assert len(set(rejected_lines)) == len(rejected_lines) and set(rejected_lines) <= set(range(1, len(expected) + 1))
    if metrics["format"] == EXPLICIT:
        assert kept == [line + b"\n" for n, line in enumerate(expected, 1) if n not in set(rejected_lines)]
    for line in kept:  # every kept row is explicit (text, or messages that stay messages until rendering)
        row = json.loads(line)
        assert all(type(row[k]) in (str, list) and row[k] for k in ("prompt", "chosen", "rejected"))
    event(f"format {metrics['format']}, {len(kept)} kept of {len(expected)}" if len(expected) < 3 else
          f"format {metrics['format']}")
    return {"outcome": "kept"}


def check_score_input(data: bytes) -> str:
    """The score CLI's input check on any file: the fields and row count, or one UserError line; nothing else."""
    from rewardkit.errors import UserError
    from rewardkit.scoring.jsonl import PAIR_FIELDS, RESPONSE_FIELDS, check_input

    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "in.jsonl"
        source.write_bytes(data)
        try:
            fields, n = check_input(source)
        except UserError as e:
            assert "\n" not in str(e)
            return "refused"
    assert fields in (PAIR_FIELDS, RESPONSE_FIELDS)
    assert n == sum(1 for line in data.removeprefix(BOM).split(b"\n") if line.strip())
    return "accepted"


def check_request(body: object) -> str:
    """The server's request models on any JSON value: a ValidationError, or a request meaning one thing (one
    prompt per response, nothing empty)."""
    from pydantic import ValidationError

    from rewardkit.serving.requests import PairsRequest, ScoreRequest

    outcomes = []
    for model in (ScoreRequest, PairsRequest):
        try:
            request = model.model_validate(body)
        except ValidationError:
            outcomes.append("refused")
            continue
        if model is ScoreRequest:
            assert request.responses and (request.prompt is None) != (request.prompts is None)
            assert request.prompts is None or len(request.prompts) == len(request.responses)
        else:
            kinds = [{isinstance(side, str) for side in (x.prompt, x.chosen, x.rejected)} for x in request.pairs]
            assert request.pairs and all(len(k) == 1 for k in kinds)  # all text, or all messages
        outcomes.append("accepted")
    return "/".join(outcomes)


messages = st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system", "robot"]),
                                           "content": texts}), max_size=3)
turns = texts | messages
requests = json_values | st.fixed_dictionaries({}, optional={
    "prompt": turns | json_values, "prompts": st.lists(turns, max_size=3) | json_values,
    "responses": st.lists(turns, max_size=3) | json_values, "normalize": st.booleans() | json_values,
    "pairs": st.lists(explicit_rows | json_values, max_size=3)})


# ------------------------------------------------------------------------------------------------ split
words = st.text(st.characters(exclude_categories=("Cs", "Cc")), min_size=1, max_size=8).filter(str.strip) | \
    st.sampled_from(["hi", "ß", "SS", "İ", "ﬀ"])  # casefold and Unicode-case edge cases


@st.composite
def spelled(draw, base: str) -> str | list:
    """One spelling of a prompt: case and whitespace varied (same group under normalise), maybe as messages."""
    text = draw(st.sampled_from([base, base.upper(), base.lower(), f"  {base}\t", base.replace(" ", "\n  ")]))
    return [{"role": "user", "content": text}] if draw(st.integers(0, 4)) == 0 else text


@st.composite
def split_rows(draw, bases: list[str], tag: str) -> list[bytes]:
    """Validated-style lines: each pair's prompt one spelling of one of `bases`."""
    picks = draw(st.lists(st.sampled_from(bases), min_size=1, max_size=40))
    return [dumped({"prompt": draw(spelled(b)), "chosen": f"c {tag}{i}", "rejected": f"r {tag}{i}"},
                   draw(st.booleans())) + b"\n" for i, b in enumerate(picks)]


@st.composite
def split_cases(draw) -> tuple[list[bytes], list[bytes], float, int]:
    """(old lines, appended lines, eval_fraction, seed); appended pairs reuse old prompts or bring new ones."""
    old_bases = draw(st.lists(words, min_size=1, max_size=16))
    new_bases = old_bases + draw(st.lists(words.map(lambda w: w + " new"), max_size=6))
    old = draw(split_rows(old_bases, "o"))
    new = draw(split_rows(new_bases, "n")) if draw(st.integers(0, 5)) else []
    fraction = draw(st.floats(0.01, 0.99) | st.sampled_from([0.1, 0.2, 0.3, 0.5]))  # mostly enough for one pair
    return old, new, fraction, draw(st.integers(0, 2 ** 32))


def spec_group(line: bytes, seed: int) -> int:
    """u of a line's prompt as rewardkit/data/splitting.py's docstring defines it (normalise written out here)."""
    from hashlib import blake2b

    from rewardkit.data.formats import render_plain_prompt

    prompt = " ".join(render_plain_prompt(json.loads(line)["prompt"]).split()).casefold()
    return int.from_bytes(blake2b(prompt.encode(), key=str(seed).encode(), digest_size=8).digest(), "big")


def expected_refusal(us: list[int], fraction: float) -> str | None:
    """The guard a split of pairs with these u must hit, by the docstring's rule, or None."""
    target = int(fraction * len(us) + 0.5)
    if target == 0:
        return "gives 0 eval pairs"
    groups, running = sorted(set(us)), 0
    for i, u in enumerate(groups):
        running += us.count(u)
        if running >= target:
            return "would put all" if i == len(groups) - 1 else None


def run_split(lines: list[bytes], fraction: float, seed: int) -> tuple[list[bytes], list[bytes]] | str:
    """(train lines, eval lines) of split_file on `lines`, or the UserError's text."""
    from rewardkit.config import SplitConfig
    from rewardkit.data.splitting import SplitOutputs, split_file
    from rewardkit.errors import UserError

    with tempfile.TemporaryDirectory() as tmp:
        source, out = Path(tmp) / "v.jsonl", SplitOutputs(*(Path(tmp) / n for n in ("t.jsonl", "e.jsonl", "m.json")))
        source.write_bytes(b"".join(lines))
        try:
            split_file(source, out, SplitConfig(eval_fraction=fraction, seed=seed), workers=1)
        except UserError as e:
            return str(e)
        return out.train.read_bytes().splitlines(keepends=True), out.eval.read_bytes().splitlines(keepends=True)


def check_one_split(lines: list[bytes], fraction: float, seed: int) -> tuple[set[bytes], int] | None:
    """One split: refused exactly when a guard applies; else sides partition the input in order, no prompt group
    on both sides, eval whole groups of the smallest u, at least the target and under it plus one group. Returns
    (eval lines, cut-off u) or None when refused."""
    us = [spec_group(x, seed) for x in lines]
    result, refusal = run_split(lines, fraction, seed), expected_refusal(us, fraction)
    if isinstance(result, str):
        assert refusal is not None and refusal in result, (result, refusal)
        event(f"refused: {refusal}")
        return None
    assert refusal is None, refusal
    train, evals = result
    eval_set = set(evals)
    assert [x for x in lines if x not in eval_set] == train and [x for x in lines if x in eval_set] == evals
    eval_u = {u for x, u in zip(lines, us) if x in eval_set}
    assert eval_u, "eval is empty although the target is at least one pair"
    assert not eval_u & {u for x, u in zip(lines, us) if x not in eval_set}  # no group on both sides
    cut = max(eval_u)
    assert eval_u == {u for u in us if u <= cut}  # the groups of the smallest u
    target = int(fraction * len(lines) + 0.5)
    assert target <= len(evals) < target + us.count(cut)  # within one group (the last taken) of the target
    return eval_set, cut


def check_split(old: list[bytes], new: list[bytes], fraction: float, seed: int) -> None:
    """check_one_split on the old lines and on old + appended; an old line changes side only when its u lies
    between the two cut-offs, every other old line keeps its side."""
    before = check_one_split(old, fraction, seed)
    after = check_one_split(old + new, fraction, seed) if new else before
    if before is None or after is None:
        return
    (was_eval, cut_old), (is_eval, cut_new) = before, after
    low, high = sorted((cut_old, cut_new))
    moved = [x for x in old if (x in was_eval) != (x in is_eval)]
    assert all(low < spec_group(x, seed) <= high for x in moved)
    event("appended: some moved" if moved else "appended: none moved" if new else "nothing appended")
