"""Fuzzing every converter and the policy loader: whatever arrives, the answer is a Conversation
(or a Policy) or a typed one-line error, never a TypeError from deep inside.

Inputs are JSON-like values shaped like each framework's content (right keys, wrong values, and
plain noise), so the search spends its time near the code paths that read them.
"""

from __future__ import annotations

import asyncio
import base64

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omniguard_plugins.content import Conversation
from omniguard_plugins.errors import ConfigError, ContentError, OmniGuardError
from omniguard_plugins.openai_messages import conversation_from_openai, parts_from_openai
from omniguard_plugins.policy import Policy

FUZZ = settings(max_examples=int(__import__("os").environ.get("FUZZ_EXAMPLES", "150")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

PNG_B64 = base64.b64encode(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR").decode()
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20)
urls = st.sampled_from([
    "data:image/png;base64," + PNG_B64, "data:audio/wav;base64,UklGRg==", "data:video/mp4;base64,AAAA",
    "data:;base64,", "data:image/png,raw", "https://example.com/a.png", "http://127.0.0.1/x", "file:///etc/passwd",
    "/etc/passwd", "ftp://x", "", "data:image/png;base64,!!!notbase64",
])
values = st.recursive(scalars | urls,
                      lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
                      max_leaves=8)
field_values = values | urls | st.binary(max_size=16)


def shaped(types: list[str], keys: list[str]) -> st.SearchStrategy[dict]:
    """Dicts with a plausible ``type`` and a few of the keys that type reads, holding anything."""
    return st.builds(
        lambda kind, fields, extra: {**({"type": kind} if kind is not None else {}), **fields, **extra},
        st.sampled_from([*types, None]) | st.text(max_size=10),
        st.dictionaries(st.sampled_from(keys), field_values, max_size=4),
        st.dictionaries(st.text(max_size=6), values, max_size=2),
    )


OPENAI_TYPES = ["text", "image_url", "input_image", "input_audio", "audio_url", "video_url", "input_text", "file"]
OPENAI_KEYS = ["text", "image_url", "input_audio", "audio_url", "video_url", "url", "data", "format", "detail"]
openai_parts = shaped(OPENAI_TYPES, OPENAI_KEYS) | st.builds(
    lambda kind, inner: {"type": kind, kind: inner},
    st.sampled_from(["image_url", "input_audio", "audio_url", "video_url"]),
    st.dictionaries(st.sampled_from(["url", "data", "format"]), field_values, max_size=3) | field_values,
)
openai_content = st.text(max_size=30) | st.lists(openai_parts | values, max_size=4) | values
openai_messages = st.lists(
    st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system", "tool", "bot"]) | scalars,
                           "content": openai_content}) | values,
    max_size=4,
)


def typed_only(call, *allowed: type[BaseException]):
    try:
        return call()
    except allowed:
        return None


@FUZZ
@given(openai_content)
def test_openai_parts(content):
    typed_only(lambda: parts_from_openai(content), ContentError)


@FUZZ
@given(openai_messages)
def test_openai_messages(messages):
    result = typed_only(lambda: conversation_from_openai(messages), ContentError)
    assert result is None or isinstance(result, Conversation)


@FUZZ
@given(st.dictionaries(st.sampled_from(["user_message", "bot_message", "bot_response", "other"]), openai_content,
                       max_size=3))
def test_nemo_contexts_always_give_a_rail_outcome(fuzz_judge, context):
    """The NeMo actions convert inside the judge: any context is a decision, never a crash."""
    pytest.importorskip("nemoguardrails")
    from nemoguardrails_omniguard.actions import omniguard_check_input, omniguard_check_output

    for action in (omniguard_check_input, omniguard_check_output):
        outcome = asyncio.run(action(context=context, omniguard_judge=fuzz_judge))
        assert outcome is not None


LANGCHAIN_TYPES = ["text", "image", "audio", "video", "file", "text-plain", "non_standard", "reasoning", "refusal",
                   "tool_call"]
LANGCHAIN_KEYS = ["text", "base64", "url", "file_id", "mime_type", "extras", "value", "refusal", "id"]
langchain_blocks = shaped(LANGCHAIN_TYPES, LANGCHAIN_KEYS) | st.builds(
    lambda value: {"type": "non_standard", "value": value}, openai_parts | values)


@FUZZ
@given(st.lists(langchain_blocks, max_size=4))
def test_langchain_blocks(blocks):
    pytest.importorskip("langchain_core")
    from langchain_omniguard._convert import parts_from_blocks

    typed_only(lambda: parts_from_blocks(blocks), ContentError)


@FUZZ
@given(openai_content | st.lists(langchain_blocks, max_size=3),
       st.dictionaries(st.sampled_from(["question", "image", "image_b64", "audio", "video", "n", "chat"]),
                       field_values | openai_content, max_size=3))
def test_langchain_messages_and_chain_inputs(content, chain_input):
    pytest.importorskip("langchain_core")
    from langchain_core.messages import AIMessage, HumanMessage
    from langchain_omniguard._convert import to_conversation

    try:
        messages = [HumanMessage(content=content), AIMessage(content="ok")]
    except Exception:  # noqa: BLE001 - LangChain's own validation refused it: not our converter
        messages = None
    if messages is not None:
        typed_only(lambda: to_conversation(messages), ContentError)
    typed_only(lambda: to_conversation(chain_input), ContentError)


def _llama_block(kind: str, data, url, path, text):
    from llama_index.core.base.llms.types import AudioBlock, ImageBlock, TextBlock, VideoBlock

    if kind == "text":
        return TextBlock(text=text)
    cls = {"image": ImageBlock, "audio": AudioBlock, "video": VideoBlock}[kind]
    field = {"image": "image", "audio": "audio", "video": "video"}[kind]
    return cls(**{field: data, "url": url, "path": path})


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(["text", "image", "audio", "video"]),
                          st.none() | st.binary(max_size=16) | st.just(PNG_B64.encode()),
                          st.none() | urls, st.none() | st.sampled_from(["", "/no/such/file.png"]),
                          st.text(max_size=20)), max_size=4))
def test_llama_index_blocks(specs):
    pytest.importorskip("llama_index.core")
    from llama_index.core.llms import ChatMessage
    from llama_index_omniguard._convert import message_parts

    blocks = []
    for spec in specs:
        try:
            blocks.append(_llama_block(*spec))
        except Exception:  # noqa: BLE001 - LlamaIndex's own validation refused it
            continue
    typed_only(lambda: message_parts(ChatMessage(role="user", blocks=blocks)), ContentError)


@FUZZ
@given(st.text(max_size=30), st.none() | st.text(max_size=30) | st.just(PNG_B64),
       st.none() | urls, st.none() | st.sampled_from(["", "/no/such/file.png"]))
def test_llama_index_nodes(text, image, image_url, image_path):
    pytest.importorskip("llama_index.core")
    from llama_index.core.schema import ImageNode, TextNode
    from llama_index_omniguard._convert import node_parts

    nodes = [TextNode(text=text)]
    try:
        nodes.append(ImageNode(text=text, image=image, image_url=image_url, image_path=image_path))
    except Exception:  # noqa: BLE001 - LlamaIndex's own validation refused it
        pass
    for node in nodes:
        typed_only(lambda node=node: node_parts(node), ContentError)


policy_dicts = st.dictionaries(
    st.sampled_from(["categories", "drop", "rename", "add", "base", "other"]),
    values | st.lists(st.text(max_size=10) | st.dictionaries(st.sampled_from(["name", "description"]), values)),
    max_size=3,
)


@FUZZ
@given(policy_dicts | values)
def test_policy_mappings(data):
    typed_only(lambda: Policy.from_dict(data), ConfigError)
    typed_only(lambda: Policy.coerce(data) if isinstance(data, dict) else None, ConfigError)


@FUZZ
@given(st.text(max_size=200) | st.sampled_from(["categories: 5", "drop: 5", "rename: x", "- 1\n- 2", "[[[[", "&a [*a]",
                                                  "categories: [{name: {a: 1}}]", "policy: {add: 3}"]))
def test_policy_yaml_text(text):
    typed_only(lambda: Policy.from_yaml(text), ConfigError)


@FUZZ
@given(st.binary(max_size=200))
def test_policy_files_of_any_bytes(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("policy") / "policy.yaml"
    path.write_bytes(data)
    typed_only(lambda: Policy.from_yaml(path), ConfigError)


@FUZZ
@given(openai_messages)
def test_the_judge_answers_any_openai_conversation_with_a_verdict(fuzz_judge, messages):
    """End to end: conversion and media decoding inside one check end in a verdict."""
    try:
        conversation = conversation_from_openai(messages)
    except ContentError:
        return
    try:
        verdict = fuzz_judge.check(conversation)
    except OmniGuardError as exc:  # pragma: no cover - on_error is block: checks never raise
        raise AssertionError(f"check raised {exc!r}") from exc
    if verdict.error:  # a conversation that cannot be judged is blocked, with one line saying why
        assert not verdict.safe and "\n" not in verdict.error


@pytest.fixture(scope="module")
def fuzz_judge():
    from omniguard_plugins.testing import scripted_judge

    judge = scripted_judge(["bomb"], cache_size=0)
    yield judge
    judge.close()
