"""The doors' pure logic, without a server: inputs, the category mapping under custom policies,
verdict headers, answer text, LiteLLM's parts and the Generic Guardrail API's conversations."""

from __future__ import annotations

import json

import pytest
from litellm_omniguard import LocalChecker

from omniguard_plugins import Audio, ContentError, Image, Policy, Text, Verdict, Video
from omniguard_plugins.openai_answers import answer_parts
from omniguard_plugins.openai_messages import parts_from_openai
from omniguard_plugins.policy import Category
from omniguard_plugins.server.gateway import verdict_header
from omniguard_plugins.server.litellm_api import GuardrailApiServing, _conversation
from omniguard_plugins.server.litellm_protocol import GuardrailApiRequest
from omniguard_plugins.server.moderations import moderation_inputs, moderation_result
from omniguard_plugins.server.serving import GuardServing, ServingError
from omniguard_plugins.server.upstream import _upstream_error
from omniguard_plugins.testing import scripted_judge
from tests.support.door_media import audio_part, image_part, text_part


def test_moderation_inputs_follow_openai():
    assert moderation_inputs("hi") == [(Text("hi"),)]
    assert moderation_inputs(["a", "b"]) == [(Text("a"),), (Text("b"),)]
    (parts,) = moderation_inputs([text_part("look"), image_part(), audio_part()])
    assert [type(p) for p in parts] == [Text, Image, Audio]
    with pytest.raises(ServingError) as err:
        moderation_inputs(["x"] * 65)
    assert err.value.status == 413


def test_a_custom_policy_keeps_the_mapping_by_name_and_reports_new_codes_alone():
    policy = Policy.default().drop("S2").add("Spam", "Unsolicited advertising.")
    hate = policy.resolve("Hate")
    spam = policy.resolve("Spam")
    assert hate is not None and hate.code == "S9" and spam is not None and spam.code == "S12"
    verdict = Verdict(safe=False, categories=(hate, spam))
    result = moderation_result(verdict, Verdict(safe=False, score=0.8), ["text"], policy)
    assert result.categories["hate"] and result.categories["harassment"] and not result.categories["violence"]
    assert result.categories["S9"] and result.categories["S12"] and not result.categories["S1"]
    assert result.category_scores["hate"] == 0.8 and result.category_scores["S12"] == 0.8
    assert result.category_scores["violence"] == 0.0 and "S13" not in result.categories
    assert result.omniguard.categories == ["S9", "S12"] and result.omniguard.score == 0.8


def test_an_allowed_error_scores_zero_and_says_why():
    verdict = Verdict(safe=True, error="corrupt_media: image #1: not an image")
    result = moderation_result(verdict, verdict, ["image"], Policy())
    assert result.flagged is False and set(result.category_scores.values()) == {0.0}
    assert result.omniguard.label == "error" and result.omniguard.error.startswith("corrupt_media")


def test_verdict_headers_are_one_line():
    s1 = Category("S1", "Violent Crimes")
    assert verdict_header(Verdict(safe=True)) == "safe"
    assert verdict_header(Verdict(safe=False, categories=(s1, Category("S9", "x")))) == "unsafe; S1,S9"
    assert verdict_header(Verdict(safe=False, error="timeout: no answer in 5 s")) == "error; timeout"


def test_answer_parts_reads_content_parts_and_tool_calls_of_dicts_and_objects():
    class Obj:
        def __init__(self, **kw):
            self.__dict__.update(kw)

    message = {"content": [{"type": "text", "text": "Sure."}],
               "tool_calls": [{"function": {"name": "send", "arguments": '{"to": "bob"}'}}]}
    assert answer_parts(message) == (Text("Sure."), Text('send {"to": "bob"}'))  # the one tool-call rendering
    assert answer_parts(Obj(content="hello", tool_calls=None)) == (Text("hello"),)
    assert answer_parts(None) == ()


def test_openai_file_parts_become_media_by_type():
    """LiteLLM passes audio and video as OpenAI ``file`` parts; the core converter reads them for
    every door (server, gateway, NeMo, LiteLLM) and refuses what it cannot judge."""
    parts = parts_from_openai([
        {"type": "file", "file": {"file_data": "data:video/mp4;base64,AAAA", "filename": "clip.mp4"}},
        {"type": "text", "text": "hi"},
    ])
    assert [type(p) for p in parts] == [Video, Text] and parts[0].origin == "url"
    for bad in ({"file_data": "data:application/pdf;base64,AAAA"}, {"file_id": "file-123"},
                {"file_data": "/etc/passwd"}):
        with pytest.raises(ContentError):
            parts_from_openai([{"type": "file", "file": bad}])


async def test_a_part_the_judge_cannot_read_blocks_through_on_error():
    checker = LocalChecker(scripted_judge({"bomb": "S9"}))
    verdict = await checker.check([{"role": "user", "content": [{"type": "file", "file": {}}]}], "input")
    assert verdict.safe is False and verdict.error.startswith("content")


def test_generic_guardrail_requests_and_responses_become_checks():
    convo, direction = _conversation(GuardrailApiRequest(input_type="request", texts=["hi"], images=["data:x"]))
    assert direction == "input" and [type(p) for p in convo.turns[0].parts] == [Text, Image]
    with_messages = GuardrailApiRequest(input_type="request", texts=["ignored"],
                                        structured_messages=[{"role": "system", "content": "be nice"},
                                                             {"role": "user", "content": "hello"}])
    convo, _ = _conversation(with_messages)
    assert [(t.role, t.text) for t in convo.turns] == [("user", "hello")]
    answer = GuardrailApiRequest(input_type="response", texts=["the answer"],
                                 tool_calls=[{"function": {"arguments": '{"x": 1}'}}])
    convo, direction = _conversation(answer)
    assert direction == "output" and convo.turns[-1].role == "assistant"
    assert [p.text for p in convo.turns[-1].parts] == ["the answer", '{"x": 1}']


async def test_an_empty_answer_is_not_judged():
    serving = GuardrailApiServing(GuardServing(scripted_judge({"bomb": "S9"})))
    response = await serving.check(GuardrailApiRequest(input_type="response", texts=[]))
    assert response.action == "NONE" and response.omniguard.label == "empty"
    blocked = await serving.check(GuardrailApiRequest(input_type="response", texts=["a bomb"]))
    assert blocked.action == "BLOCKED" and "S9" in blocked.blocked_reason


@pytest.mark.parametrize("status, body, expected", [
    (404, {"error": {"message": "no such model", "code": "model_not_found", "param": "model"}},
     (404, "model_not_found")),
    (401, {"error": {"message": "bad key"}}, (502, "upstream_auth")),
    (503, b"<html>overloaded</html>", (502, "upstream_error")),
])
def test_upstream_errors_map_once(status, body, expected):
    err = _upstream_error(status, body if isinstance(body, bytes) else json.dumps(body).encode())
    assert (err.status, err.code) == expected and "\n" not in err.message


async def test_an_empty_moderation_input_is_not_judged_nor_flagged():
    from omniguard_plugins.server.moderation_protocol import ModerationRequest
    from omniguard_plugins.server.moderations import ModerationServing

    judge = scripted_judge({"bomb": "S9"})
    response = await ModerationServing(GuardServing(judge)).moderate(ModerationRequest(input=["", "a bomb", "  "]))
    assert [r.flagged for r in response.results] == [False, True, False]
    assert [r.omniguard.label for r in response.results] == ["empty", "unsafe", "empty"]
    assert judge.stats.checks == 2  # the one non-empty input, verdict and score
