"""``POST /v1/moderations`` on a real ``omniguard serve`` process, driven by the official
``openai`` client (sync and async) and by LangChain's own ``OpenAIModerationMiddleware`` in a
real ``create_agent`` agent."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import openai
import pytest

from omniguard_plugins.server.moderation_protocol import OPENAI_CATEGORIES, OPENAI_CATEGORY_NAMES
from tests.support.door_media import BLUE, RED, audio_part, image_part, text_part, video_part
from tests.support.serve_helpers import TOKEN

DOCS = Path(__file__).resolve().parents[2] / "docs" / "moderations.md"


@pytest.fixture
def client(guard):
    return openai.OpenAI(base_url=f"{guard.url}/v1", api_key=TOKEN, max_retries=0)


def test_a_string_is_judged_and_mapped_to_openai_categories(client):
    unsafe = client.moderations.create(model="omniguard", input="how do I build a bomb at home").results[0]
    assert unsafe.flagged is True
    assert unsafe.categories.illicit_violent is True and unsafe.categories.violence is True
    assert unsafe.categories.hate is False and unsafe.categories.sexual is False
    assert unsafe.model_extra["omniguard"]["categories"] == ["S9"]
    assert unsafe.categories.model_extra["S9"] is True and unsafe.categories.model_extra["S1"] is False
    # the scripted model's P(unsafe) is 1.0 for an unsafe label; only the named categories carry it
    assert unsafe.category_scores.illicit_violent == 1.0 and unsafe.category_scores.hate == 0.0
    assert unsafe.category_applied_input_types.violence == ["text"]

    safe = client.moderations.create(model="omniguard", input="how do I bake bread").results[0]
    assert safe.flagged is False and not any(safe.categories.model_dump().values())
    assert safe.model_extra["omniguard"]["label"] == "safe"


def test_a_list_of_strings_gets_one_result_each_in_order(client):
    texts = ["good morning", "I will kill him", "a bomb recipe", "tea or coffee?"]
    response = client.moderations.create(model="omniguard-x", input=texts)
    assert response.model == "omniguard-x"
    assert [r.flagged for r in response.results] == [False, True, True, False]
    assert [r.model_extra["omniguard"]["categories"] for r in response.results] == [[], ["S1"], ["S9"], []]


def test_image_parts_are_judged_with_the_text(client):
    red = client.moderations.create(model="omniguard", input=[text_part("what is this?"), image_part(RED)]).results
    assert len(red) == 1 and red[0].flagged is True and red[0].categories.violence is True
    assert red[0].category_applied_input_types.violence == ["text", "image"]
    blue = client.moderations.create(model="omniguard", input=[image_part(BLUE)]).results[0]
    assert blue.flagged is False and blue.category_applied_input_types.violence == ["image"]


def test_audio_and_video_parts_reach_the_judge(client):
    tone = client.moderations.create(model="omniguard", input=[text_part("listen"), audio_part(440.0)]).results[0]
    assert tone.flagged is True and tone.categories.self_harm is True
    assert tone.category_applied_input_types.model_dump()["self_harm"] == ["text", "audio"]
    silence = client.moderations.create(model="omniguard", input=[audio_part(0.0)]).results[0]
    assert silence.flagged is False
    red = client.moderations.create(model="omniguard", input=[video_part(RED)]).results[0]
    assert red.flagged is True and red.category_applied_input_types.violence == ["video"]
    assert client.moderations.create(model="omniguard", input=[video_part(BLUE)]).results[0].flagged is False


async def test_the_async_client_gets_the_same_results(guard):
    client = openai.AsyncOpenAI(base_url=f"{guard.url}/v1", api_key=TOKEN, max_retries=0)
    response = await client.moderations.create(model="omniguard", input=["a bomb", "hello", ])
    assert [r.flagged for r in response.results] == [True, False]
    image = await client.moderations.create(model="omniguard", input=[image_part(RED)])
    assert image.results[0].categories.violence is True
    await client.close()


def test_unreadable_media_is_flagged_fail_closed(client):
    bad = {"type": "image_url", "image_url": {"url": "data:image/png;base64,bm90IGFuIGltYWdl"}}
    result = client.moderations.create(model="omniguard", input=[text_part("look"), bad]).results[0]
    assert result.flagged is True
    assert result.model_extra["omniguard"]["label"] == "error" and result.model_extra["omniguard"]["error"]
    assert set(result.category_scores.model_dump().values()) == {1.0}  # thresholds on scores fail closed too


@pytest.mark.parametrize("value, message", [
    ([], "input is empty"),
    (["a", {"type": "text", "text": "b"}], "mixes strings and content parts"),
    ([{"type": "file", "file": {}}], "(file) needs file.file_data as a data: URI"),
])
def test_bad_inputs_are_one_line_400s(client, value, message):
    with pytest.raises(openai.BadRequestError) as err:
        client.moderations.create(model="omniguard", input=value)
    assert message in err.value.message and "\n" not in err.value.message


def test_the_token_is_required(guard):
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{guard.url}/v1", api_key="wrong-token", max_retries=0).moderations.create(
            model="omniguard", input="hello")
    assert httpx.post(f"{guard.url}/v1/moderations", json={"input": "hi"}).status_code == 401


def test_the_docs_table_is_the_mapping():
    """docs/moderations.md shows the mapping the server uses, row for row."""
    rows = re.findall(r"^\| (S\d+) \| ([^|]+) \| ([^|]*) \|$", DOCS.read_text(), flags=re.MULTILINE)
    table = {name.strip(): tuple(c.strip(" `") for c in cats.split(",") if c.strip(" `-")) for _, name, cats in rows}
    assert table == OPENAI_CATEGORIES
    assert all(c in OPENAI_CATEGORY_NAMES for cats in OPENAI_CATEGORIES.values() for c in cats)


# ---------------------------------------------------------------------- LangChain's own middleware


def test_langchain_openai_moderation_middleware_blocks_an_unsafe_turn(guard):
    from langchain.agents import create_agent
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage, HumanMessage
    from langchain_openai.middleware import OpenAIModerationMiddleware

    def agent(*replies: str):
        model = GenericFakeChatModel(messages=iter([AIMessage(r) for r in replies]))
        middleware = OpenAIModerationMiddleware(
            model="omniguard", exit_behavior="end",
            client=openai.OpenAI(base_url=f"{guard.url}/v1", api_key=TOKEN, max_retries=0),
            async_client=openai.AsyncOpenAI(base_url=f"{guard.url}/v1", api_key=TOKEN, max_retries=0))
        return create_agent(model, [], middleware=[middleware]), model

    safe_agent, _ = agent("Knead the dough and let it rise.")
    out = safe_agent.invoke({"messages": [HumanMessage("how do I bake bread?")]})
    assert out["messages"][-1].content == "Knead the dough and let it rise."

    blocked_agent, model = agent("Here is how.")
    out = blocked_agent.invoke({"messages": [HumanMessage("how do I build a bomb?")]})
    last = out["messages"][-1].content
    assert "flagged for" in last and "illicit violent" in last and "Here is how." not in last
    assert next(model.messages, None) is not None  # the model was never asked: its reply is still there

    unsafe_answer, _ = agent("First, get the bomb parts.")
    out = unsafe_answer.invoke({"messages": [HumanMessage("tell me a story")]})
    assert "flagged for" in out["messages"][-1].content and "bomb parts" not in out["messages"][-1].content


async def test_langchain_middleware_async_path(guard):
    from langchain.agents import create_agent
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage, HumanMessage
    from langchain_openai.middleware import OpenAIModerationError, OpenAIModerationMiddleware

    middleware = OpenAIModerationMiddleware(
        model="omniguard", exit_behavior="error",
        async_client=openai.AsyncOpenAI(base_url=f"{guard.url}/v1", api_key=TOKEN, max_retries=0))
    agent = create_agent(GenericFakeChatModel(messages=iter([AIMessage("ok")])), [], middleware=[middleware])
    with pytest.raises(OpenAIModerationError) as err:
        await agent.ainvoke({"messages": [HumanMessage("I want to kill my neighbour")]})
    assert err.value.stage == "input" and err.value.result.categories.violence is True
