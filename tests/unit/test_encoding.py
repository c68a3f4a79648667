"""Pair encoding: the text-pair template, the truncation policy and its counts (as the token store records them)."""
import pytest
from transformers import AutoConfig, AutoTokenizer

from rewardkit.encoding.store import TokenStore
from rewardkit.encoding.templates import PairTemplate, encode_both_answers, pair_template, truncate_pair
from rewardkit.encoding.tokenization import store_rows
from rewardkit.errors import UserError
from tests.conftest import build_tiny_base, easy_rows

T = PairTemplate(prefix=(1,), middle=(2,), suffix=(2,))


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    rows = easy_rows(50) + [{"prompt": "User: long " * 40, "chosen": " yes " * 40, "rejected": " no " * 40}]
    return build_tiny_base(tmp_path_factory.mktemp("m") / "base", rows)


@pytest.fixture(scope="module")
def tokenizer(base):
    return AutoTokenizer.from_pretrained(base)


def test_template_is_learnt_from_the_tokenizer(tokenizer):
    t = pair_template(tokenizer)
    assert (t.prefix, t.middle, t.suffix) == ((tokenizer.cls_token_id,), (tokenizer.sep_token_id,),
                                              (tokenizer.sep_token_id,))


def test_no_truncation_when_it_fits():
    assert truncate_pair([10, 11], [20], T, 8) == ([1, 10, 11, 2, 20, 2], False, False)
    # a prompt shorter than the room left is kept whole, wherever it falls against the room
    for room in range(3, 40):
        prompt = list(range(100, 100 + room - 1))
        assert truncate_pair(prompt, [20], T, room + 4)[0] == [1, *prompt, 2, 20, 2]


def test_prompt_is_cut_from_the_left_and_response_kept_whole():
    assert truncate_pair([10, 11, 12], [20, 21], T, 8) == ([1, 10, 11, 12, 2, 20, 21, 2], False, False)
    ids, prompt_cut, response_cut = truncate_pair([10, 11, 12, 13, 14], [20, 21], T, 8)
    assert ids == [1, 12, 13, 14, 2, 20, 21, 2]
    assert (prompt_cut, response_cut) == (True, False)


def test_only_a_response_longer_than_the_budget_is_cut_from_the_right():
    ids, prompt_cut, response_cut = truncate_pair([10, 11], [20, 21, 22, 23, 24, 25, 26], T, 8)
    assert ids == [1, 2, 20, 21, 22, 23, 24, 2]
    assert (prompt_cut, response_cut) == (True, True)


def test_max_length_without_room_for_text_is_a_clear_error():
    with pytest.raises(UserError, match="train.max_length=3"):
        truncate_pair([10], [20], T, 3)


def test_encoding_matches_tokenizer_text_pair(tokenizer):
    row = easy_rows(1, seed=5)[0]
    enc = encode_both_answers(tokenizer, [row], max_length=512)
    assert enc.ids[0] == tokenizer(row["prompt"], row["chosen"])["input_ids"]
    assert enc.ids[1] == tokenizer(row["prompt"], row["rejected"])["input_ids"]


def test_truncation_counts_and_identical_pairs(tmp_path, base, tokenizer):
    short = easy_rows(3, seed=1)
    long_prompt = {"prompt": "User: " + "what is the rate " * 60 + "\nAssistant:", "chosen": " five",
                   "rejected": " six"}
    long_response = {"prompt": "User: hi\nAssistant:", "chosen": " the rate" * 80 + " five",
                     "rejected": " the rate" * 80 + " six"}  # differ only beyond the budget
    long_both = {"prompt": "User: hi\nAssistant:", "chosen": " five" + " the rate" * 80, "rejected": " six"}
    limit = 128
    assert all(len(tokenizer(r["prompt"], r[k])["input_ids"]) <= limit for r in short for k in ("chosen", "rejected"))
    rows = short + [long_prompt, long_response, long_both]
    store = store_rows(rows, tmp_path / "store", tokenizer, AutoConfig.from_pretrained(base), limit)
    assert {k: store.meta[k] for k in ("pairs_read", "pairs_used", "identical_after_truncation", "prompt_truncated",
                                       "response_truncated")} == {
        "pairs_read": 6, "pairs_used": 5, "identical_after_truncation": 1, "prompt_truncated": 3,
        "response_truncated": 2}
    row_index = store.columns("row")["row"].tolist()
    assert row_index == [0, 1, 2, 3, 5]
    assert store.sequence_lengths().max() <= limit
    # the long prompt kept its end (the question just before "Assistant:") and the whole response
    chosen = store.sequence(2 * row_index.index(3)).tolist()
    response = tokenizer(" five", add_special_tokens=False)["input_ids"]
    prompt = tokenizer(long_prompt["prompt"], add_special_tokens=False)["input_ids"]
    keep = limit - 3 - len(response)
    assert chosen == [tokenizer.cls_token_id, *prompt[-keep:], tokenizer.sep_token_id, *response,
                      tokenizer.sep_token_id]


def test_margin_is_read_when_enabled(tmp_path, base, tokenizer):
    rows = [dict(r, margin=m) for r, m in zip(easy_rows(3), [0.5, 2, None])]
    store_rows(rows, tmp_path / "store", tokenizer, AutoConfig.from_pretrained(base), 128)
    assert TokenStore(tmp_path / "store", use_margin=True).margin.tolist() == [0.5, 2.0, 0.0]
    assert TokenStore(tmp_path / "store", use_margin=False).margin.tolist() == [0.0, 0.0, 0.0]
