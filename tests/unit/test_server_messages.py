"""Message lists on the reward server, in process (the ASGI app under Starlette's TestClient, lifespan included):
/score and /score_pairs take {"role", "content"} lists wherever the score CLI and RewardScorer do, render them as
training did (plain template, or the tokenizer's chat template) and answer RewardScorer's rewards; bad lists are
422s with the reason; the OpenAPI schema shows both shapes."""
from __future__ import annotations

import json
import shutil

import pytest
from starlette.testclient import TestClient

from rewardkit.scoring.scorer import RewardScorer
from rewardkit.serving.config import ServeConfig
from rewardkit.serving.server import create_app
from rewardkit.serving.service import ScoringService

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
QUESTIONS = ["what is 2 plus 3?", "is a loan with 5% interest cheap?", "name a bond"]
ANSWERS = ["The sum is 5.", "About 6.", "It depends on the rate and the tax.", "Yes."]


def user(text: str) -> list[dict]:
    return [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}]


def assistant(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


@pytest.fixture(scope="module", params=["plain", "chat_template"])
def model_dir(request, trained_model, tmp_path_factory):
    """The trained tiny model as it is (plain rendering), or with a ChatML template on its tokenizer and the
    rendering recorded as training records it for such a base."""
    source = trained_model / "models/reward_model"
    if request.param == "plain":
        return source
    target = tmp_path_factory.mktemp("chat") / "reward_model"
    shutil.copytree(source, target)
    config = json.loads((target / "tokenizer_config.json").read_text())
    (target / "tokenizer_config.json").write_text(json.dumps({**config, "chat_template": CHATML}))
    meta = json.loads((target / "reward_model.json").read_text())
    (target / "reward_model.json").write_text(json.dumps({**meta, "rendering": "chat_template"}))
    return target


@pytest.fixture(scope="module")
def scorer(model_dir):
    return RewardScorer.from_pretrained(model_dir, "cpu")


@pytest.fixture(scope="module")
def client(scorer, model_dir):
    service = ScoringService(scorer, ServeConfig(model=model_dir, max_wait_ms=1, openapi=True))
    with TestClient(create_app(service)) as c:
        yield c


def post(client, path: str, body: dict):
    answer = client.post(path, json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_score_takes_message_lists_and_answers_the_scorers_rewards(client, scorer):
    prompts = [user(q) for q in QUESTIONS for _ in range(2)]
    responses = [assistant(a) for a in ANSWERS[:2] * len(QUESTIONS)]
    responses[-1] = assistant("Yes.") + [{"role": "user", "content": "why?"}, *assistant("It pays.")]  # multi-turn
    got = post(client, "/score", {"prompts": prompts, "responses": responses})["rewards"]
    assert got == pytest.approx(scorer.score(prompts, responses), abs=1e-6)
    best_of_n = post(client, "/score", {"prompt": user(QUESTIONS[0]), "responses": [assistant(a) for a in ANSWERS]})
    assert best_of_n["rewards"] == pytest.approx(scorer.score(user(QUESTIONS[0]), [assistant(a) for a in ANSWERS]),
                                                 abs=1e-6)
    mixed = post(client, "/score", {"prompts": [user(QUESTIONS[0]), "User: hi\nAssistant:"],
                                    "responses": [assistant(ANSWERS[0]), " hello"]})  # rows of either kind
    assert mixed["rewards"] == pytest.approx([got[0], scorer.score("User: hi\nAssistant:", [" hello"])[0]], abs=1e-6)


def test_score_pairs_takes_message_lists(client, scorer):
    pairs = [{"prompt": user(q), "chosen": assistant(ANSWERS[0]), "rejected": assistant(ANSWERS[3])}
             for q in QUESTIONS]
    got = post(client, "/score_pairs", {"pairs": pairs, "normalize": True})["pairs"]
    chosen = scorer.score([p["prompt"] for p in pairs], [p["chosen"] for p in pairs], normalize=True)
    rejected = scorer.score([p["prompt"] for p in pairs], [p["rejected"] for p in pairs], normalize=True)
    assert [g["reward_chosen"] for g in got] == pytest.approx(chosen, abs=1e-6)
    assert [g["reward_rejected"] for g in got] == pytest.approx(rejected, abs=1e-6)


def test_messages_are_rendered_by_the_models_recorded_template(client, scorer):
    """Plain: the messages score as their `User: …\\nAssistant:` text; chat template: as the ChatML text, which the
    plain text does not equal (so the template really is applied)."""
    prompt, response = user(QUESTIONS[0]), assistant(ANSWERS[0])
    as_messages = post(client, "/score", {"prompt": prompt, "responses": [response]})["rewards"]
    plain_text = post(client, "/score", {"prompt": "System: Be brief.\nUser: what is 2 plus 3?\nAssistant:",
                                         "responses": [" The sum is 5."]})["rewards"]
    chat_text = post(client, "/score", {
        "prompt": "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nwhat is 2 plus 3?<|im_end|>\n"
                  "<|im_start|>assistant\n", "responses": ["The sum is 5.<|im_end|>\n"]})["rewards"]
    if scorer.meta.get("rendering") == "chat_template":
        assert as_messages == pytest.approx(chat_text, abs=1e-6) and as_messages != pytest.approx(plain_text)
    else:
        assert as_messages == pytest.approx(plain_text, abs=1e-6)


@pytest.mark.parametrize("body, message", [
    ({"prompt": [{"role": "robot", "content": "x"}], "responses": [assistant("y")]},
     "prompt.messages.0.role: Input should be 'system', 'user', 'assistant' or 'tool'"),
    ({"prompt": [], "responses": [assistant("y")]}, "prompt.messages: List should have at least 1 item"),
    ({"prompt": [{"role": "user"}], "responses": [assistant("y")]}, "prompt.messages.0.content: Field required"),
    ({"prompt": [{"role": "user", "content": 3}], "responses": [assistant("y")]},
     "prompt.messages.0.content: Input should be a valid string"),
    ({"prompt": "User: x\nAssistant:", "responses": [assistant("y")]},
     "responses[0] is a list of messages but prompt is not: send both as text or both as messages"),
    ({"prompts": [user("x"), user("x")], "responses": [assistant("y"), " y"]},
     "prompts[1] is a list of messages but responses[1] is not"),
    ({"prompt": user("x"), "responses": [[{"role": "user", "content": "y"}]]},
     "responses[0] must start with an assistant message, got 'user'"),
    ({"prompt": 3, "responses": [" y"]}, "prompt: must be a string or a list of messages"),
    ({"prompt": user("x"), "responses": [[{"role": "assistant", "content": "\ud800"}]]},
     "responses[0] has an unpaired surrogate escape"),
])
def test_bad_message_lists_are_422_with_the_reason(client, body, message):
    answer = client.post("/score", content=json.dumps(body), headers={"content-type": "application/json"})
    assert answer.status_code == 422 and message in answer.json()["error"], answer.text


def test_bad_pairs_and_openrlhf_queries_of_messages_are_422(client):
    pair = {"prompt": user("x"), "chosen": assistant("y"), "rejected": " z"}
    answer = client.post("/score_pairs", json={"pairs": [pair]})
    assert answer.status_code == 422
    assert answer.json()["error"] == "pairs.0: prompt is a list of messages but rejected is not: send both as " \
                                     "text or both as messages"
    answer = client.post("/get_reward", json={"query": [user("x")], "prompts": [user("x")]})  # unchanged: text
    assert answer.status_code == 422 and "query.0: Input should be a valid string" in answer.json()["error"]


def test_the_openapi_schema_shows_text_or_messages(client):
    components = client.get("/openapi.json").json()["components"]["schemas"]
    either = [{"type": "string"}, {"type": "array", "items": {"$ref": "#/components/schemas/Message"},
                                   "minItems": 1}]
    assert components["ScoreRequest"]["properties"]["responses"]["items"]["oneOf"] == either
    assert components["Pair"]["properties"]["chosen"]["oneOf"] == either
    assert components["Message"]["properties"]["role"]["enum"] == ["system", "user", "assistant", "tool"]
    assert components["Message"]["required"] == ["role", "content"]
