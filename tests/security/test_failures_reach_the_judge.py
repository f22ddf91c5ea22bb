"""A conversion failure inside an adapter goes through the judge: ``on_error`` decides it once,
and it is counted in ``stats``, the listeners and ``/metrics`` like any other failure."""

from __future__ import annotations

import asyncio

import pytest

from omniguard_plugins.testing import keyword_handler, scripted_judge


@pytest.fixture
def judge():
    og = scripted_judge(keyword_handler({"bomb": "S9"}), cache_size=0)
    yield og
    og.close()


def _errors(judge) -> int:
    return sum(judge.stats.errors.values())


def test_langchain_conversion_failures_are_counted(judge):
    from langchain_core.messages import HumanMessage
    from langchain_omniguard import OmniGuardRunnable

    heard = []
    judge.add_listener(heard.append)
    guard = OmniGuardRunnable(judge=judge, direction="input", exit_behavior="end")
    broken_b64 = HumanMessage(content=[{"type": "image", "base64": "not base64 at all!", "mime_type": "image/png"}])
    unsupported = HumanMessage(content=[{"type": "text", "text": "hi"}, {"type": "server_tool_result_x", "x": 1}])
    for message in (broken_b64, unsupported):
        before = _errors(judge)
        assert guard.invoke([message]) != [message]
        assert _errors(judge) == before + 1
    assert [v.error.split(":")[0] for v in heard] == ["corrupt_media", "content"]


def test_llamaindex_conversion_failures_are_counted(judge):
    from llama_index.core.schema import ImageNode, NodeWithScore, TextNode
    from llama_index_omniguard import OmniGuardPostprocessor

    nodes = [NodeWithScore(node=ImageNode(text="x", image="%%% broken %%%"), score=1.0),
             NodeWithScore(node=TextNode(text="fine"), score=1.0)]
    kept = OmniGuardPostprocessor(judge=judge).postprocess_nodes(nodes)
    assert [n.node.get_content() for n in kept] == ["fine"]
    assert judge.stats.errors["corrupt_media"] == 1 and judge.stats.checks == 2


def test_nemo_conversion_failures_are_counted(judge):
    from nemoguardrails_omniguard.actions import omniguard_check_input

    broken_uri = {"user_message": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}}]}
    not_a_url = {"user_message": [{"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}]}
    for context in (broken_uri, not_a_url):
        outcome = asyncio.run(omniguard_check_input(context=context, omniguard_judge=judge))
        assert outcome.metadata["error"]
    assert judge.stats.errors["corrupt_media"] == 1 and judge.stats.errors["content"] == 1


def test_metrics_show_the_adapters_failures(judge):
    from fastapi.testclient import TestClient

    from omniguard_plugins.server import create_app

    test_langchain_conversion_failures_are_counted(judge)
    with TestClient(create_app(judge, token="t")) as client:
        text = client.get("/metrics", headers={"Authorization": "Bearer t"}).text
    assert 'omniguard_check_errors_total{kind="content"} 1.0' in text
    assert 'omniguard_check_errors_total{kind="corrupt_media"} 1.0' in text
