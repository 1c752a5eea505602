"""guardrail.serve: settings and config, moderations (with the real openai client), checks,
health, readiness and metrics, over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import math
import threading

import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families
from serving import running, wait_until

from guardrail import ConfigError, FailMode, Guard, builtin_policy, load_config
from guardrail._config import load_serve_table
from guardrail.serve import ServeSettings, create_app, load_settings
from guardrail.serve._settings import is_loopback_host
from guardrail.testing import FunctionScorer, KeywordScorer

KEYWORDS = {"vermin": 0.97, "bomb": 0.91, "idiot": 0.62}


def by_policy(request) -> float:  # noqa: ANN001
    """Each policy reacts to its own word, so categories and scores differ in a checkable way."""
    own = {"hate": "vermin", "dangerous": "bomb", "harassment": "idiot"}[request.policy]
    text = (request.turn.response if request.turn.response is not None else request.turn.prompt).lower()
    return KEYWORDS[own] if own in text else 0.02 + (0.001 * len(text)) % 0.1


def keyword_guard(**kwargs: object) -> Guard:
    policies = [builtin_policy("hate"), builtin_policy("dangerous", threshold=0.8),
                builtin_policy("harassment", action="flag", threshold=0.6)]
    return Guard(policies, scorer=FunctionScorer(by_policy), **kwargs)


# --- settings and configuration ---------------------------------------------------------------
def test_settings_validate_each_field() -> None:
    assert ServeSettings(api_keys=[" k1 ", "k2"]).api_keys == ("k1", "k2")  # type: ignore[arg-type]
    for bad in ({"port": 70000}, {"api_keys": "k"}, {"api_keys": [""]}, {"max_in_flight": 0},
                {"request_timeout": -1}, {"request_timeout": math.inf}, {"allow_remote": "yes"},
                {"audit_format": "csv"}, {"max_body_bytes": True}, {"model_name": ""}):
        with pytest.raises(ConfigError):
            ServeSettings(**bad)  # type: ignore[arg-type]


def test_bind_refuses_remote_hosts_without_keys_unless_allowed() -> None:
    ServeSettings(host="127.0.0.1").check_bind()
    ServeSettings(host="::1").check_bind()
    ServeSettings(host="localhost").check_bind()
    with pytest.raises(ConfigError, match="without API keys"):
        ServeSettings(host="0.0.0.0").check_bind()
    ServeSettings(host="0.0.0.0", api_keys=("k",)).check_bind()
    ServeSettings(host="0.0.0.0", allow_remote=True).check_bind()


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("127.8.9.1", True), ("::1", True),
                                            ("::ffff:127.0.0.1", True), ("localhost", True),
                                            ("10.0.0.1", False), ("0.0.0.0", False), ("example.com", False)])
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


def test_serve_table_from_file_and_environment(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "guard.toml"
    path.write_text('[serve]\nport = 9001\napi_keys = ["file-key"]\n\n[policies.hate]\nthreshold = 0.3\n')
    assert load_config(path).policies[0].threshold == 0.3  # the guard's reader accepts the new table
    assert load_serve_table(path, environ={}) == {"port": 9001, "api_keys": ["file-key"]}
    settings = load_settings(path, environ={"GUARDRAIL_SERVE_API_KEYS": "a, b"}, overrides={"port": 9002})
    assert settings.api_keys == ("a", "b") and settings.port == 9002  # flags > environment > file
    assert load_settings(None, environ={}) == ServeSettings()


def test_serve_table_errors_name_the_file_and_key(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "guard.toml"
    path.write_text('[serve]\nport = "eighty"\n')
    with pytest.raises(ConfigError, match=r"guard.toml: serve.port must be an integer"):
        load_settings(path, environ={})
    path.write_text('[serve]\nprot = 80\n')
    with pytest.raises(ConfigError, match=r"guard.toml: serve: unknown key\(s\) prot"):
        load_settings(path, environ={})
    path.write_text('serve = 3\n')
    with pytest.raises(ConfigError, match="serve: must be a table"):
        load_settings(path, environ={})


# --- moderations, through the real openai client ----------------------------------------------
@pytest.fixture(scope="module")
def server():  # noqa: ANN201
    with running(create_app(keyword_guard())) as result:
        yield result


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:  # noqa: ANN001
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def test_openai_client_gets_the_local_guards_scores(server, client: openai.OpenAI) -> None:  # noqa: ANN001
    local = keyword_guard()
    for text in ("They are vermin.", "How do I bake bread?", "Build a bomb, idiot"):
        response = client.moderations.create(input=text, model="omni-moderation-latest")
        [result] = response.results
        verdict = local.check_input(text)
        assert response.model == "guardrail" and response.id.startswith("modr-")
        scores = result.category_scores.model_dump(exclude_none=True)
        assert scores == {d.policy: pytest.approx(d.score) for d in verdict.decisions}
        assert result.categories.model_dump(exclude_none=True) == {d.policy: d.triggered for d in verdict.decisions}
        assert result.flagged is bool(verdict.triggered)
        assert result.category_applied_input_types.model_dump(exclude_none=True) == {
            d.policy: ["text"] for d in verdict.decisions}


def test_openai_client_list_of_strings_gives_one_result_each(client: openai.OpenAI) -> None:
    texts = ["hello", "they are vermin", "you idiot"]
    response = client.moderations.create(input=texts)
    assert [r.flagged for r in response.results] == [False, True, True]
    assert response.results[2].categories.model_dump(exclude_none=True)["harassment"] is True  # a flag is flagged
    assert response.results[1].category_scores.model_dump(exclude_none=True)["hate"] == pytest.approx(0.97)


def test_openai_client_multimodal_text_parts_are_scored_and_images_refused(client: openai.OpenAI) -> None:
    parts = [{"type": "text", "text": "they are"}, {"type": "text", "text": "vermin"}]
    [result] = client.moderations.create(input=parts).results  # type: ignore[arg-type]
    assert result.flagged and result.category_scores.model_dump(exclude_none=True)["hate"] == pytest.approx(0.97)
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    with pytest.raises(openai.BadRequestError, match="scores text only"):
        client.moderations.create(input=[parts[0], image])  # type: ignore[list-item]


@pytest.mark.parametrize("body, message", [
    ({}, "missing 'input'"),
    ({"input": []}, "'input' must be"),
    ({"input": 3}, "'input' must be"),
    ({"input": ["a", {"type": "text", "text": "b"}]}, "'input' must be"),
    ({"input": [{"type": "audio", "data": "x"}]}, "got type 'audio'"),
    ([1, 2], "must be a JSON object"),
])
def test_moderation_shape_errors_are_400_with_the_reason(server, body: object, message: str) -> None:  # noqa: ANN001
    with server.client() as http:
        response = http.post("/v1/moderations", json=body)
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_bad_json_and_unknown_routes_answer_json_errors(server) -> None:  # noqa: ANN001
    with server.client() as http:
        bad = http.post("/v1/checks", content=b'{"messages": NaN}', headers={"content-type": "application/json"})
        assert bad.status_code == 400 and "not valid JSON" in bad.json()["error"]["message"]
        assert http.get("/v1/nothing").status_code == 404
        wrong_method = http.get("/v1/moderations")
        assert wrong_method.status_code == 405 and "error" in wrong_method.json()


# --- checks -----------------------------------------------------------------------------------
def test_check_endpoint_returns_the_verdict(server) -> None:  # noqa: ANN001
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "You idiot, build a bomb."}]
    with server.client() as http:
        body = http.post("/v1/checks", json={"messages": messages, "stage": "output"}).json()
    expected = keyword_guard().check_output(messages)
    assert body["id"].startswith("chk-") and body["stage"] == "output" and body["message_index"] == 1
    assert body["outcome"] == expected.outcome.value == "block" and body["allowed"] is False
    assert body["refusal"] == expected.refusal and body["errors"] == []
    assert [(d["policy"], d["score"], d["threshold"], d["action"], d["triggered"]) for d in body["decisions"]] == [
        (d.policy, pytest.approx(d.score), d.threshold, d.action.value, d.triggered) for d in expected.decisions]


@pytest.mark.parametrize("body, message", [
    ({"stage": "input"}, "missing 'messages'"),
    ({"messages": "hi", "stage": "middle"}, "stage must be one of"),
    ({"messages": [{"role": "assistant", "content": "hi"}]}, "needs a message with role 'user'"),
    ({"messages": [{"role": "user", "content": 7}]}, "'content' must be a string"),
    ({"messages": "hi", "stages": "input"}, "unknown field(s) stages"),
])
def test_check_errors_are_400_with_the_reason(server, body: dict, message: str) -> None:  # noqa: ANN001
    with server.client() as http:
        response = http.post("/v1/checks", json=body)
    assert response.status_code == 400 and message in response.json()["error"]["message"]


# --- scorer failures follow each policy's fail mode -------------------------------------------
def failing_guard(on_error: FailMode) -> Guard:
    def score(request) -> float:  # noqa: ANN001
        if "boom" in request.turn.prompt:
            raise RuntimeError("model exploded")
        return 0.03
    return Guard([builtin_policy("hate", on_error=on_error)], scorer=FunctionScorer(score))


def test_scorer_failure_with_on_error_block_is_flagged_and_says_why() -> None:
    with running(create_app(failing_guard(FailMode.BLOCK))) as server, server.client() as http:
        [result] = http.post("/v1/moderations", json={"input": "boom"}).json()["results"]
        check = http.post("/v1/checks", json={"messages": "boom"}).json()
    assert result["flagged"] is True and result["categories"] == {"hate": True}
    assert result["category_scores"] == {"hate": None} and "model exploded" in result["errors"]["hate"]
    assert check["outcome"] == "block" and check["decisions"][0]["score"] is None
    assert check["errors"][0]["fail_mode"] == "block" and "model exploded" in check["errors"][0]["error"]


def test_scorer_failure_with_on_error_allow_is_not_flagged_but_reported() -> None:
    with running(create_app(failing_guard(FailMode.ALLOW))) as server, server.client() as http:
        [result] = http.post("/v1/moderations", json={"input": "boom"}).json()["results"]
    assert result["flagged"] is False and result["categories"] == {"hate": False}
    assert result["category_scores"] == {"hate": None}  # never a clean-looking 0
    assert "model exploded" in result["errors"]["hate"]


def test_scorer_failure_with_on_error_raise_is_503() -> None:
    with running(create_app(failing_guard(FailMode.RAISE))) as server, server.client() as http:
        response = http.post("/v1/moderations", json={"input": "boom"})
        fine = http.post("/v1/moderations", json={"input": "fine"})
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    assert "model exploded" in response.json()["error"]["message"]
    assert fine.status_code == 200


# --- readiness --------------------------------------------------------------------------------
class SlowLoading(KeywordScorer):
    def __init__(self, style: str) -> None:
        super().__init__(KEYWORDS)
        self.loaded = threading.Event()
        if style == "aload":
            self.aload = self._aload
        else:
            self.load = lambda: self.loaded.wait(20)

    async def _aload(self) -> None:
        await asyncio.to_thread(self.loaded.wait, 20)


@pytest.mark.parametrize("style", ["aload", "load"])
def test_readyz_waits_for_the_scorers_load(style: str) -> None:
    scorer = SlowLoading(style)
    with running(create_app(Guard(["hate"], scorer=scorer)), ready=False) as server, server.client() as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        not_ready = http.get("/readyz")
        assert not_ready.status_code == 503 and not_ready.json()["reason"] == "the scorer is loading"
        early = http.post("/v1/checks", json={"messages": "hi"})
        assert early.status_code == 503 and early.headers["retry-after"] == "1"
        scorer.loaded.set()
        wait_until(lambda: http.get("/readyz").status_code == 200, what="readiness")
        assert http.post("/v1/checks", json={"messages": "hi"}).status_code == 200


def test_a_failing_warm_up_keeps_the_service_unready_with_the_reason() -> None:
    guard = Guard(["hate"], scorer=FunctionScorer(lambda r: 1.5))  # not a probability
    with running(create_app(guard), ready=False) as server, server.client() as http:
        wait_until(lambda: "warm up" in http.get("/readyz").json()["reason"], what="the warm-up failure")
        assert http.get("/readyz").status_code == 503
        assert http.post("/v1/checks", json={"messages": "hi"}).status_code == 503


# --- metrics ----------------------------------------------------------------------------------
def _samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_count_checks_decisions_scores_and_errors() -> None:
    with running(create_app(failing_guard(FailMode.BLOCK))) as server, server.client() as http:
        http.post("/v1/moderations", json={"input": ["fine", "also fine"]})
        http.post("/v1/checks", json={"messages": "boom"})
        http.post("/v1/checks", json={"messages": 5})
        samples = _samples(http.get("/metrics").text)
    checks = ("guardrail_checks_total", (("endpoint", "/v1/moderations"), ("outcome", "allow"), ("stage", "input")))
    assert samples[checks] == 2
    failed = ("guardrail_checks_total", (("endpoint", "/v1/checks"), ("outcome", "block"), ("stage", "input")))
    assert samples[failed] == 1
    assert samples[("guardrail_decisions_total", (("outcome", "allow"), ("policy", "hate"), ("stage", "input")))] == 2
    assert samples[("guardrail_decisions_total", (("outcome", "error"), ("policy", "hate"), ("stage", "input")))] == 1
    assert samples[("guardrail_score_count", (("policy", "hate"), ("stage", "input")))] == 2  # errors have no score
    assert samples[("guardrail_scorer_errors_total", (("stage", "input"),))] == 1
    assert samples[("guardrail_http_requests_total", (("route", "/v1/checks"), ("status", "400")))] == 1
    assert samples[("guardrail_http_request_duration_seconds_count", (("route", "/v1/moderations"),))] == 1
    assert samples[("guardrail_checks_in_flight", ())] == 0
    assert samples[("guardrail_ready", ())] == 1
