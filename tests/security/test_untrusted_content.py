"""Content from a user or a wire format never becomes a file on the judge's host.

Each case puts the absolute path of a real, mostly red PNG on this host into a field a client
controls. Were the judge to read the file, the scripted judge would call it violent (S1) with
no error; instead every door gives a blocking verdict whose error names no file.
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest

from omniguard_plugins import Image
from omniguard_plugins.errors import ContentError
from omniguard_plugins.testing import keyword_handler, scripted_judge
from tests.support.media_makers import RED, png_bytes

red_images = keyword_handler({"bomb": "S9"}, red_images=True)


@pytest.fixture
def host_png(tmp_path: Path) -> Path:
    path = tmp_path / "secret-host-file.png"
    path.write_bytes(png_bytes(RED, (32, 32)))
    return path


@pytest.fixture
def judge():
    og = scripted_judge(red_images, cache_size=0)
    yield og
    og.close()


def _assert_blocked_naming_no_file(verdict, host_png: Path) -> None:
    assert not verdict.safe
    assert verdict.error, f"the host file was read and judged: {verdict}"
    assert str(host_png.parent) not in verdict.error and host_png.name not in verdict.error
    assert "not found" not in verdict.error


def test_the_apps_own_code_may_still_name_a_file(judge, host_png):
    verdict = judge.check(user=[Image(str(host_png))])
    assert not verdict.safe and verdict.error is None and verdict.category_codes == ("S1",)


@pytest.mark.parametrize("origin", ["base64", "url", "wire"])
def test_an_untrusted_origin_never_reads_the_path(judge, host_png, origin):
    _assert_blocked_naming_no_file(judge.check(user=[Image(str(host_png), origin=origin)]), host_png)


def test_a_path_object_cannot_claim_an_untrusted_origin(host_png):
    with pytest.raises(ContentError):
        Image(host_png, origin="wire")


# ---------------------------------------------------------------------------- LangChain


def _lc_blocks(path: str) -> list[dict]:
    return [
        {"type": "image", "base64": path, "mime_type": "image/png"},
        {"type": "image", "url": path},
        {"type": "image_url", "image_url": {"url": path}},
        {"type": "image_url", "image_url": path},
    ]


@pytest.mark.parametrize("index", range(4))
def test_langchain_blocks_holding_a_host_path(judge, host_png, index):
    from langchain_core.messages import HumanMessage
    from langchain_omniguard import OmniGuardRunnable
    from langchain_omniguard._convert import to_conversation

    block = _lc_blocks(str(host_png))[index]
    message = HumanMessage(content=[{"type": "text", "text": "what is this?"}, block])
    try:
        verdict = judge.check(to_conversation(message))
    except ContentError as exc:  # refused at conversion: also fine, if it names no file
        assert str(host_png) not in str(exc)
        verdict = None
    if verdict is not None:
        _assert_blocked_naming_no_file(verdict, host_png)
    # the user's path: the runnable decides (and names no file in what it raises)
    guard = OmniGuardRunnable(judge=judge, direction="input", exit_behavior="end")
    out = guard.invoke([message])
    assert out != [message]
    assert str(host_png) not in str(out)


def test_langchain_dict_values_are_never_paths(judge, host_png):
    from langchain_omniguard._convert import to_conversation

    verdict = judge.check(to_conversation({"question": "what is this?", "image": str(host_png)}))
    _assert_blocked_naming_no_file(verdict, host_png)


def test_omni_chat_data_uri_holding_a_path(judge, host_png):
    """omni_chat splits the browser's data: URL into a base64 block; the path inside stays text."""
    from langchain_omniguard._convert import to_conversation

    from demo_apps.omni_chat.app import Attachment, ChatRequest, user_message

    request = ChatRequest(text="what is this?",
                          attachments=[Attachment(name="x.png", data_url=f"data:image/png;base64,{host_png}")])
    verdict = judge.check(to_conversation(user_message(request)))
    _assert_blocked_naming_no_file(verdict, host_png)


def test_a_list_under_a_media_key_is_media(judge):
    from langchain_omniguard._convert import to_conversation

    red = base64.b64encode(png_bytes(RED, (32, 32))).decode()
    conversation = to_conversation({"question": "are these ok?", "images": [red, red]})
    assert [type(p).__name__ for p in conversation.turns[0].parts] == ["Text", "Image", "Image"]
    verdict = judge.check(conversation)
    assert not verdict.safe and verdict.category_codes == ("S1",)
    assert len(judge.backend.requests[-1].media) == 2


def test_base64_media_under_an_unknown_key_is_refused_not_prose():
    from langchain_omniguard._convert import to_conversation

    red = base64.b64encode(png_bytes(RED, (32, 32))).decode()
    with pytest.raises(ContentError, match="holds base64 image"):
        to_conversation({"question": "hi", "attachment": red})
    # ordinary long prose is still text
    prose = "All work and no play makes Jack a dull boy. " * 4
    assert to_conversation({"question": prose}).turns[0].parts[0].text == prose


# ---------------------------------------------------------------------------- LlamaIndex


def test_llamaindex_nodes_and_blocks_holding_a_host_path(judge, host_png):
    from llama_index.core.base.llms.types import ChatMessage, ImageBlock
    from llama_index.core.schema import ImageNode, NodeWithScore
    from llama_index_omniguard import OmniGuardPostprocessor
    from llama_index_omniguard._convert import message_parts

    nodes = [NodeWithScore(node=ImageNode(text="a", image_url=str(host_png)), score=1.0),
             NodeWithScore(node=ImageNode(text="b", image=str(host_png)), score=1.0)]
    kept = OmniGuardPostprocessor(judge=judge, on_unsafe="annotate").postprocess_nodes(nodes)
    for item in kept:
        _assert_blocked_naming_no_file(_verdict_of(item), host_png)
    block = ImageBlock(image=str(host_png).encode())
    verdict = judge.check(user=list(message_parts(ChatMessage(role="user", blocks=[block]))))
    _assert_blocked_naming_no_file(verdict, host_png)


def _verdict_of(item):
    from omniguard_plugins import Verdict

    info = item.node.metadata["omniguard"]
    return Verdict(safe=info["safe"], error=info.get("error"))


# ---------------------------------------------------------------------------- NeMo and the server


def test_nemo_parts_holding_a_host_path(judge, host_png):
    from nemoguardrails_omniguard.actions import omniguard_check_input

    context = {"user_message": [{"type": "text", "text": "what is this?"},
                                {"type": "image_url", "image_url": {"url": str(host_png)}}]}
    outcome = asyncio.run(omniguard_check_input(context=context, omniguard_judge=judge))
    assert (outcome.metadata["error"] and str(host_png) not in str(outcome.metadata)
            and host_png.name not in outcome.reason)


def test_server_parts_holding_a_host_path(judge, host_png):
    from fastapi.testclient import TestClient

    from omniguard_plugins.server import create_app

    with TestClient(create_app(judge, token="t")) as client:
        for part in ({"type": "image_url", "image_url": {"url": str(host_png)}},
                     {"type": "input_audio", "input_audio": {"data": str(host_png), "format": "wav"}}):
            body = {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}, part]}]}
            response = client.post("/v1/guard", json=body, headers={"Authorization": "Bearer t"})
            text = response.text
            assert str(host_png.parent) not in text and host_png.name not in text
            assert response.status_code >= 400 or response.json()["safe"] is False
