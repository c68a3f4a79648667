"""`python -m stages.serve` as a real process on a loopback port: every endpoint, rewards equal to RewardScorer's,
coalescing of concurrent requests, bad requests, the API key (header and the OpenRLHF URL prefix), the Python
client, and SIGTERM draining. Two servers start in parallel once for the module: `keyed` (API key, small limits)
and `slow` (no key, a long batching window that keeps requests in flight for the SIGTERM test)."""
from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
KEY = "test-key-0123456789abcdef"
WORDS = "the a money bank rate year interest tax fund stock bond save spend loan credit debt cash price".split()


def texts(rng: random.Random, n: int, lo: int = 2, hi: int = 30) -> list[str]:
    return [" ".join(rng.choices(WORDS, k=rng.randint(lo, hi))) for _ in range(n)]


def tiny_artifact(out: Path, sizes: dict, vocab_size: int) -> Path:
    """A random-init classifier of `sizes` as a reward model directory with reward_model.json (no training)."""
    import torch

    from rewardkit.encoding.templates import TRUNCATION_POLICY
    from rewardkit.modeling.artifact import save_artifact
    from rewardkit.modeling.model import load_base
    from rewardkit.modeling.scratch import build_scratch
    from rewardkit.scoring.scorer import RewardScorer

    base = build_scratch(sizes, texts(random.Random(0), 60), vocab_size, out / "base", 0)
    model, tokenizer = load_base(str(base), "cls", 0)
    meta = {"base_model": "tiny", "pooling": "cls", "max_length": 48, "truncation": TRUNCATION_POLICY}
    template = RewardScorer(model, tokenizer, meta, torch.device("cpu")).template
    save_artifact(model, tokenizer, out / "rm", {
        **meta, "input_format": template.recipe, "input_kind": template.kind, "segment_ids": template.segment_ids,
        "model_type": model.hf.config.model_type, "data_sha256": "0", "reward_mean": 0.25, "reward_std": 2.0})
    return out / "rm"


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> Path:
    """A random-init tiny DeBERTa-v3 reward model directory."""
    from rewardkit.encoding.scratch import DEBERTA_V3_SMALL

    sizes = dict(DEBERTA_V3_SMALL, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128)
    return tiny_artifact(tmp_path_factory.mktemp("served"), sizes, 400)


@pytest.fixture(scope="module")
def scorer(artifact):
    from rewardkit.scoring.scorer import RewardScorer

    return RewardScorer.from_pretrained(artifact, "cpu")


class Server:
    """A `python -m stages.serve` child process on a free loopback port; its output goes to a log file."""

    def __init__(self, log: Path, *args: str):
        self.log = log
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        with open(log, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "stages.serve", "--port", "0", *args], cwd=REPO_ROOT,
                                         env=env, stdout=out, stderr=subprocess.STDOUT)
        self.url = ""

    def wait_ready(self, timeout: float = 90) -> Server:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", self.log.read_text(errors="replace"))
            if found:
                self.url = found.group(1)
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"server did not start:\n{self.log.read_text(errors='replace')[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


@pytest.fixture(scope="module")
def servers(artifact, tmp_path_factory):
    logs = tmp_path_factory.mktemp("logs")
    key_file = logs / "rm.key"
    key_file.write_text(KEY + "\n")
    model = ["--model", str(artifact), "--device", "cpu"]
    keyed = Server(logs / "keyed.log", *model, "--api-key-file", str(key_file), "--max-wait-ms", "100",
                   "--max-pairs", "8", "--max-body-mb", "0.01", "--eos-text", "<|im_end|>")
    slow = Server(logs / "slow.log", *model, "--max-wait-ms", "2500", "--max-batch-tokens", "65536")
    try:
        yield {"keyed": keyed.wait_ready(), "slow": slow.wait_ready()}
    finally:
        keyed.stop()
        slow.stop()


@pytest.fixture(scope="module")
def api(servers):
    with httpx.Client(base_url=servers["keyed"].url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as c:
        yield c


def metric(client: httpx.Client, name: str) -> float:
    found = re.search(rf"^{re.escape(name)} (\S+)$", client.get("/metrics").text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


# ------------------------------------------------------------------------------------------------- endpoints
def test_score_equals_the_offline_scorer_for_both_request_forms_and_normalized(api, scorer):
    rng = random.Random(1)
    prompts, responses = texts(rng, 7), texts(rng, 7, hi=60)  # some longer than max_length: truncation as offline
    got = api.post("/score", json={"prompts": prompts, "responses": responses}).json()["rewards"]
    assert got == pytest.approx(scorer.score(prompts, responses), abs=1e-5)
    one = api.post("/score", json={"prompt": prompts[0], "responses": responses}).json()["rewards"]
    assert one == pytest.approx(scorer.score(prompts[0], responses), abs=1e-5)
    z = api.post("/score", json={"prompts": prompts, "responses": responses, "normalize": True}).json()["rewards"]
    assert z == pytest.approx(scorer.score(prompts, responses, normalize=True), abs=1e-5)
    assert z == pytest.approx([(r - 0.25) / 2.0 for r in got], abs=1e-5)


def test_score_pairs_gives_both_rewards_and_the_preferred_side(api, scorer):
    rng = random.Random(2)
    pairs = [{"prompt": p, "chosen": c, "rejected": r} for p, c, r in zip(texts(rng, 5), texts(rng, 5), texts(rng, 5))]
    got = api.post("/score_pairs", json={"pairs": pairs}).json()["pairs"]
    chosen = scorer.score([p["prompt"] for p in pairs], [p["chosen"] for p in pairs])
    rejected = scorer.score([p["prompt"] for p in pairs], [p["rejected"] for p in pairs])
    assert [g["reward_chosen"] for g in got] == pytest.approx(chosen, abs=1e-5)
    assert [g["reward_rejected"] for g in got] == pytest.approx(rejected, abs=1e-5)
    assert [g["preferred"] for g in got] == ["chosen" if g["reward_chosen"] > g["reward_rejected"] else "rejected"
                                             for g in got]


def test_get_reward_speaks_openrlhfs_protocol_and_splits_the_prompt_off_each_query(servers, scorer):
    """OpenRLHF's client posts {"query", "prompts", "labels"} with only a Content-Type header (no key header) and
    reads "rewards" (newer versions also "scores" and "extra_logs"); the key travels in the URL prefix."""
    prompts = ["User: how much tax on a bond?\nAssistant:", "User: save or spend?\nAssistant:"]
    responses = [" The bond pays interest, taxed yearly.", " Save the cash."]
    queries = [prompts[0] + responses[0] + "<|im_end|>", "<s>" + prompts[1] + responses[1]]  # policy EOS, BOS
    url = f"{servers['keyed'].url}/k/{KEY}/get_reward"
    body = {"query": queries, "prompts": prompts, "labels": [None, None]}
    answer = httpx.post(url, json=body, headers={"Content-Type": "application/json"}, timeout=30)
    assert answer.status_code == 200
    data = answer.json()
    assert set(data) == {"rewards", "scores", "extra_logs"} and data["scores"] == data["rewards"]
    assert data["rewards"] == pytest.approx(scorer.score(prompts, responses), abs=1e-5)
    z = httpx.post(url + "?normalize=true", json=body, timeout=30).json()["rewards"]
    assert z == pytest.approx(scorer.score(prompts, responses, normalize=True), abs=1e-5)


def test_health_and_metrics(servers, api):
    health = httpx.get(servers["keyed"].url + "/health", timeout=10)  # no key needed
    assert health.status_code == 200 and health.json()["status"] == "ok"
    metrics = api.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    for name in ("rewardkit_requests_total", "rewardkit_request_seconds_bucket", "rewardkit_sequences_scored_total",
                 "rewardkit_pairs_scored_total", "rewardkit_batch_sequences_bucket", "rewardkit_queue_depth",
                 "rewardkit_requests_in_flight"):
        assert name in metrics.text
    assert metric(api, 'rewardkit_requests_total{endpoint="/health",status="200"}') >= 1
    assert metric(api, "rewardkit_sequences_scored_total") > 0


def test_concurrent_requests_are_coalesced_into_shared_batches(api, scorer):
    rng = random.Random(3)
    requests = [(texts(rng, 3), texts(rng, 3, hi=40)) for _ in range(12)]
    batches_before = metric(api, "rewardkit_batch_requests_count")
    alone_before = metric(api, 'rewardkit_batch_requests_bucket{le="1.0"}')

    async def send_all():
        async with httpx.AsyncClient(base_url=str(api.base_url), headers=dict(api.headers), timeout=30) as client:
            return await asyncio.gather(*(client.post("/score", json={"prompts": p, "responses": r})
                                          for p, r in requests))

    answers = asyncio.run(send_all())
    for (prompts, responses), answer in zip(requests, answers):
        assert answer.status_code == 200
        assert answer.json()["rewards"] == pytest.approx(scorer.score(prompts, responses), abs=1e-5)
    batches = metric(api, "rewardkit_batch_requests_count") - batches_before
    shared = batches - (metric(api, 'rewardkit_batch_requests_bucket{le="1.0"}') - alone_before)
    assert shared >= 1 and batches < len(requests)  # some forward served several requests


# ------------------------------------------------------------------------------------------------ bad requests
LONG = "money " * 2000  # over the keyed server's 10 KiB body limit


@pytest.mark.parametrize("path, body, status, message", [
    ("/score", b'{"prompt": "x", "responses": [', 400, "malformed JSON"),
    ("/score", b'["a list"]', 422, "valid dictionary"),
    ("/score", {"prompt": 3, "responses": ["a"]}, 422, "prompt: must be a string or a list of messages"),
    ("/score", {"prompt": "x", "responses": "a"}, 422, "responses: Input should be a valid list"),
    ("/score", {"prompt": "x", "responses": [1]}, 422, "responses.0"),
    ("/score", {"prompt": "x", "responses": []}, 422, "'responses' is empty"),
    ("/score", {"prompts": ["x"], "responses": ["a", "b"]}, 422, "1 prompts but 2 responses"),
    ("/score", {"responses": ["a"]}, 422, "either 'prompts'"),
    ("/score", {"prompt": "x", "prompts": ["x"], "responses": ["a"]}, 422, "either 'prompts'"),
    ("/score", {"prompt": "x", "responses": ["a"], "normalise": True}, 422, "normalise: Extra inputs"),
    ("/score", {"prompt": "x", "responses": ["a"], "normalize": "yes"}, 422, "normalize"),
    ("/score", b'{"prompt": "x", "responses": ["\\ud800"]}', 422, "responses[0] has an unpaired surrogate"),
    ("/score", {"prompt": "x", "responses": ["a"] * 9}, 413, "at most 8 (its --max-pairs)"),
    ("/score", {"prompt": "x", "responses": [LONG]}, 413, "--max-body-mb"),
    ("/score_pairs", {"pairs": []}, 422, "'pairs' is empty"),
    ("/score_pairs", {"pairs": [{"prompt": "x", "chosen": "a"}]}, 422, "pairs.0.rejected: Field required"),
    ("/score_pairs", {"pairs": [{"prompt": "x", "chosen": "a", "rejected": "b"}] * 9}, 413, "9 pairs"),
    ("/get_reward", {"query": ["x a"]}, 422, "'prompts' is missing"),
    ("/get_reward", {"query": [], "prompts": []}, 422, "'query' is empty"),
    ("/get_reward", {"query": ["x a", "y"], "prompts": ["x"]}, 422, "2 queries but 1 prompts"),
    ("/get_reward", {"query": ["x a", "y b"], "prompts": ["x", "z"]}, 422, "query [1] does not contain its prompt"),
    ("/get_reward?normalize=maybe", {"query": ["x a"], "prompts": ["x"]}, 422, "use true or false"),
    ("/nowhere", {}, 404, "Not Found"),
])
def test_bad_requests_get_a_json_error_with_a_4xx_code(api, path, body, status, message):
    kwargs = {"content": body, "headers": {"Content-Type": "application/json"}} if isinstance(body, bytes) else \
        {"json": body}
    answer = api.post(path, **kwargs)
    assert answer.status_code == status, answer.text
    assert message in answer.json()["error"]


def test_wrong_method_is_a_json_405(api):
    answer = api.get("/score")
    assert answer.status_code == 405 and "Method Not Allowed" in answer.json()["error"]


# ------------------------------------------------------------------------------------------------------- auth
@pytest.mark.parametrize("path, headers", [
    ("/score", {}),
    ("/score", {"Authorization": "Bearer wrong-key-0123456789"}),
    ("/score", {"Authorization": f"Basic {KEY}"}),
    (f"/k/{KEY[:-1]}/score", {}),
    ("/metrics", {}),
])
def test_a_missing_or_wrong_key_is_401(servers, path, headers):
    method = "GET" if path == "/metrics" else "POST"
    answer = httpx.request(method, servers["keyed"].url + path, json={"prompt": "x", "responses": ["a"]},
                           headers=headers, timeout=10)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer <key>" in answer.json()["error"]


def test_the_key_works_as_header_or_url_prefix_and_the_metrics_never_show_it(servers, api):
    body = {"prompt": "x", "responses": ["a"]}
    by_header = api.post("/score", json=body).json()
    by_prefix = httpx.post(f"{servers['keyed'].url}/k/{KEY}/score", json=body, timeout=10).json()
    assert by_header == by_prefix
    assert KEY not in api.get("/metrics").text
    assert metric(api, 'rewardkit_requests_total{endpoint="/score",status="401"}') >= 1


def test_a_non_loopback_bind_without_a_key_or_a_weak_key_refuses_to_start(artifact, tmp_path):
    short = tmp_path / "short.key"
    short.write_text("abc")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    for extra, message in ((["--host", "0.0.0.0"], "--host 0.0.0.0 is reachable from other machines"),
                           (["--api-key-file", str(short)], "16 or more URL-safe characters")):
        done = subprocess.run([sys.executable, "-m", "stages.serve", "--model", str(artifact), *extra], cwd=REPO_ROOT,
                              env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2
        assert done.stderr.strip().startswith("error: ") and len(done.stderr.strip().splitlines()) == 1
        assert message in done.stderr


# ----------------------------------------------------------------------------------------------------- client
def test_the_python_client_and_its_trl_reward_function_form(servers, scorer):
    from rewardkit.serving.client import RemoteRewardError, RemoteRewardModel

    rng = random.Random(4)
    prompts, responses = texts(rng, 11), texts(rng, 11)
    with RemoteRewardModel(servers["keyed"].url, api_key=KEY, chunk=4, normalize=True) as rm:  # 11 = 4 + 4 + 3
        assert rm.score(prompts, responses) == pytest.approx(scorer.score(prompts, responses), abs=1e-5)
        assert rm.score(prompts[0], responses[:3]) == pytest.approx(scorer.score(prompts[0], responses[:3]), abs=1e-5)
        assert rm.score([], []) == []
        trl = rm(prompts=prompts, completions=responses, completion_ids=None, trainer_state=None)
        assert trl == pytest.approx(scorer.score(prompts, responses, normalize=True), abs=1e-5)
        assert rm.__name__ == "remote_reward_model"
        pairs = rm.score_pairs([{"prompt": "x", "chosen": "bank", "rejected": "tax"}])
        assert [pairs[0]["reward_chosen"], pairs[0]["reward_rejected"]] == pytest.approx(
            scorer.score(["x", "x"], ["bank", "tax"]), abs=1e-5)
        assert rm.health()["status"] == "ok"
        chat = [[{"role": "user", "content": p}] for p in prompts[:3]], [[{"role": "assistant", "content": r}]
                                                                          for r in responses[:3]]
        assert rm(prompts=chat[0], completions=chat[1]) == pytest.approx(scorer.score(*chat, normalize=True),
                                                                         abs=1e-5)  # TRL's conversational form
        assert rm.score(chat[0][0], chat[1]) == pytest.approx(scorer.score(chat[0][0], chat[1]), abs=1e-5)
        with pytest.raises(RemoteRewardError, match=r"HTTP 422: prompts\[0\] is a list of messages but "):
            rm(prompts=chat[0][:1], completions=["a"])
        with pytest.raises(RemoteRewardError, match="HTTP 413: 9 responses"):
            RemoteRewardModel(servers["keyed"].url, api_key=KEY, chunk=9).score("x", ["a"] * 9)
    with pytest.raises(RemoteRewardError, match="HTTP 401: missing or wrong API key"):
        RemoteRewardModel(servers["keyed"].url).score("x", ["a"])


# ----------------------------------------------------------------------------------------------------- SIGTERM
def test_sigterm_finishes_the_requests_in_flight_refuses_new_ones_and_exits_0(servers, scorer):
    slow = servers["slow"]
    rng = random.Random(5)
    requests = [(texts(rng, 2), texts(rng, 2)) for _ in range(6)]
    answers: list[httpx.Response | BaseException] = [None] * len(requests)

    def send(i: int) -> None:
        try:
            answers[i] = httpx.post(slow.url + "/score", json={"prompts": requests[i][0],
                                                              "responses": requests[i][1]}, timeout=60)
        except BaseException as e:  # reported by the assertions below
            answers[i] = e

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    with httpx.Client(base_url=slow.url, timeout=10) as probe:  # all 12 sequences queued, none scored yet
        while metric(probe, "rewardkit_queue_depth") < 12:
            assert time.monotonic() < deadline, "requests never reached the batcher"
            time.sleep(0.02)
    slow.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)  # the listening socket is closed within uvicorn's 0.1 s tick
    try:
        late = httpx.post(slow.url + "/score", json={"prompt": "x", "responses": ["a"]}, timeout=10)
        assert late.status_code == 503 and "shutting down" in late.json()["error"]
    except httpx.TransportError:  # connection refused: the clean way to say no
        pass
    for t in threads:
        t.join(60)
    for (prompts, responses), answer in zip(requests, answers):
        assert isinstance(answer, httpx.Response) and answer.status_code == 200, answer
        assert answer.json()["rewards"] == pytest.approx(scorer.score(prompts, responses), abs=1e-5)
    assert slow.proc.wait(30) == 0
    assert "Application shutdown complete" in slow.log.read_text()


# ----------------------------------------------------------------------------------------------- in-process
def test_token_type_models_are_scored_with_their_segments_like_the_scorer(tmp_path):
    """A BERT-family base reads token_type_ids: the service passes the scorer's segments through the batcher (in
    process, no HTTP: the routes are the ones tested above)."""
    from rewardkit.scoring.scorer import RewardScorer
    from rewardkit.serving.config import ServeConfig
    from rewardkit.serving.server import ScoringService

    sizes = dict(model_type="bert", hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                 intermediate_size=128, max_position_embeddings=64, type_vocab_size=2, hidden_act="gelu")
    model_dir = tiny_artifact(tmp_path, sizes, 300)
    scorer = RewardScorer.from_pretrained(model_dir, "cpu")
    rng = random.Random(6)
    requests = [(texts(rng, 3), texts(rng, 3, hi=40)) for _ in range(4)]
    assert scorer.encode_sequences(*requests[0]).segments is not None

    async def serve_all():
        service = ScoringService(scorer, ServeConfig(model=model_dir, max_wait_ms=50))
        await service.start()
        try:
            return await asyncio.gather(*(service.rewards(p, r, normalize=False) for p, r in requests))
        finally:
            await service.stop()

    for (prompts, responses), got in zip(requests, asyncio.run(serve_all())):
        assert got == pytest.approx(scorer.score(prompts, responses), abs=1e-5)
