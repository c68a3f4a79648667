"""Scoring: the JSONL scorer reproduces the evaluate stage, passes rows through, normalizes, rejects bad rows
clearly; the Python API matches it; a sequence's reward does not depend on its batch or the number of cores."""
import json
import random
import time

import pytest
import torch

from rewardkit import RewardScorer, load_artifact
from rewardkit.errors import UserError, run_main
from rewardkit.modeling.batching import pad
from rewardkit.modeling.inference import score_sequences
from rewardkit.modeling.model import RewardModel
from rewardkit.scoring import jsonl as jsonl_scoring
from stages import score
from tests.conftest import easy_rows, read_jsonl, write_jsonl


@pytest.fixture(scope="module")
def work(trained_model):
    return trained_model


def score_cli(work, tmp_path, rows, *flags, name="in.jsonl"):
    """Score `rows` in-process through the CLI's entry point; returns the output rows."""
    source, out = write_jsonl(tmp_path / name, rows), tmp_path / f"out-{name}"
    score.main(["--model", str(work / "models/reward_model"), "--input", str(source), "--output", str(out), *flags])
    return read_jsonl(out)


def test_pairs_file_reproduces_the_evaluate_stage(work, tmp_path):
    out = tmp_path / "scored.jsonl"
    score.main(["--model", str(work / "models/reward_model"), "--input", str(work / "data/eval.jsonl"),
                "--output", str(out), "--batch-size", "5"])
    evaluated, scored = read_jsonl(work / "data/eval_scores.jsonl"), read_jsonl(out)
    assert len(scored) == len(evaluated) == 12
    for e, s, row in zip(evaluated, scored, read_jsonl(work / "data/eval.jsonl")):
        assert s == {**row, "reward_chosen": s["reward_chosen"], "reward_rejected": s["reward_rejected"],
                     "preferred": s["preferred"]}
        assert s["reward_chosen"] == pytest.approx(e["reward_chosen"], abs=1e-5)
        assert s["reward_rejected"] == pytest.approx(e["reward_rejected"], abs=1e-5)
        assert s["preferred"] == {1.0: "chosen", 0.0: "rejected", 0.5: "tie"}[e["correct"]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scored.jsonl"]  # no temporary file left behind


def test_response_rows_pass_through_in_order_across_chunks(work, tmp_path, monkeypatch):
    pairs = read_jsonl(work / "data/eval.jsonl")
    rows = [{"id": f"{i}-{side}", "prompt": p["prompt"], "response": p[side], "meta": {"side": side, "n": [i]}}
            for i, p in enumerate(pairs) for side in ("chosen", "rejected")]
    random.Random(0).shuffle(rows)
    rows[3]["note"] = "caf\u00e9 \udc80"  # non-ASCII and a lone surrogate escape, passed through as they are
    monkeypatch.setattr(jsonl_scoring, "CHUNK_ROWS", 5)  # 24 rows in five chunks
    out = score_cli(work, tmp_path, rows)
    assert [{k: v for k, v in r.items() if k != "reward"} for r in out] == rows
    evaluated = read_jsonl(work / "data/eval_scores.jsonl")
    for r in out:
        i, side = r["id"].split("-")
        assert r["reward"] == pytest.approx(evaluated[int(i)][f"reward_{side}"], abs=1e-5)


def test_normalize_uses_the_saved_reward_mean_and_std(work, tmp_path):
    meta = json.loads((work / "models/reward_model/reward_model.json").read_text())
    assert meta["reward_std"] > 0
    rows = [{"prompt": r["prompt"], "response": r["chosen"]} for r in easy_rows(6, seed=5)]
    raw = [r["reward"] for r in score_cli(work, tmp_path, rows)]
    normalized = [r["reward"] for r in score_cli(work, tmp_path, rows, "--normalize", name="n.jsonl")]
    assert normalized == pytest.approx([(r - meta["reward_mean"]) / meta["reward_std"] for r in raw], rel=1e-5)


GOOD = {"prompt": "User: hi\nAssistant:", "response": " Hello."}


@pytest.mark.parametrize("lines, message", [
    ([GOOD, GOOD, {"prompt": "p"}], "in.jsonl line 3: field 'response' is missing"),
    ([GOOD, {"prompt": "p", "response": 5}],
     "in.jsonl line 2: field 'response' must be a string or a list of messages, got a number"),
    ([GOOD, '{"prompt": "p", "response": "r"'], "in.jsonl line 2: not valid JSON"),
    (['["prompt", "response"]'], "in.jsonl line 1: expected a JSON object, got a list"),
    ([GOOD, '{"prompt": "p", "response": "\\ud800"}'], "in.jsonl line 2: field 'response' has an unpaired"),
    ([{"prompt": "p", "chosen": "a", "rejected": "b"}, "", {"prompt": "p", "chosen": "a"}],
     "in.jsonl line 3: field 'rejected' is missing"),
    ([GOOD, {"prompt": "p", "response": [{"role": "assistant", "content": "r"}]}],
     "in.jsonl line 2: response is a list of messages but prompt is not: send both as text or both as messages"),
    ([{"prompt": [{"role": "user", "content": "p"}], "chosen": [{"role": "user", "content": "a"}], "rejected": "b"}],
     "in.jsonl line 1: chosen must start with an assistant message, got 'user'"),
    (["", "  "], "in.jsonl has no rows to score"),
    (None, "input file not found"),
    ([GOOD], "is not a reward model"),
])
def test_bad_input_stops_with_one_line_and_exit_2(work, tmp_path, capsys, lines, message):
    source, model = tmp_path / "in.jsonl", work / "models/reward_model"
    if lines is not None:
        source.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    if message == "is not a reward model":
        model = work / "data/tokens/tokenizer"  # a Hugging Face tokenizer directory, not one the train stage wrote
    argv = ["--model", str(model), "--input", str(source), "--output", str(tmp_path / "out.jsonl")]
    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: score.main(argv))  # what `python -m stages.score` runs
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "out.jsonl").exists()


def test_python_api_equals_the_cli(work, tmp_path):
    rows = [{"prompt": r["prompt"], "response": r[side]}
            for r in easy_rows(5, seed=7) for side in ("chosen", "rejected")]
    cli = [r["reward"] for r in score_cli(work, tmp_path, rows)]
    prompts, responses = [r["prompt"] for r in rows], [r["response"] for r in rows]
    scorer = RewardScorer.from_pretrained(work / "models/reward_model", device="cpu")
    assert scorer.score(prompts, responses) == cli
    assert scorer.score(prompts[:1], responses[:1]) == pytest.approx(cli[:1], abs=1e-6)
    assert scorer.score(prompts[0], responses[:2]) == pytest.approx(cli[:2], abs=1e-6)  # best-of-n: one prompt
    assert scorer.score([], []) == []
    with pytest.raises(ValueError, match="2 prompts but 1 responses"):
        scorer.score(prompts[:2], responses[:1])


def test_messages_are_rendered_as_the_training_data_was(work, tmp_path):
    scorer = RewardScorer.from_pretrained(work / "models/reward_model", device="cpu")
    assert scorer.meta["rendering"] == "plain"
    prompt = [{"role": "user", "content": "what is 2 plus 3?"}]
    responses = [[{"role": "assistant", "content": "The sum is 5."}], [{"role": "assistant", "content": "About 6."}]]
    as_text = scorer.score("User: what is 2 plus 3?\nAssistant:", [" The sum is 5.", " About 6."])
    assert scorer.score(prompt, responses) == as_text  # one message-list prompt for n responses
    rows = [{"prompt": prompt, "response": r} for r in responses]
    assert [r["reward"] for r in score_cli(work, tmp_path, rows)] == as_text
    bad = [{"prompt": [{"role": "robot", "content": "x"}], "response": " y"}]
    with pytest.raises(UserError, match="line 1: prompt message 1 has role 'robot'"):
        score_cli(work, tmp_path, bad, name="bad.jsonl")


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_a_reward_does_not_depend_on_its_batch(work, pooling):
    artifact, tokenizer, meta = load_artifact(work / "models/reward_model")
    model = RewardModel(artifact.hf, pooling).eval()  # same weights, either pooling
    scorer = RewardScorer(model, tokenizer, meta, torch.device("cpu"))
    rows = easy_rows(6, seed=3)
    seqs = scorer.encode([r["prompt"] for r in rows] + ["User: hi\nAssistant:"] * 2,
                         [r["chosen"] for r in rows] + [" Hello.", " Hello there, how can I help you today?"])
    assert len({len(s) for s in seqs}) > 2  # different lengths, so the batch pads each one differently
    alone = torch.cat([score_sequences(model, [s], tokenizer.pad_token_id, 1, torch.device("cpu")) for s in seqs])
    together = score_sequences(model, seqs, tokenizer.pad_token_id, 64, torch.device("cpu"))
    order = list(reversed(range(len(seqs))))
    reordered = score_sequences(model, [seqs[i] for i in order], tokenizer.pad_token_id, 3, torch.device("cpu"))
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=0)
    torch.testing.assert_close(reordered, alone[order], atol=1e-5, rtol=0)
    ids, mask = pad(seqs[:1] * 2, tokenizer.pad_token_id, multiple=64)  # heavy padding of one short sequence
    with torch.inference_mode():
        torch.testing.assert_close(model(ids, mask), alone[:1].expand(2), atol=1e-5, rtol=0)


def test_cpu_scoring_is_bit_identical_on_any_number_of_cores(work, monkeypatch):
    from rewardkit.modeling import batching

    model, tokenizer, _ = load_artifact(work / "models/reward_model")
    rows = easy_rows(40, seed=4)
    seqs = RewardScorer(model, tokenizer, {"max_length": 64}, torch.device("cpu")).encode(
        [r["prompt"] for r in rows] * 2, [r["chosen"] for r in rows] + [r["rejected"] for r in rows])
    monkeypatch.setattr(batching, "CPU_BATCH_TOKENS", 96)  # many small batches, so the workers share the work
    assert len(batching.inference_batches([len(s) for s in seqs], 16, torch.device("cpu"))) > 8
    threads = torch.get_num_threads()
    try:
        results = []
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            results.append(score_sequences(model, seqs, tokenizer.pad_token_id, 16, torch.device("cpu")))
            assert torch.get_num_threads() == n  # the workers' single intra-op thread is theirs alone
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(r, results[0]) for r in results)
    alone = torch.cat([score_sequences(model, [s], tokenizer.pad_token_id, 1, torch.device("cpu")) for s in seqs[:5]])
    torch.testing.assert_close(results[0][:5], alone, atol=1e-5, rtol=0)


def test_a_lone_batch_is_scored_on_every_core_bit_identically(work):
    """Fewer batches than cores (one best-of-n group packs into one batch): the worker gets the spare cores as
    intra-op threads, and the rewards are the same bits as on one core."""
    model, tokenizer, _ = load_artifact(work / "models/reward_model")
    rows = easy_rows(4, seed=5)
    seqs = RewardScorer(model, tokenizer, {"max_length": 64}, torch.device("cpu")).encode(
        [r["prompt"] for r in rows], [r["chosen"] for r in rows])
    seen: list[int] = []
    hook = model.register_forward_pre_hook(lambda module, inputs: seen.append(torch.get_num_threads()))
    threads = torch.get_num_threads()
    try:
        results = []
        for n in (1, 2):
            torch.set_num_threads(n)
            results.append(score_sequences(model, seqs, tokenizer.pad_token_id, 16, torch.device("cpu")))
    finally:
        torch.set_num_threads(threads)
        hook.remove()
    assert seen == [1, 2]  # one batch each time, on all the caller's threads
    assert torch.equal(results[0], results[1])


def test_a_scoring_error_stops_the_workers():
    calls = []

    def failing_model(ids, mask, types=None):
        calls.append(len(ids))
        time.sleep(0.02)
        raise RuntimeError("boom")

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            score_sequences(failing_model, [[5] * 10] * 200, 0, 1, torch.device("cpu"))
    finally:
        torch.set_num_threads(threads)
    assert len(calls) < 20  # the queued batches (200) were dropped, not run


def test_score_precision_flag_is_honoured(work, tmp_path):
    """#24: --precision (and RewardScorer's precision) sets the body's precision; rewards are fp32 either way."""
    rows = [{"prompt": r["prompt"], "response": r["chosen"]} for r in easy_rows(12, seed=3)]
    scored = {p: [r["reward"] for r in score_cli(work, tmp_path, rows, "--precision", p, name=f"{p}.jsonl")]
              for p in ("fp32", "bf16")}
    assert scored["fp32"] != scored["bf16"]
    assert scored["bf16"] == pytest.approx(scored["fp32"], abs=0.05 * max(map(abs, scored["fp32"])))
    scorer = RewardScorer.from_pretrained(work / "models/reward_model", device="cpu", precision="fp32")
    assert scorer.precision == "fp32" and scorer.score([r["prompt"] for r in rows],
                                                       [r["response"] for r in rows]) == scored["fp32"]
    with pytest.raises(SystemExit) as stopped:
        score.parser().parse_args(["--input", "x", "--output", "y", "--precision", "fp16"])
    assert stopped.value.code == 2


def test_serve_precision_reaches_the_scoring_path(work, monkeypatch):
    """#24: serve's --precision goes into ServeConfig, the runner loads the scorer with it, and the service's
    batches score at the scorer's precision."""
    from rewardkit.serving import runner
    from rewardkit.serving.config import ServeConfig
    from rewardkit.serving.service import ScoringService
    from stages import serve

    seen = {}
    monkeypatch.setattr(serve, "serve", lambda cfg: seen.setdefault("cfg", cfg))
    serve.main(["--model", str(work / "models/reward_model"), "--precision", "bf16"])
    assert seen["cfg"].precision == "bf16"

    class Loaded(Exception):
        pass

    def from_pretrained(model_dir, device, precision):
        seen["loaded"] = precision
        raise Loaded

    monkeypatch.setattr(runner.RewardScorer, "from_pretrained", from_pretrained)
    with pytest.raises(Loaded):
        runner.serve(seen["cfg"])
    assert seen["loaded"] == "bf16"
    monkeypatch.undo()

    items = [(ids, None) for ids in RewardScorer.from_pretrained(work / "models/reward_model", device="cpu").encode(
        [r["prompt"] for r in easy_rows(6, seed=4)], [r["chosen"] for r in easy_rows(6, seed=4)])]
    rewards = {}
    for precision in ("fp32", "bf16"):
        scorer = RewardScorer.from_pretrained(work / "models/reward_model", device="cpu", precision=precision)
        rewards[precision] = ScoringService(scorer, ServeConfig(model=work / "models/reward_model"))._forward(items)
        assert rewards[precision] == scorer.score([r["prompt"] for r in easy_rows(6, seed=4)],
                                                  [r["chosen"] for r in easy_rows(6, seed=4)])
    assert rewards["fp32"] != rewards["bf16"]
