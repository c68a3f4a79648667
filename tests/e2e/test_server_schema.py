"""The reward server's OpenAPI schema (`serve --openapi`) and schemathesis fuzzing a real server process from it:
no 5xx, every answer conforms to the schema (status, content type, headers, body), schema-invalid requests are
refused, and the key is enforced on every operation but /health."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_server import KEY, Server, artifact  # noqa: F401 (artifact: the module's tiny model fixture)

pytestmark = pytest.mark.e2e
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
# every check but positive_data_acceptance: the JSON schema cannot say "one prompt per response" or "the prompt
# inside its query", so schema-valid bodies the server rightly answers 422 exist (the examples reach each 200)
CHECKS = ["--checks", "all", "--exclude-checks", "positive_data_acceptance"]


@pytest.fixture(scope="module")
def keyed(artifact, tmp_path_factory):  # noqa: F811
    logs = tmp_path_factory.mktemp("schema")
    (logs / "rm.key").write_text(KEY + "\n")
    server = Server(logs / "keyed.log", "--model", str(artifact), "--device", "cpu", "--openapi",
                    "--api-key-file", str(logs / "rm.key"), "--max-pairs", "64", "--max-body-mb", "0.25")
    try:
        yield server.wait_ready()
    finally:
        server.stop()


def schema_of(server: Server) -> dict:
    answer = httpx.get(server.url + "/openapi.json", headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_the_schema_describes_every_endpoint_with_its_request_model_and_bearer_auth(keyed):
    schema = schema_of(keyed)
    assert set(schema["paths"]) == {"/score", "/score_pairs", "/get_reward", "/health", "/metrics"}
    score = schema["paths"]["/score"]["post"]
    body = score["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/ScoreRequest"} and body["example"]
    components = schema["components"]["schemas"]
    assert components["ScoreRequest"]["additionalProperties"] is False and "Pair" in components
    assert {"200", "400", "401", "413", "422", "503"} <= set(score["responses"])
    assert schema["components"]["securitySchemes"] == {"bearer": {"type": "http", "scheme": "bearer"}}
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            assert ("security" in operation) == (path != "/health"), path


def test_every_operation_but_health_refuses_a_request_without_the_key(keyed):
    for path, operations in schema_of(keyed)["paths"].items():
        for method in operations:
            answer = httpx.request(method, keyed.url + path, json={}, timeout=10)
            assert answer.status_code == (200 if path == "/health" else 401), (method, path, answer.text)
    assert httpx.get(keyed.url + "/openapi.json", timeout=10).status_code == 401  # the schema too


def test_without_the_flag_there_is_no_schema(artifact, tmp_path):  # noqa: F811
    server = Server(tmp_path / "plain.log", "--model", str(artifact), "--device", "cpu").wait_ready()
    try:
        assert httpx.get(server.url + "/openapi.json", timeout=10).status_code == 404
    finally:
        server.stop()


def test_schemathesis_finds_no_failure_in_the_whole_api(keyed, tmp_path):
    """Coverage and fuzzing phases, fixed seed; the run's summary (operations, cases, failures) is printed."""
    done = subprocess.run([str(SCHEMATHESIS), "run", keyed.url + "/openapi.json", "-H", f"Authorization: Bearer {KEY}",
                           *CHECKS, "--max-examples", "100", "--seed", "0", "--workers", "1", "--report", "json",
                           "--report-json-path", str(tmp_path / "run.json")],
                          capture_output=True, text=True, timeout=400)
    report = json.loads((tmp_path / "run.json").read_text())
    summary = {k: report[k] for k in ("operations", "phases", "test_cases", "failures", "errors", "valid_rates")}
    print(json.dumps(summary))
    assert done.returncode == 0, done.stdout[-6000:]
    assert report["operations"]["tested"] == 5 and not report["failures"] and not report["errors"]
    assert report["test_cases"]["generated"] >= 300
    assert report["phases"]["examples"]["status"] == "success"
    for operation, rates in report["valid_rates"].items():  # each scoring route reached its 200 path
        assert sum(phase["accepted"] for phase in rates.values()) >= 1, operation
